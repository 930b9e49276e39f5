//! bgd's in-container scripts (src/nginx/install.sh, src/nginx/lock.sh) as the interfaces
//! they are: named inputs in, one `BGD_OUTCOME` line out. Each test runs the script itself in
//! an nginx container (the real nginx 1.30 of bgd's test image) and drives every outcome:
//! a config nginx -t rejects, a reload nginx refuses, a reload nginx ignores (no new
//! workers), old workers still busy when the drain runs out, another install holding the
//! guard, the deploy lock held or lost, no nginx at all. A stub `nginx` placed ahead of the
//! real one on PATH refuses or ignores reloads on demand; everything else is real nginx.

mod common;
use common::*;
use std::process::Command;
use std::time::Duration;

const INSTALL_SH: &str = concat!(
    include_str!("../src/nginx/find-nginx.sh"),
    include_str!("../src/nginx/install.sh")
);
const LOCK_SH: &str = include_str!("../src/nginx/lock.sh");

/// The stub: control files in /stub steer it, anything else goes to the real nginx.
const STUB_NGINX: &str = r#"#!/bin/sh
case "$*" in
  "-s reload")
    if [ -e /stub/refuse-reload ]; then echo "nginx: [error] stub: reload refused" >&2; exit 1; fi
    if [ -e /stub/ignore-reload ]; then exit 0; fi ;;
esac
exec /usr/sbin/nginx "$@"
"#;

const DIR: &str = "/etc/nginx/bgd/site";

/// An nginx container of bgd's test image, with the stub installed.
struct NginxBox {
    name: String,
}

/// What a script printed: its outcome, its fields, everything.
#[derive(Debug)]
struct Report {
    outcome: String,
    fields: Vec<(String, String)>,
    output: String,
}

