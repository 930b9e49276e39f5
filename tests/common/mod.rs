//! Shared harness for integration tests: each test gets its own app name, network, nginx
//! container and loopback ports; a guard removes all of it when the test ends (even on
//! panic) and prints the containers' logs when the test failed.
//!
//! cfg.rs: configs as data; ports.rs: ports claimed without a race; watch.rs: bgd in the
//! background with its `--json` events read as they come; http.rs: a loopback HTTP client;
//! load.rs: the non-retrying load tool.
#![allow(dead_code, unused_imports)]

mod cfg;
mod http;
mod load;
mod ports;
mod watch;

pub use cfg::Cfg;
pub use http::{http_get, http_get_host, http_get_with, Reply};
pub use load::Load;
pub use ports::{claim_port, Port};
pub use watch::{watch, watch_command, Watched};

use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;

pub const NGINX_IMAGE: &str = "bgd-nginx:1.30";

static IMAGES: Once = Once::new();

/// Builds the test images unless they are current (scripts/build-images.sh).
pub fn ensure_images() {
    IMAGES.call_once(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let status = Command::new("bash")
            .arg(root.join("scripts/build-images.sh"))
            .args([
                "demo",
                "nginx",
                "nginx-old",
                "sshd",
                "gunicorn",
                "registry",
                "nginx-layouts",
            ])
            .status()
            .expect("run scripts/build-images.sh");
        assert!(status.success(), "scripts/build-images.sh failed");
    });
}

