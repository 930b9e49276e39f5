//! Pulls from a private registry, the docker CLI's way: a real registry (Debian's
//! docker-registry, htpasswd auth) on the loopback, images pushed with `docker login` and
//! `docker push`, and bgd pulling with the credentials from `auths`, from a credential helper
//! on PATH, with none, with a wrong password; pull.timeout, Ctrl-C and pull.policy.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const USER: &str = "deployer";
const PASSWORD: &str = "s3cret-Registry-pw-7781";

/// The test registry and the images pushed to it; removed when dropped.
struct Registry {
    port: Port,
    container: String,
    /// `127.0.0.1:PORT/<app>/web`
    repo: String,
    /// Local tags to remove at the end
    tags: std::cell::RefCell<Vec<String>>,
}

impl Registry {
    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port.port)
    }

    /// Pushes `base` (a demo image) with a layer of its own as `repo:tag`, with the
    /// credentials in `config_dir`, then removes it from the host so that a deploy must pull
    /// it (that layer included).
    fn push(&self, config_dir: &Path, base: &str, tag: &str) -> String {
        let image = format!("{}:{tag}", self.repo);
        let ctx = config_dir.join(format!("build-{tag}"));
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::write(ctx.join("stamp"), format!("{image} {:?}", Instant::now())).unwrap();
        std::fs::write(
            ctx.join("Dockerfile"),
            format!("FROM {base}\nCOPY stamp /stamp\n"),
        )
        .unwrap();
        let out = Command::new("docker")
            .args(["build", "-q", "-t", &image])
            .arg(&ctx)
            .output()
            .expect("docker build");
        assert!(out.status.success(), "docker build: {out:?}");
        let out = Command::new("docker")
            .arg("--config")
            .arg(config_dir)
            .args(["push", &image])
            .output()
            .expect("docker push");
        assert!(out.status.success(), "docker push {image}: {out:?}");
        self.untag(&image);
        image
    }

    fn untag(&self, image: &str) {
        docker(&["rmi", image]);
        assert!(
            docker(&["images", "-q", image]).trim().is_empty(),
            "{image} is still on the host"
        );
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        for t in self.tags.borrow().iter() {
            let _ = Command::new("docker").args(["rmi", t]).output();
        }
        let _ = Command::new("docker")
            .args(["rm", "-f", "-v", &self.container])
            .output();
    }
}