impl Report {
    /// What a script's exec printed, read: the last line of its standard output must be the
    /// outcome (a shell's own complaints go to standard error).
    fn of(out: &std::process::Output) -> Report {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let output = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
        let last = stdout.lines().last().unwrap_or_default();
        let rest = last
            .strip_prefix("BGD_OUTCOME ")
            .unwrap_or_else(|| panic!("no outcome line last: {output}"));
        let mut words = rest.split_whitespace();
        Report {
            outcome: words.next().unwrap_or_default().to_string(),
            fields: words
                .filter_map(|w| w.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            output,
        }
    }

    fn field(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn config(version: &str) -> String {
    format!(
        "server {{\n    listen 8090;\n    location / {{ return 200 \"{version}\\n\"; }}\n    location /hang {{ proxy_pass http://127.0.0.1:9009; proxy_read_timeout 60s; }}\n}}\n"
    )
}

impl NginxBox {
    fn start(tag: &str, entrypoint: Option<&str>) -> NginxBox {
        ensure_images();
        let name = unique_name(&format!("t-inst-{tag}"));
        let mut args = vec!["run", "-d", "--name", &name, "--label", "bgd.test=install"];
        if let Some(e) = entrypoint {
            args.extend(["--entrypoint", e, NGINX_IMAGE, "1000"]);
        } else {
            args.push(NGINX_IMAGE);
        }
        let out = Command::new("docker").args(&args).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        let b = NginxBox { name };
        b.sh("mkdir -p /usr/local/sbin /stub");
        let stub = std::env::temp_dir().join(format!("{}-nginx", b.name));
        std::fs::write(&stub, STUB_NGINX).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
        let cp = Command::new("docker")
            .arg("cp")
            .arg(&stub)
            .arg(format!("{}:/usr/local/sbin/nginx", b.name))
            .output()
            .unwrap();
        assert!(cp.status.success(), "{cp:?}");
        let _ = std::fs::remove_file(stub);
        if entrypoint.is_none() {
            wait_until("nginx workers", || {
                b.sh("cat /proc/[0-9]*/cmdline").contains("worker process")
            });
        }
        b
    }

    fn sh(&self, script: &str) -> String {
        let out = Command::new("docker")
            .args(["exec", &self.name, "sh", "-c", script])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn run(&self, name: &str, script: &str, args: &[(&str, &str)]) -> Report {
        let mut cmd = Command::new("docker");
        cmd.args(["exec", &self.name, "sh", "-c", script, name]);
        for (k, v) in args {
            cmd.args([k, v]);
        }
        let out = cmd.output().unwrap();
        Report::of(&out)
    }

    /// The arguments of install.sh for the app "site", then `args`.
    fn site_args<'a>(args: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut all = vec![
            ("--app", "site"),
            ("--conf-dir", "/etc/nginx/conf.d"),
            ("--root", "/etc/nginx/bgd"),
        ];
        all.extend_from_slice(args);
        all
    }

    /// install.sh for the app "site" with `args`.
    fn site(&self, args: &[(&str, &str)]) -> Report {
        self.run("bgd-install", INSTALL_SH, &Self::site_args(args))
    }

    /// install.sh for the app "site" with `version`'s config, the usual bounds, and `extra`.
    fn install(&self, version: &str, extra: &[(&str, &str)]) -> Report {
        let text = config(version);
        let mut args = vec![
            ("--config", text.as_str()),
            ("--handover-ms", "1500"),
            ("--drain-ms", "2000"),
            ("--guard-ms", "500"),
        ];
        args.extend_from_slice(extra);
        self.site(&args)
    }

    /// install.sh in flip mode for the app "site", with `extra`; `input`: what its stdin gets
    /// (None: nothing attached).
    fn flip(&self, flag: &str, to: &str, extra: &[(&str, &str)], input: Option<&str>) -> Report {
        let mut args = vec![("--flip", flag), ("--flip-to", to)];
        args.extend_from_slice(extra);
        match input {
            None => self.site(&args),
            Some(text) => {
                self.run_with_input("bgd-install", INSTALL_SH, &Self::site_args(&args), text)
            }
        }
    }

    fn run_with_input(
        &self,
        name: &str,
        script: &str,
        args: &[(&str, &str)],
        input: &str,
    ) -> Report {
        use std::io::Write;
        let mut cmd = Command::new("docker");
        cmd.args(["exec", "-i", &self.name, "sh", "-c", script, name]);
        for (k, v) in args {
            cmd.args([k, v]);
        }
        let mut child = cmd
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        Report::of(&out)
    }

    /// The nginx worker processes' pids.
    fn workers(&self) -> String {
        self.sh("for p in /proc/[0-9]*; do c=''; read -r c < $p/cmdline; case $c in 'nginx: worker process'*) echo ${p#/proc/};; esac; done 2>/dev/null")
    }

    fn lock(&self, args: &[(&str, &str)]) -> Report {
        let mut all = vec![("--dir", DIR)];
        all.extend_from_slice(args);
        self.run("bgd-lock", LOCK_SH, &all)
    }

    /// What nginx serves on the test site now.
    fn serves(&self) -> String {
        self.sh("busybox wget -q -O - http://127.0.0.1:8090/ 2>&1")
            .trim()
            .to_string()
    }

    fn active(&self) -> String {
        self.sh(&format!("cat {DIR}/active.conf"))
    }

    fn titles(&self) -> String {
        self.sh("for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done")
    }
}

impl Drop for NginxBox {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("=== docker logs {}", self.name);
            let _ = Command::new("docker")
                .args(["logs", "--tail", "30", &self.name])
                .status();
        }
        let _ = Command::new("docker")
            .args(["rm", "-f", &self.name])
            .output();
    }
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn the_scripts_are_shellcheck_clean() {
    let root = env!("CARGO_MANIFEST_DIR");
    // the install script as bgd runs it: find-nginx.sh first
    let joined = std::env::temp_dir().join(format!("bgd-install-{}.sh", std::process::id()));
    std::fs::write(&joined, INSTALL_SH).unwrap();
    let out = Command::new("shellcheck")
        .args(["-s", "sh"])
        .arg(&joined)
        .arg(format!("{root}/src/nginx/find-nginx.sh"))
        .arg(format!("{root}/src/nginx/lock.sh"))
        .output()
        .unwrap_or_else(|e| {
            panic!("shellcheck is needed by the test suite (apt-get install shellcheck): {e}")
        });
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn install_applies_records_and_restores_on_every_refusal() {
    let b = NginxBox::start("apply", None);
    let state = r#"{"app":"site","generation":1}"#;
    let r = b.install("v1", &[("--state", state), ("--history", "{\"n\":1}")]);
    assert_eq!(
        (r.outcome.as_str(), r.field("stopped")),
        ("applied", Some("0")),
        "{r:?}"
    );
    assert_eq!(b.serves(), "v1");
    assert_eq!(b.sh(&format!("cat {DIR}/state.json")), state);
    assert_eq!(b.sh(&format!("cat {DIR}/history.jsonl")), "{\"n\":1}\n");
    assert_eq!(
        b.sh("cat /etc/nginx/conf.d/bgd-site.conf"),
        format!("include {DIR}/active.conf;")
    );
    assert!(
        !b.titles().contains("shutting down"),
        "applied means drained"
    );
    let v1 = b.active();

    // nginx -t rejects it (real nginx): the previous config is active, nothing recorded
    let bad = format!("{}this_is_not_a_directive on;\n", config("v2"));
    let r = b.site(&[("--config", &bad), ("--state", "{\"broken\":true}")]);
    assert_eq!(r.outcome, "invalid", "{r:?}");
    assert!(r.output.contains("this_is_not_a_directive"), "{r:?}");
    assert_eq!(b.active(), v1);
    assert_eq!(b.sh(&format!("cat {DIR}/state.json")), state);

    // the reload is refused
    b.sh(": > /stub/refuse-reload");
    let r = b.install("v2", &[]);
    assert_eq!(r.outcome, "reload-refused", "{r:?}");
    assert!(r.output.contains("stub: reload refused"), "{r:?}");
    assert_eq!((b.active(), b.serves()), (v1.clone(), "v1".to_string()));
    b.sh("rm /stub/refuse-reload");

    // the reload is ignored: no new workers within --handover-ms; restored and reloaded
    b.sh(": > /stub/ignore-reload");
    let r = b.install("v2", &[]);
    assert_eq!(r.outcome, "not-applied", "{r:?}");
    assert_eq!((b.active(), b.serves()), (v1.clone(), "v1".to_string()));
    b.sh("rm /stub/ignore-reload");

    // and the next install goes through
    let r = b.install("v2", &[]);
    assert_eq!(r.outcome, "applied", "{r:?}");
    assert_eq!(b.serves(), "v2");
    let r = b.install("v3", &[("--no-such-option", "x")]);
    assert_eq!(r.outcome, "bad-input", "{r:?}");
    assert_eq!(b.serves(), "v2");
}

/// An old worker busy with a request past --drain-ms: the install stops it and says so, and
/// no old worker is left when it reports.
#[test]
fn install_stops_old_workers_still_busy_after_the_drain() {
    let b = NginxBox::start("drain", None);
    assert_eq!(b.install("v1", &[]).outcome, "applied");
    // an upstream that never answers, and a request to it on an old worker
    docker(&[
        "exec",
        "-d",
        &b.name,
        "sh",
        "-c",
        "sleep 1000 | busybox nc -l -p 9009",
    ]);
    docker(&[
        "exec",
        "-d",
        &b.name,
        "busybox",
        "wget",
        "-q",
        "-O",
        "/dev/null",
        "http://127.0.0.1:8090/hang",
    ]);
    // 9009 is 0x2331: wait until nginx's connection to it is established (state 01)
    wait_until("the hung request", || {
        b.sh("cat /proc/net/tcp /proc/net/tcp6 | grep -cE ':2331 [0-9A-F]+:[0-9A-F]+ 01 '")
            .trim()
            != "0"
    });
    let r = b.install("v2", &[("--drain-ms", "300")]);
    assert_eq!(
        (r.outcome.as_str(), r.field("stopped")),
        ("applied", Some("1")),
        "{r:?}"
    );
    assert!(!b.titles().contains("shutting down"), "{}", b.titles());
    assert_eq!(b.serves(), "v2");
}

#[test]
fn install_waits_for_the_guard_takes_over_a_stale_one_and_honours_the_lock() {
    let b = NginxBox::start("guard", None);
    // The guard is a symlink in /dev/shm naming its owner: "pid start-time until-ms".
    let guard = "/dev/shm/bgd-install-guard";
    let pid1 = "read -r s < /proc/1/stat && set -- ${s##*) } && shift 19 && echo \"1 $1\"";
    let live_owner = b.sh(pid1).trim().to_string();
    // held by a live process that said it would be done by now: busy after --guard-ms
    b.sh(&format!("ln -s '{live_owner} 0' {guard}"));
    let r = b.install("v1", &[]);
    assert_eq!(r.outcome, "busy", "{r:?}");
    assert!(
        r.output.contains(&format!("owner: {live_owner} 0")),
        "{r:?}"
    );
    // its owner gone (pid 1 with another start time): taken over, even with a take-over
    // left behind by an exec that died half way
    b.sh(&format!(
        "ln -sf '1 1 0' {guard} && ln -s '1 1 0' {guard}.takeover"
    ));
    let r = b.install("v1", &[]);
    assert_eq!(r.outcome, "applied", "{r:?}");
    assert!(
        b.sh("ls -A /dev/shm").trim().is_empty(),
        "the guard is released: {}",
        b.sh("ls -la /dev/shm")
    );

    // --lock-once: held by another run, nothing changes; free: taken for the exec, released
    let holder = r#"{"token":"other-run","pid":7}"#;
    b.sh(&format!(
        "mkdir -p {DIR}/lock && printf '%s' '{holder}' > {DIR}/lock/holder.json"
    ));
    let r = b.install("v2", &[("--lock-once", "{\"token\":\"me\"}")]);
    assert_eq!(r.outcome, "locked", "{r:?}");
    assert!(r.output.contains(&format!("BGD_HOLDER {holder}")), "{r:?}");
    assert_eq!(b.serves(), "v1");
    // --lock-token: the caller's lock is gone (another run holds it)
    let r = b.install("v2", &[("--lock-token", "me")]);
    assert_eq!(r.outcome, "lock-lost", "{r:?}");
    let r = b.install("v2", &[("--lock-token", "other-run")]);
    assert_eq!(r.outcome, "applied", "{r:?}");
    b.sh(&format!("rm -rf {DIR}/lock"));
    let r = b.install("v3", &[("--lock-once", "{\"token\":\"me\"}")]);
    assert_eq!(r.outcome, "applied", "{r:?}");
    assert!(
        !b.sh(&format!("ls {DIR}")).contains("lock"),
        "the lock is released after the exec"
    );

    // record mode, a run's last write: --release-lock lets the lock go with the record, only
    // the caller's own
    let record = |token: &str| {
        b.site(&[
            ("--state", r#"{"app":"site","generation":9,"schema":2}"#),
            ("--record-schema", "3"),
            ("--history", r#"{"run":"r9"}"#),
            ("--history-run", "r9"),
            ("--lock-token", token),
            ("--release-lock", "1"),
        ])
    };
    b.sh(&format!(
        "mkdir -p {DIR}/lock && printf '%s' '{holder}' > {DIR}/lock/holder.json"
    ));
    let r = record("me");
    assert_eq!(r.outcome, "lock-lost", "{r:?}");
    assert!(b.sh(&format!("ls {DIR}")).contains("lock"));
    assert!(!b
        .sh(&format!("cat {DIR}/state.json"))
        .contains("\"generation\":9"));
    let r = record("other-run");
    assert_eq!(
        (r.outcome.as_str(), r.field("unlocked")),
        ("recorded", Some("1")),
        "{r:?}"
    );
    assert!(b
        .sh(&format!("cat {DIR}/state.json"))
        .contains("\"generation\":9"));
    assert!(
        !b.sh(&format!("ls {DIR}")).contains("lock"),
        "the lock went with the record"
    );
}

#[test]
fn install_without_nginx_running_says_so() {
    let b = NginxBox::start("nonginx", Some("sleep"));
    let r = b.install("v1", &[]);
    assert_eq!(r.outcome, "not-running", "{r:?}");
}

#[test]
fn the_lock_script_takes_refuses_takes_over_and_releases() {
    let b = NginxBox::start("lock", Some("sleep"));
    let me = r#"{"token":"tok-me","pid":1}"#;
    let other = r#"{"token":"tok-other","pid":2}"#;
    let r = b.lock(&[("--op", "acquire"), ("--holder", me)]);
    assert_eq!(r.outcome, "taken", "{r:?}");
    let r = b.lock(&[("--op", "acquire"), ("--holder", other)]);
    assert_eq!(r.outcome, "held", "{r:?}");
    assert!(r.output.contains(&format!("BGD_HOLDER {me}")), "{r:?}");
    let r = b.lock(&[("--op", "release"), ("--token", "tok-other")]);
    assert_eq!(r.outcome, "held", "not its lock: {r:?}");
    // a stale holder's token: taken over; a token that no longer holds it: refused
    let r = b.lock(&[
        ("--op", "take-over"),
        ("--token", "tok-me"),
        ("--holder", other),
    ]);
    assert_eq!(r.outcome, "taken", "{r:?}");
    let r = b.lock(&[
        ("--op", "take-over"),
        ("--token", "tok-me"),
        ("--holder", me),
    ]);
    assert_eq!(r.outcome, "held", "{r:?}");
    let r = b.lock(&[("--op", "release"), ("--token", "tok-other")]);
    assert_eq!(r.outcome, "released", "{r:?}");
    let r = b.lock(&[("--op", "release"), ("--token", "")]);
    assert_eq!(r.outcome, "released", "a free lock: {r:?}");
    b.lock(&[("--op", "acquire"), ("--holder", me)]);
    let r = b.lock(&[("--op", "release"), ("--token", "")]);
    assert_eq!(r.outcome, "released", "--force: {r:?}");
    // a take-over that died half way blocks take-overs until --force clears it
    b.lock(&[("--op", "acquire"), ("--holder", me)]);
    b.sh(&format!("mkdir {DIR}/lock.takeover"));
    let r = b.lock(&[
        ("--op", "take-over"),
        ("--token", "tok-me"),
        ("--holder", other),
    ]);
    assert_eq!(r.outcome, "held", "{r:?}");
    let r = b.lock(&[("--op", "release"), ("--token", "")]);
    assert_eq!(r.outcome, "released", "{r:?}");
    assert!(
        !b.sh(&format!("ls -A {DIR}")).contains("lock"),
        "all cleared"
    );
    let r = b.lock(&[("--op", "sideways")]);
    assert_eq!(r.outcome, "bad-input", "{r:?}");
}

/// Two runs taking over the same stale lock at the same instant, 20 times over, inside the
/// container: exactly one wins each time.
#[test]
fn of_two_simultaneous_take_overs_exactly_one_wins() {
    use std::io::Write;
    let b = NginxBox::start("race", Some("sleep"));
    let mut cp = Command::new("docker")
        .args(["exec", "-i", &b.name, "sh", "-c", "cat > /tmp/lock.sh"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    cp.stdin
        .take()
        .unwrap()
        .write_all(LOCK_SH.as_bytes())
        .unwrap();
    assert!(cp.wait().unwrap().success());
    let rounds = b.sh(&format!(
        r#"i=0
        while [ $i -lt 20 ]; do
          mkdir -p {DIR}/lock && printf '%s' '{{"token":"stale"}}' > {DIR}/lock/holder.json
          sh /tmp/lock.sh --dir {DIR} --op take-over --token stale --holder '{{"token":"a"}}' > /tmp/a 2>&1 &
          sh /tmp/lock.sh --dir {DIR} --op take-over --token stale --holder '{{"token":"b"}}' > /tmp/b 2>&1 &
          wait
          echo "round $(cat /tmp/a /tmp/b | grep -c 'BGD_OUTCOME taken')"
          rm -rf {DIR}/lock {DIR}/lock.takeover
          i=$((i + 1))
        done"#
    ));
    let wins: Vec<&str> = rounds.lines().filter(|l| l.starts_with("round ")).collect();
    assert_eq!(wins.len(), 20, "{rounds}");
    assert!(wins.iter().all(|w| *w == "round 1"), "{rounds}");
}

#[test]
fn two_apps_answering_one_name_on_one_port_is_refused() {
    let b = NginxBox::start("dup", None);
    // another app on the same nginx already answers dup.test on 8090
    b.sh("mkdir -p /etc/nginx/bgd/other && printf 'server { listen 8090; server_name dup.test; return 200 \"other\\\\n\"; }\\n' > /etc/nginx/bgd/other/active.conf && printf 'include /etc/nginx/bgd/other/active.conf;' > /etc/nginx/conf.d/bgd-other.conf && nginx -s reload");
    let mine = "server {\n    listen 8090;\n    server_name dup.test;\n    location / { return 200 \"site\\n\"; }\n}\n";
    let r = b.site(&[("--config", mine), ("--guard-ms", "500")]);
    assert_eq!(r.outcome, "invalid", "{r:?}");
    assert!(r.output.contains("conflicting server name"), "{r:?}");
    // nothing of site's stays active: the other app keeps its name
    assert!(b
        .sh("cat /etc/nginx/conf.d/bgd-site.conf 2>/dev/null")
        .is_empty());
    // and a missing stub of another app (a recreated container) is put back
    b.sh("rm /etc/nginx/conf.d/bgd-other.conf");
    let r = b.install("v1", &[]);
    assert_eq!(r.outcome, "applied", "{r:?}");
    assert_eq!(
        b.sh("cat /etc/nginx/conf.d/bgd-other.conf"),
        "include /etc/nginx/bgd/other/active.conf;"
    );
}

/// Flip mode: only the active config's own flag (flip-7 is not flip-70), only from the other
/// state, under the deploy lock, no reload; the history line sent on stdin once the flag
/// moved is the one recorded (the end of input records --history); an install that replaces
/// the config removes the old flag once its old workers are gone.
#[test]
fn flip_mode_moves_only_the_active_configs_own_flag() {
    let b = NginxBox::start("flip", None);
    let flag = format!("{DIR}/flip-70");
    let routed = format!(
        "server {{\n    listen 8090;\n    set $side off;\n    if (-e {flag}) {{\n        set $side on;\n    }}\n    location / {{ return 200 \"$side\\n\"; }}\n}}\n"
    );
    let r = b.site(&[("--config", &routed), ("--guard-ms", "500")]);
    assert_eq!(r.outcome, "applied", "{r:?}");
    assert_eq!(b.serves(), "off");
    let workers = b.workers();
    let holder = r#"{"token":"t1","user":"u","host":"h","pid":1,"ci":null,"command":"bgd rollback","since":"2026-01-01T00:00:00Z"}"#;
    let record = [
        ("--lock-once", holder),
        ("--state", r#"{"app":"site","generation":70,"schema":2}"#),
        ("--record-schema", "3"),
        ("--history", r#"{"run":"r1","n":"given"}"#),
        ("--history-run", "r1"),
    ];

    // flipped with --await-history, `line` sent once it asks
    const AMENDED: &str = "{\"run\":\"r1\",\"n\":\"amended\"}\n";
    let answering = |to: &str, line: &str| {
        let with_await = [&record[..], &[("--await-history", "1")]].concat();
        b.flip(&flag, to, &with_await, Some(line))
    };
    let history = || b.sh(&format!("cat {DIR}/history.jsonl"));

    // a flag the active config does not route by (a prefix of its own), or bad input
    let r = b.flip(&format!("{DIR}/flip-7"), "on", &record, None);
    assert_eq!(r.outcome, "flip-stale", "{r:?}");
    assert!(b.sh(&format!("ls {DIR}")).lines().all(|f| f != "flip-7"));
    for (bad_flag, to) in [
        ("/etc/nginx/bgd/other/flip-70", "on"),
        ("/etc/nginx/bgd/site/flip-x", "on"),
        (flag.as_str(), "maybe"),
    ] {
        let r = b.flip(bad_flag, to, &record, None);
        assert_eq!(r.outcome, "bad-input", "{bad_flag} {to}: {r:?}");
    }
    assert_eq!(b.serves(), "off");

    // another run holds the lock: nothing moves
    b.lock(&[("--op", "acquire"), ("--holder", r#"{"token":"other"}"#)]);
    let r = b.flip(&flag, "on", &record, None);
    assert_eq!(r.outcome, "locked", "{r:?}");
    assert_eq!(b.serves(), "off");
    b.lock(&[("--op", "release"), ("--token", "")]);

    // raised, with the history line the caller sends once it moved
    let r = answering("on", AMENDED);
    assert_eq!(
        (r.outcome.as_str(), r.field("recorded")),
        ("flipped", Some("1")),
        "{r:?}"
    );
    assert!(r.output.contains("BGD_AWAIT"), "{r:?}");
    assert_eq!(b.serves(), "on");
    assert_eq!(b.workers(), workers, "no reload");
    assert_eq!(history(), AMENDED);
    // raising made the flag's marker: the idle release has been live
    let files = || b.sh(&format!("ls {DIR}"));
    assert!(files().lines().any(|f| f == "promoted-70"), "{}", files());
    assert!(b
        .sh(&format!("cat {DIR}/state.json"))
        .contains("\"generation\":70"));
    assert!(
        b.sh(&format!("ls -d {DIR}/lock 2>/dev/null")).is_empty(),
        "the lock is released"
    );

    // already on: stale; lowered with no answer (the caller died): --history is recorded
    let r = b.flip(&flag, "on", &record, None);
    assert_eq!(r.outcome, "flip-stale", "{r:?}");
    let r = answering("off", "");
    assert_eq!(r.outcome, "flipped", "{r:?}");
    assert_eq!(b.serves(), "off");
    assert_eq!(history(), "{\"run\":\"r1\",\"n\":\"given\"}\n");
    // lowering leaves the marker
    assert!(files().lines().any(|f| f == "promoted-70"), "{}", files());

    // the record cannot be written: the flag moved all the same, and the caller is still asked
    // (it must learn that the flag moved), but its line is not taken
    b.sh(&format!("mkdir {DIR}/history.jsonl.bgd-tmp"));
    let r = answering("on", AMENDED);
    assert_eq!(
        (r.outcome.as_str(), r.field("recorded")),
        ("flipped", Some("0")),
        "{r:?}"
    );
    assert!(r.output.contains("BGD_AWAIT"), "{r:?}");
    assert!(r.output.contains("cannot write the record"), "{r:?}");
    assert_eq!(b.serves(), "on");
    assert_eq!(history(), "{\"run\":\"r1\",\"n\":\"given\"}\n");
    b.sh(&format!("rmdir {DIR}/history.jsonl.bgd-tmp"));
    let r = b.flip(&flag, "off", &record, None);
    assert_eq!(r.outcome, "flipped", "{r:?}");

    // raised, then the caller could not confirm it: BGD_UNDO puts the flag back in the same
    // exec, with the record from before it, and the lock goes with the exec
    let undo = [
        (
            "--undo-state",
            r#"{"app":"site","generation":70,"schema":2,"undone":1}"#,
        ),
        ("--undo-history", r#"{"run":"r1","n":"failed"}"#),
    ];
    let with_undo = [&record[..], &[("--await-history", "1")], &undo[..]].concat();
    // (a flag never raised before: its marker goes back with it)
    b.sh(&format!("rm {DIR}/promoted-70"));
    let r = b.flip(&flag, "on", &with_undo, Some("BGD_UNDO\n"));
    assert_eq!(
        (r.outcome.as_str(), r.field("recorded")),
        ("flipped-back", Some("1")),
        "{r:?}"
    );
    assert_eq!(b.serves(), "off");
    assert_eq!(b.workers(), workers, "no reload");
    assert_eq!(history(), "{\"run\":\"r1\",\"n\":\"failed\"}\n");
    assert!(b
        .sh(&format!("cat {DIR}/state.json"))
        .contains("\"undone\":1"));
    assert!(b.sh(&format!("ls -d {DIR}/lock 2>/dev/null")).is_empty());
    assert!(files().lines().all(|f| f != "promoted-70"), "{}", files());

    // raised, then put back by a second exec (--unmark): the marker goes too
    let r = b.flip(&flag, "on", &record, None);
    assert_eq!(r.outcome, "flipped", "{r:?}");
    assert!(files().lines().any(|f| f == "promoted-70"), "{}", files());
    let r = b.flip(
        &flag,
        "off",
        &[&record[..], &[("--unmark", "1")]].concat(),
        None,
    );
    assert_eq!(r.outcome, "flipped", "{r:?}");
    assert_eq!(b.serves(), "off");
    assert!(files().lines().all(|f| f != "promoted-70"), "{}", files());

    // raised again, then a config that does not route by it: the flag and its marker go with
    // the old workers
    let r = b.flip(&flag, "on", &record, None);
    assert_eq!(r.outcome, "flipped", "{r:?}");
    let r = b.install("v2", &[]);
    assert_eq!(r.outcome, "applied", "{r:?}");
    assert_eq!(b.serves(), "v2");
    assert!(
        files()
            .lines()
            .all(|f| f != "flip-70" && f != "promoted-70"),
        "{}",
        files()
    );
}