/// `prefix-<random>`: a name no other test (or earlier run) uses.
pub fn unique_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{:06x}", (nanos ^ std::process::id()) & 0xffffff)
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The JSON lines of a `--json` run, each parsed (panics on a line that is not JSON).
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
            .collect()
    }
    /// The result line of a `--json` run: the last line, checked for the shape docs/json.md fixes.
    pub fn result(&self) -> serde_json::Value {
        let lines = self.json_lines();
        let last = lines
            .last()
            .cloned()
            .unwrap_or_else(|| panic!("no JSON output; stderr:\n{}", self.stderr));
        assert_eq!(
            last["event"], "result",
            "last line is not the result: {last}"
        );
        assert!(
            last["ok"].is_boolean() && last["exit_code"].is_i64(),
            "{last}"
        );
        last
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

pub fn bgd_in(dir: &Path, args: &[&str]) -> Run {
    bgd_env(dir, &[], args)
}

/// Runs bgd in `dir` with extra environment variables.
pub fn bgd_env(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_bgd"))
        .args(args)
        .current_dir(dir)
        .env_remove("BGD_CONFIG")
        .envs(env.iter().copied())
        .output()
        .expect("run bgd");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `docker ARGS NAMES...`: a docker command on each of `names` (containers), e.g. a color's.
pub fn docker_on(args: &[&str], names: &[String]) -> String {
    let mut all = args.to_vec();
    all.extend(names.iter().map(String::as_str));
    docker(&all)
}

pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("run docker");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One test's app: its config directory, ports and cleanup.
pub struct TestApp {
    pub app: String,
    pub dir: PathBuf,
    pub live_port: u16,
    pub preview_port: u16,
    /// Held until the app's containers are gone (fields drop after `Drop::drop`)
    _ports: [Port; 2],
}

impl TestApp {
    /// `tag` must be short: the app name is `t-<tag>-<random>` (at most 40 characters).
    pub fn new(tag: &str) -> TestApp {
        ensure_images();
        let app = unique_name(&format!("t-{tag}"));
        let dir = std::env::temp_dir().join("bgd-tests").join(&app);
        std::fs::create_dir_all(&dir).expect("test dir");
        let ports = [claim_port(), claim_port()];
        TestApp {
            app,
            dir,
            live_port: ports[0].port,
            preview_port: ports[1].port,
            _ports: ports,
        }
    }

    pub fn lb(&self) -> String {
        format!("{}-lb", self.app)
    }

    /// The demo app's config, as data: two replicas, quick readiness, nginx 1.30 created by
    /// bgd, publishing this test's ports.
    pub fn config(&self) -> Cfg {
        Cfg::new(json!({
            "app": self.app,
            "replicas": 2,
            "network": format!("{}-net", self.app),
            "container": {"port": 8080, "stop_timeout": "5s"},
            "readiness": {
                "path": "/health",
                "interval": "100ms",
                "timeout": "3s",
                "successes": 2,
                "deadline": "10s",
            },
            "lb": {
                "image": NGINX_IMAGE,
                "publish": [
                    format!("127.0.0.1:{}:80", self.live_port),
                    format!("127.0.0.1:{}:8081", self.preview_port),
                ],
                "url": format!("http://127.0.0.1:{}", self.live_port),
                "preview_url": format!("http://127.0.0.1:{}", self.preview_port),
            },
            "switch": {"drain": "5s", "verify": "1s"},
        }))
    }

    /// Writes `cfg` as this app's bgd.yaml.
    pub fn write(&self, cfg: &Cfg) {
        self.write_text(&cfg.yaml());
    }

    /// Writes bgd.yaml as text (for tests of what bgd makes of the text itself).
    pub fn write_text(&self, text: &str) {
        std::fs::write(self.dir.join("bgd.yaml"), text).expect("write bgd.yaml");
    }

    pub fn bgd(&self, args: &[&str]) -> Run {
        bgd_in(&self.dir, args)
    }

    /// `bgd --json history`'s entries, oldest first (it must exit 0).
    pub fn history(&self) -> Vec<serde_json::Value> {
        let h = self.bgd(&["--json", "history"]);
        assert_eq!(h.code, 0, "{h:?}");
        h.result()["entries"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// `bgd --json ARGS` in the background, its events read as they come.
    pub fn watch(&self, args: &[&str]) -> Watched {
        watch(&self.dir, &[], args)
    }

    /// What the live listener serves on `/`.
    pub fn live(&self) -> Option<Reply> {
        http_get(self.live_port, "/")
    }

    /// The demo app's version behind the live listener ("v1"...), or a description of why none.
    pub fn live_version(&self) -> String {
        match self.live() {
            Some(r) => r.header("X-App-Version").unwrap_or("none").to_string(),
            None => "unreachable".into(),
        }
    }

    /// Names of this app's containers (any state) of a color.
    pub fn containers(&self, color: &str) -> Vec<String> {
        let out = docker(&[
            "ps",
            "-a",
            "--format",
            "{{.Names}}",
            "--filter",
            &format!("label=bgd.app={}", self.app),
            "--filter",
            &format!("label=bgd.color={color}"),
        ]);
        let mut v: Vec<String> = out.lines().map(String::from).collect();
        v.sort();
        v
    }

    /// The nginx config bgd activated (through the stub in conf.d), read from the container.
    /// `sh -c SCRIPT` in the nginx container; its output.
    pub fn lb_sh(&self, script: &str) -> String {
        docker(&["exec", &self.lb(), "sh", "-c", script])
    }

    pub fn active_config(&self) -> String {
        let stub = docker(&[
            "exec",
            &self.lb(),
            "cat",
            &format!("/etc/nginx/conf.d/bgd-{}.conf", self.app),
        ]);
        assert_eq!(
            stub.trim(),
            format!("include /etc/nginx/bgd/{}/active.conf;", self.app),
            "the stub"
        );
        let text = docker(&[
            "exec",
            &self.lb(),
            "cat",
            &format!("/etc/nginx/bgd/{}/active.conf", self.app),
        ]);
        assert!(
            text.starts_with("# bgd-state: "),
            "not a config bgd wrote: {text:?}"
        );
        text
    }

    /// Plants a deploy lock as if another run held it.
    /// Plants a deploy lock as if another run held it: on `host` with `pid`, in this test's
    /// boot and PID namespace (so a dead pid on this host proves its holder gone).
    pub fn plant_lock(&self, host: &str, pid: u32, command: &str) {
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
        let ns = std::fs::read_link("/proc/self/ns/pid").unwrap();
        let holder = serde_json::json!({
            "token": format!("planted{pid}"), "user": "someone", "host": host, "pid": pid,
            "ci": null, "command": command, "since": "2026-01-01T00:00:00Z",
            "boot_id": boot.trim(), "pid_ns": ns.to_string_lossy(),
        })
        .to_string();
        self.plant_lock_text(&holder);
    }

    /// Plants a lock directory holding `holder_json` as its holder ("" for none at all).
    pub fn plant_lock_text(&self, holder: &str) {
        let dir = format!("/etc/nginx/bgd/{}/lock", self.app);
        let out = Command::new("docker")
            .args([
                "exec",
                &self.lb(),
                "sh",
                "-c",
                "mkdir -p \"$1\" && { [ -z \"$2\" ] || printf '%s' \"$2\" > \"$1/holder.json\"; }",
                "plant",
                &dir,
                holder,
            ])
            .output()
            .expect("docker exec");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The `server` lines of the live color's upstream (`bgd_<ident>_<color>`) in a config
    /// bgd wrote with the built-in template.
    pub fn live_servers(config: &str) -> Vec<String> {
        let header: serde_json::Value = config
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# bgd-state: "))
            .and_then(|h| serde_json::from_str(h).ok())
            .unwrap_or_default();
        let Some(color) = header["live"].as_str() else {
            return Vec::new();
        };
        config
            .split(&format!("_{color} {{"))
            .nth(1)
            .and_then(|rest| rest.split('}').next())
            .unwrap_or("")
            .lines()
            .filter(|l| l.trim_start().starts_with("server "))
            .map(|l| l.trim().to_string())
            .collect()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let names = docker(&[
            "ps",
            "-a",
            "--format",
            "{{.Names}}",
            "--filter",
            &format!("label=bgd.app={}", self.app),
        ]);
        let mut all: Vec<String> = names.lines().map(String::from).collect();
        all.push(self.lb());
        all.push(format!("{}-migrate", self.app));
        if std::thread::panicking() {
            for n in &all {
                eprintln!("=== docker logs {n} (last 40 lines)");
                let out = Command::new("docker")
                    .args(["logs", "--tail", "40", n])
                    .output();
                if let Ok(out) = out {
                    eprintln!(
                        "{}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            }
        }
        let mut args = vec!["rm", "-f", "-v"];
        args.extend(all.iter().map(String::as_str));
        let _ = Command::new("docker").args(&args).output();
        // after the containers, which may still hold them: this app's volumes (bgd's record in
        // `<lb>-bgd`, and any a test made with the app's name as prefix)
        let volumes = docker(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            &format!("name=^{}-", self.app),
        ]);
        let mut args = vec!["volume", "rm", "-f"];
        args.extend(volumes.lines());
        if args.len() > 3 {
            let _ = Command::new("docker").args(&args).output();
        }
        let _ = Command::new("docker")
            .args(["network", "rm", &format!("{}-net", self.app)])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs a switching bgd command with the load's expectation set around it: any color while it
/// runs, then the color it reports (which every later request must see).
pub fn switch_under_load(t: &TestApp, load: &Load, args: &[&str]) -> serde_json::Value {
    load.expect("any");
    let mut full = args.to_vec();
    full.push("--json");
    let r = t.bgd(&full);
    assert_eq!(r.code, 0, "{args:?}: {r:?}");
    let result = r.result();
    let color = result["live"]["color"].as_str().unwrap().to_string();
    load.expect(&color);
    result
}