/// Starts the registry for `t` with htpasswd auth (bcrypt, made by the image's htpasswd).
fn start_registry(t: &TestApp) -> Registry {
    let out = Command::new("docker")
        .args([
            "run",
            "--rm",
            "bgd-registry:test",
            "htpasswd",
            "-Bbn",
            USER,
            PASSWORD,
        ])
        .output()
        .expect("run htpasswd");
    assert!(out.status.success(), "htpasswd: {out:?}");
    let auth = t.dir.join("registry-auth");
    std::fs::create_dir_all(&auth).unwrap();
    std::fs::write(auth.join("htpasswd"), &out.stdout).unwrap();
    let port = claim_port();
    let container = format!("{}-registry", t.app);
    let id = docker(&[
        "run",
        "-d",
        "--name",
        &container,
        "--label",
        &format!("bgd.app={}", t.app),
        "-p",
        &format!("127.0.0.1:{}:5000", port.port),
        "-v",
        &format!("{}:/auth:ro", auth.display()),
        "bgd-registry:test",
    ]);
    assert!(!id.trim().is_empty(), "the registry did not start");
    // up when /v2/ asks for credentials
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(r) = http_get(port.port, "/v2/") {
            assert_eq!(r.status, 401, "the registry must require credentials");
            break;
        }
        assert!(Instant::now() < deadline, "the registry did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    let repo = format!("127.0.0.1:{}/{}/web", port.port, t.app);
    Registry {
        port,
        container,
        repo,
        tags: Default::default(),
    }
}

/// A docker config directory named `name` under the test's directory.
fn config_dir(t: &TestApp, name: &str, config_json: Option<&str>) -> PathBuf {
    let dir = t.dir.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    if let Some(text) = config_json {
        std::fs::write(dir.join("config.json"), text).unwrap();
    }
    dir
}

fn docker_login(dir: &Path, registry: &str, password: &str) {
    use std::io::Write;
    let mut child = Command::new("docker")
        .arg("--config")
        .arg(dir)
        .args(["login", registry, "-u", USER, "--password-stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("docker login");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(password.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "docker login: {out:?}");
}

fn base64(text: &str) -> String {
    let out = Command::new("base64")
        .arg("-w0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(text.as_bytes())?;
            c.wait_with_output()
        })
        .expect("base64");
    String::from_utf8(out.stdout).unwrap()
}

/// Nothing bgd printed holds the password or its base64 form.
fn assert_no_secret(run: &Run) {
    let encoded = base64(&format!("{USER}:{PASSWORD}"));
    for text in [&run.stdout, &run.stderr] {
        assert!(!text.contains(PASSWORD), "the password leaked: {run:?}");
        assert!(
            !text.contains(&encoded),
            "the encoded login leaked: {run:?}"
        );
    }
}

fn bgd_with(t: &TestApp, env: &[(&str, &str)], args: &[&str]) -> Run {
    bgd_env(&t.dir, env, args)
}

#[test]
fn pulls_from_a_private_registry_with_the_docker_clis_credentials() {
    let t = TestApp::new("reg");
    let reg = start_registry(&t);
    t.write(&t.config());

    // images pushed the way a CI job does it: docker login, docker push
    let logged_in = config_dir(&t, "logged-in", None);
    docker_login(&logged_in, &reg.host(), PASSWORD);
    let stored = std::fs::read_to_string(logged_in.join("config.json")).unwrap();
    assert!(
        stored.contains(&reg.host()) && stored.contains("\"auth\""),
        "docker login stores its login in auths here: {stored}"
    );
    let a = reg.push(&logged_in, "bgd-demo:v1", "a");
    let b = reg.push(&logged_in, "bgd-demo:v2", "b");
    let c = reg.push(&logged_in, "bgd-demo:v3", "c");
    reg.tags
        .borrow_mut()
        .extend([a.clone(), b.clone(), c.clone()]);
    let ld = logged_in.to_str().unwrap();

    // 1. the login docker login left in auths
    let run = bgd_with(&t, &[("DOCKER_CONFIG", ld)], &["--json", "deploy", &a]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(t.live_version(), "v1");
    let events = run.json_lines();
    let pulls: Vec<_> = events.iter().filter(|e| e["event"] == "pull").collect();
    assert!(!pulls.is_empty(), "no pull events: {run:?}");
    let done = pulls.last().unwrap();
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["image"], a.as_str());
    assert!(done["layers"].as_u64().unwrap() >= 1, "{done}");
    assert_eq!(done["layers"], done["layers_done"], "{done}");
    assert!(events.iter().any(|e| e["event"] == "step"
        && e["step"] == "pull"
        && e["status"] == "done"
        && e["message"].as_str().unwrap().contains(&reg.host())));
    assert_no_secret(&run);

    // 2. a credential helper named in credHelpers, found on PATH
    let bin = t.dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let asked = t.dir.join("helper-asked");
    let helper = bin.join("docker-credential-bgdtest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread -r server\nprintf '%s' \"$server\" > '{}'\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}\\n' \"$server\"\n",
            asked.display()
        ),
    )
    .unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(&helper)
        .status()
        .unwrap();
    let helped = config_dir(
        &t,
        "helped",
        Some(&format!(
            r#"{{"credsStore": "missing-store", "credHelpers": {{"{}": "bgdtest"}}}}"#,
            reg.host()
        )),
    );
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = bgd_with(
        &t,
        &[("DOCKER_CONFIG", helped.to_str().unwrap()), ("PATH", &path)],
        &["deploy", &b],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(t.live_version(), "v2");
    assert_eq!(std::fs::read_to_string(&asked).unwrap(), reg.host());
    assert_no_secret(&run);

    // 3. not logged in: exit 6, the registry named, what to do; live traffic untouched
    let empty = config_dir(&t, "empty", None);
    let run = bgd_with(
        &t,
        &[("DOCKER_CONFIG", empty.to_str().unwrap())],
        &["deploy", &c],
    );
    assert_eq!(run.code, 6, "{run:?}");
    assert!(
        run.stderr
            .contains(&format!("no credentials for the registry {}", reg.host())),
        "{run:?}"
    );
    assert!(
        run.stderr.contains(&format!("docker login {}", reg.host())),
        "{run:?}"
    );
    assert_eq!(t.live_version(), "v2");

    // 4. a wrong password: exit 6, "denied", and the wrong password is not shown either
    let wrong = "not-the-Password-4242";
    let wrong_dir = config_dir(
        &t,
        "wrong",
        Some(&format!(
            r#"{{"auths": {{"{}": {{"auth": "{}"}}}}}}"#,
            reg.host(),
            base64(&format!("{USER}:{wrong}"))
        )),
    );
    let run = bgd_with(
        &t,
        &[("DOCKER_CONFIG", wrong_dir.to_str().unwrap())],
        &["--json", "deploy", &c],
    );
    assert_eq!(run.code, 6, "{run:?}");
    let error = run.result()["error"].as_str().unwrap().to_string();
    assert!(
        error.contains(&format!("denied by the registry {}", reg.host())),
        "{error}"
    );
    assert!(
        !run.stdout.contains(wrong) && !run.stderr.contains(wrong),
        "{run:?}"
    );
    assert_eq!(t.live_version(), "v2");

    // 5. logged in, but no such tag: "not found"
    let missing = format!("{}:no-such-tag", reg.repo);
    let run = bgd_with(&t, &[("DOCKER_CONFIG", ld)], &["deploy", &missing]);
    assert_eq!(run.code, 6, "{run:?}");
    assert!(
        run.stderr
            .contains(&format!("not found on the registry {}", reg.host())),
        "{run:?}"
    );
    assert_no_secret(&run);

    // the history holds no credentials either
    let run = bgd_with(&t, &[("DOCKER_CONFIG", ld)], &["--json", "history"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_no_secret(&run);
    assert_eq!(t.live_version(), "v2");
}

#[test]
fn a_moved_tag_is_deployed_as_it_is_now_with_pull_policy_always() {
    let t = TestApp::new("regtag");
    let reg = start_registry(&t);
    let login = config_dir(&t, "login", None);
    docker_login(&login, &reg.host(), PASSWORD);
    let ld = login.to_str().unwrap();
    let main = reg.push(&login, "bgd-demo:v1", "main");
    reg.tags.borrow_mut().push(main.clone());
    t.write(&t.config());
    let run = bgd_with(&t, &[("DOCKER_CONFIG", ld)], &["deploy", &main]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(t.live_version(), "v1");

    // CI pushes a new build under the same tag; the Docker host still has the old one
    docker(&["tag", "bgd-demo:v2", &main]);
    let out = Command::new("docker")
        .arg("--config")
        .arg(&login)
        .args(["push", &main])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    docker(&["tag", "bgd-demo:v1", &main]);

    // pull.policy: missing (the default) deploys what the host has
    let run = bgd_with(&t, &[("DOCKER_CONFIG", ld)], &["deploy", "--plan", &main]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!run.stdout.contains("pull.policy"), "{run:?}");

    // pull.policy: always pulls the tag as it is now
    t.write(&t.config().set("pull.policy", "always"));
    let run = bgd_with(&t, &[("DOCKER_CONFIG", ld)], &["deploy", "--plan", &main]);
    assert!(run.stdout.contains("(pull.policy: always)"), "{run:?}");
    let run = bgd_with(&t, &[("DOCKER_CONFIG", ld)], &["deploy", &main]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(t.live_version(), "v2");
}

/// A "registry" that accepts connections and never answers: a pull that would hang.
fn silent_registry() -> (std::net::TcpListener, u16) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(false).unwrap();
    let l = listener.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept() {
            held.push(s);
        }
    });
    (listener, port)
}

#[test]
fn a_pull_is_bounded_by_pull_timeout_and_stops_at_the_first_ctrl_c() {
    let t = TestApp::new("regto");
    let (_listener, port) = silent_registry();
    let image = format!("127.0.0.1:{port}/web:v1");
    let empty = config_dir(&t, "empty", None);
    let env = [("DOCKER_CONFIG", empty.to_str().unwrap())];

    // without a terminal (CI), a line every 5 seconds
    t.write(&t.config().set("pull.timeout", "6s"));
    let started = Instant::now();
    let run = bgd_with(&t, &env, &["deploy", &image]);
    assert_eq!(run.code, 6, "{run:?}");
    assert!(run.stderr.contains("(pull.timeout 6.0s)"), "{run:?}");
    assert!(run.stderr.contains("Raise pull.timeout"), "{run:?}");
    assert!(
        run.stderr
            .contains(&format!("pulling {image}: 0/0 layers, 0.0 MiB of 0.0 MiB")),
        "{run:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(30), "{run:?}");

    t.write(&t.config().set("pull.timeout", "2s"));

    // on a terminal (script(1) gives bgd one), the pull is a bar that says what it pulls
    let typescript = t.dir.join("typescript");
    let out = Command::new("script")
        .args(["-q", "-e", "-c"])
        .arg(format!("{} deploy {image}", env!("CARGO_BIN_EXE_bgd")))
        .arg(&typescript)
        .current_dir(&t.dir)
        .env("DOCKER_CONFIG", &empty)
        .env_remove("BGD_CONFIG")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run script(1)");
    assert_eq!(out.status.code(), Some(6), "{out:?}");
    let shown = std::fs::read_to_string(&typescript).unwrap_or_default();
    assert!(
        shown.contains(&format!("pulling {image}: 0/0 layers")),
        "no progress on the terminal: {shown:?}"
    );

    // the first Ctrl-C ends a pull that would take minutes
    t.write(&t.config().set("pull.timeout", "5m"));
    let mut w = watch(&t.dir, &env, &["deploy", &image]);
    w.wait_for("pull progress", |e| {
        e["event"] == "pull" && e["status"] == "progress"
    });
    let sent = Instant::now();
    w.signal("-INT");
    let run = w.finish();
    assert_eq!(run.code, 130, "{run:?}");
    assert!(sent.elapsed() < Duration::from_secs(10), "{run:?}");
    assert!(
        run.result()["error"]
            .as_str()
            .unwrap()
            .contains("while pulling"),
        "{run:?}"
    );
}
