//! Safety: interruption, post-switch verification, hostile input, faults.

mod common;
use common::*;

/// A config whose candidates take 30 s to become ready: a deploy sits in its readiness gate.
fn slow_start_config(t: &TestApp) -> Cfg {
    t.config()
        .set("container.env.DEMO_START_DELAY_MS", "30000")
        .set("readiness.deadline", "60s")
}

#[test]
fn sigint_during_the_gates_removes_the_candidate() {
    let t = TestApp::new("sigint");
    t.write(&t.config());
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v1"]).code, 0);
    // the next candidate starts slowly, so the deploy sits in its readiness gate
    t.write(&slow_start_config(&t));
    let mut run = t.watch(&["deploy", "bgd-demo:v2"]);
    run.wait_step("readiness", "started");
    run.signal("-INT");
    let r = run.finish();
    assert_eq!(r.code, 130, "{r:?}");
    let error = r.result()["error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains("interrupted by SIGINT"), "{r:?}");
    assert!(t.containers("green").is_empty(), "candidate left behind");
    assert_eq!(t.live_version(), "v1");
    assert_eq!(
        t.bgd(&["lock", "status", "--json"]).result()["held"],
        false,
        "lock released"
    );
    let h = t.bgd(&["history", "--json"]).result();
    assert_eq!(
        h["entries"].as_array().unwrap().last().unwrap()["outcome"],
        "interrupted"
    );
}

#[test]
fn a_release_failing_after_the_switch_is_switched_back() {
    let t = TestApp::new("verify");
    let cfg = t
        .config()
        .set("smoke", serde_json::json!([{"name": "home", "path": "/"}]));
    t.write(&cfg);
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v1"]).code, 0);
    // v2 passes every gate, then starts failing 8 s after it started
    t.write(
        &cfg.set("container.env.DEMO_FAIL_AFTER_MS", "8000")
            .set("switch.verify", "20s"),
    );
    let load = Load::start(t.live_port, &t.dir);
    load.expect("any");
    let r = t.bgd(&["deploy", "bgd-demo:v2", "--json"]);
    assert_eq!(r.code, 4, "{r:?}");
    let res = r.result();
    assert!(
        res["error"]
            .as_str()
            .unwrap()
            .contains("traffic is back on blue"),
        "{res}"
    );
    load.expect("blue");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let summary = load.finish();
    assert_eq!(t.live_version(), "v1");
    // while green failed, requests got its 500s (that is what verification caught); none
    // were dropped by the switches, and none after the switch back came from green
    assert_eq!(
        summary["failure_kinds"]["wrong-color"],
        serde_json::Value::Null,
        "{summary}"
    );
    for kind in ["connect", "reset", "eof", "timeout"] {
        assert_eq!(
            summary["failure_kinds"][kind],
            serde_json::Value::Null,
            "{kind}: {summary}"
        );
    }
    let s = t.bgd(&["status", "--json"]).result();
    assert_eq!(s["live"]["image"], "bgd-demo:v1");
    assert_eq!(
        s["idle"]["role"], "candidate",
        "the failed release stays for inspection: {s}"
    );
    let h = t.bgd(&["history", "--json"]).result();
    assert_eq!(
        h["entries"].as_array().unwrap().last().unwrap()["outcome"],
        "rolled-back"
    );
    // it is there to inspect, never to promote: status says so, switch and rollback refuse
    let human = t.bgd(&["status"]);
    assert!(human.stdout.contains("FAILED verification"), "{human:?}");
    assert!(human.stdout.contains("do not `bgd switch` it"), "{human:?}");
    let sw = t.bgd(&["switch"]);
    assert_eq!(sw.code, 2, "{sw:?}");
    assert!(sw.stderr.contains("failed verification"), "{sw:?}");
    let rb = t.bgd(&["rollback"]);
    assert_eq!(rb.code, 2, "{rb:?}");
    assert!(
        rb.stderr.contains("`bgd discard` removes the failed one"),
        "{rb:?}"
    );
    assert_eq!(t.live_version(), "v1");
    // discard clears it; the next deploy starts clean
    let d = t.bgd(&["discard"]);
    assert_eq!(d.code, 0, "{d:?}");
    let s = t.bgd(&["status", "--json"]).result();
    assert!(s["idle"].is_null(), "{s}");
    let h = t.bgd(&["history"]);
    assert!(h.stdout.contains("green discarded"), "{h:?}");
}

/// bgd killed with SIGKILL as it starts each step of a deploy, under load: no request fails,
/// and the next deploy succeeds with no manual step. The kill points are bgd's own step
/// events, so every step is hit whatever the machine's speed.
#[test]
fn sigkill_at_any_step_breaks_nothing() {
    let t = TestApp::new("kill");
    t.write(&t.config());
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v1"]).code, 0);
    // a release parked from here on, so a deploy sets one aside and lets it go
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v2"]).code, 0);
    let load = Load::start(t.live_port, &t.dir);
    let steps = [
        "prepare",
        "set-aside",
        "start",
        "preview",
        "readiness",
        "drift",
        "switch",
        "drop-parked",
        "verify",
    ];
    let mut version = 2;
    for step in steps {
        load.expect("any");
        version = version % 4 + 1;
        let mut run = t.watch(&["deploy", &format!("bgd-demo:v{version}")]);
        run.wait_step(step, "started");
        run.signal("-KILL");
        assert_eq!(run.finish().code, -1, "killed at {step}");
        // whatever was left, the next deploy takes it from there
        version = version % 4 + 1;
        let next = switch_under_load(&t, &load, &["deploy", &format!("bgd-demo:v{version}")]);
        assert_eq!(next["ok"], true, "after a kill at {step}: {next}");
        assert_eq!(t.live_version(), format!("v{version}"));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let summary = load.finish();
    assert_eq!(summary["failures"], 0, "{summary:#}");
    let s = t.bgd(&["status", "--json"]).result();
    assert_eq!(s["warnings"], serde_json::json!([]), "{s}");
}

#[test]
fn injection_attempts_are_config_errors() {
    let t = TestApp::new("inject");
    let base = t.config();
    let probe = |extra: serde_json::Value| {
        let mut p = serde_json::json!({"name": "x", "path": "/"});
        p.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::json!([p])
    };
    let attempts = [
        base.clone().set("app", "web;\n}"),
        base.clone().set("app", "web { return 200; }"),
        base.clone().set(
            "smoke",
            probe(serde_json::json!({"path": "/ok; return 200"})),
        ),
        base.clone().set(
            "smoke",
            probe(serde_json::json!({"headers": {"Host": "a\r\nX-Evil: 1"}})),
        ),
        base.clone()
            .set("smoke", probe(serde_json::json!({"name": "x\ny"}))),
        base.clone()
            .set_at(&["container", "labels", "bgd.color"], "green"),
        base.clone().set("network", "net; rm -rf /"),
        base.clone()
            .set("lb.url", format!("http://127.0.0.1 $host:{}", t.live_port)),
    ];
    for cfg in attempts {
        t.write(&cfg);
        let r = t.bgd(&["validate"]);
        assert_eq!(r.code, 2, "accepted:\n{}\n{r:?}", cfg.yaml());
    }
    t.write(&base);
    for image in ["bgd-demo:v1;rm", "bgd-demo:v1\n}", "$(reboot)", "-it"] {
        let r = t.bgd(&["deploy", image]);
        assert_eq!(r.code, 2, "{image:?}: {r:?}");
    }
    // a config file that is far too large is rejected before parsing
    std::fs::write(t.dir.join("big.yaml"), "#".repeat(2 * 1024 * 1024)).unwrap();
    assert_eq!(t.bgd(&["-f", "big.yaml", "validate"]).code, 2);
}

/// A daemon that accepts connections and never answers: bgd gives up within its connect
/// timeout with exit 6, instead of hanging.
#[test]
fn hanging_docker_daemon_exits_6() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            held.push(conn);
        }
    });
    let dir = std::env::temp_dir().join(format!("bgd-hang-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("bgd.yaml"),
        "app: web\ncontainer:\n  port: 8080\nlb:\n  publish: [\"127.0.0.1:8000:80\", \"127.0.0.1:8001:8081\"]\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bgd"))
        .args(["status"])
        .current_dir(&dir)
        .env("DOCKER_HOST", format!("tcp://127.0.0.1:{port}"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(stderr.contains("no answer within"), "{stderr}");
}

#[test]
fn stopped_nginx_and_dying_candidate() {
    let t = TestApp::new("faults");
    t.write(&t.config());
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v1"]).code, 0);

    // a candidate that exits during the gates: rejected at once, with its last output
    t.write(
        &t.config()
            .set("container.command", serde_json::json!(["migrate"])),
    );
    let r = t.bgd(&["deploy", "bgd-demo:v2"]);
    assert_eq!(r.code, 3, "{r:?}");
    // caught right after the start or during readiness, depending on timing; both name the
    // replica and quote its output
    assert!(
        r.stderr.contains("stopped right after starting")
            || r.stderr.contains("is restarting")
            || r.stderr.contains("is exited"),
        "{r:?}"
    );
    assert!(
        r.stderr.contains(&format!("{}-green-", t.app)) && r.stderr.contains("last output"),
        "{r:?}"
    );
    assert!(t.containers("green").is_empty());
    assert_eq!(t.live_version(), "v1");

    // the nginx container stopped: exit 6 saying how to start it; nothing else touched
    t.write(&t.config());
    docker(&["stop", "-t", "1", &t.lb()]);
    let r = t.bgd(&["deploy", "bgd-demo:v2"]);
    assert_eq!(r.code, 6, "{r:?}");
    assert!(
        r.stderr.contains(&format!("docker start {}", t.lb())),
        "{r:?}"
    );
    assert!(t.containers("green").is_empty());
    let s = t.bgd(&["status", "--json"]).result();
    assert!(
        s["warnings"].to_string().contains("nothing is served"),
        "{s}"
    );
    let rb = t.bgd(&["rollback"]);
    assert_ne!(rb.code, 0, "{rb:?}");
    docker(&["start", &t.lb()]);
    let r = t.bgd(&["deploy", "bgd-demo:v2"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(t.live_version(), "v2");
}

/// A failed deploy must not cost the rollback target: while the candidate is gated, the parked
/// release is set aside (renamed, running); a rejected or interrupted candidate gives it back,
/// a killed run leaves it where rollback still finds it, and a candidate that goes live lets
/// it go.
#[test]
fn a_rejected_or_interrupted_deploy_keeps_the_parked_release() {
    let t = TestApp::new("keep");
    t.write(&t.config().set("readiness.deadline", "3s"));
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v1"]).code, 0);
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v2"]).code, 0);
    let parked_is_v1 = |when: &str| {
        let s = t.bgd(&["status", "--json"]).result();
        assert_eq!(s["live"]["image"], "bgd-demo:v2", "{when}: {s}");
        assert_eq!(s["idle"]["image"], "bgd-demo:v1", "{when}: {s}");
        assert_eq!(s["idle"]["role"], "parked", "{when}: {s}");
        assert_eq!(s["warnings"], serde_json::json!([]), "{when}: {s}");
        assert_eq!(
            t.containers("blue"),
            [format!("{}-blue-1", t.app), format!("{}-blue-2", t.app)],
            "{when}: its own names back"
        );
        let preview = http_get(t.preview_port, "/").expect("preview answers");
        assert_eq!(
            preview.header("X-App-Version"),
            Some("v1"),
            "{when}: preview"
        );
    };

    let bad = t.bgd(&["deploy", "bgd-demo:unhealthy"]);
    assert_eq!(bad.code, 3, "{bad:?}");
    assert!(bad.stderr.contains("set the parked release"), "{bad:?}");
    parked_is_v1("after a rejected candidate");

    // interrupted in its readiness gate
    t.write(&slow_start_config(&t));
    let mut run = t.watch(&["deploy", "bgd-demo:v3"]);
    run.wait_step("readiness", "started");
    assert!(
        docker(&["ps", "-a", "--format", "{{.Names}}"])
            .contains(&format!("{}-blue-1-parked", t.app)),
        "set aside while the candidate is gated"
    );
    run.signal("-INT");
    let r = run.finish();
    assert_eq!(r.code, 130, "{r:?}");
    parked_is_v1("after an interrupted deploy");

    // killed in its readiness gate: the parked release stays set aside, and rollback still
    // finds it by its labels
    let mut run = t.watch(&["deploy", "bgd-demo:v3"]);
    run.wait_step("readiness", "started");
    run.signal("-KILL");
    run.finish();
    let rb = t.bgd(&["rollback"]);
    assert_eq!(rb.code, 0, "{rb:?}");
    assert_eq!(t.live_version(), "v1");

    // the next deploy clears what the killed run left, gives the live release its own names
    // back, and the candidate that goes live lets the parked release it replaced go
    t.write(&t.config());
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v3"]).code, 0);
    let names = docker(&["ps", "-a", "--format", "{{.Names}}"]);
    let ours: Vec<&str> = names.lines().filter(|n| n.starts_with(&t.app)).collect();
    assert!(!ours.iter().any(|n| n.ends_with("-parked")), "{ours:?}");
    assert_eq!(t.containers("green").len(), 2);
    assert_eq!(
        t.containers("blue"),
        [format!("{}-blue-1", t.app), format!("{}-blue-2", t.app)]
    );
    let s = t.bgd(&["status", "--json"]).result();
    assert_eq!(s["idle"]["image"], "bgd-demo:v1", "{s}");
    assert_eq!(s["warnings"], serde_json::json!([]), "{s}");
}

/// A switch that cannot be confirmed, and whose undo cannot be confirmed either (here lb.url
/// points where nginx is not): bgd cannot tell what serves, so it removes nothing nginx may
/// route to, says so (exit 7), and the record names what it installed last. With the
/// built-in template the switch raises the preview config's rollback flag and its own exec
/// puts it back, with the marker it made; with an `lb.template` it reloads and the undo is a
/// reload.
#[test]
fn an_unconfirmable_switch_removes_nothing_that_may_serve() {
    unconfirmable_switch("noconf", None);
    unconfirmable_switch("noconft", Some("mine.conf.tera"));
}

fn unconfirmable_switch(name: &str, template: Option<&str>) {
    let t = TestApp::new(name);
    let mut config = t.config();
    if let Some(file) = template {
        let builtin = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/nginx.conf.tera"),
        )
        .unwrap();
        std::fs::write(t.dir.join(file), builtin).unwrap();
        config = config.set("lb.template", file);
    }
    t.write(&config);
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v1"]).code, 0);
    let closed = claim_port();
    t.write(
        &config
            .clone()
            .set("lb.url", format!("http://127.0.0.1:{}", closed.port)),
    );
    let d = t.bgd(&["deploy", "bgd-demo:v2"]);
    assert_eq!(d.code, 7, "{d:?}");
    let says = if template.is_some() {
        "restoring the previous routing also failed"
    } else {
        "the previous routing was put back, but it could not be confirmed either"
    };
    assert!(d.stderr.contains(says), "{d:?}");
    assert_eq!(
        t.containers("green").len(),
        2,
        "the candidate nginx may route to is kept"
    );
    // the undo did apply (only its confirmation could not be had): blue serves, and the
    // record says so, with green waiting as the candidate
    assert_eq!(t.live_version(), "v1");
    t.write(&config);
    let s = t.bgd(&["status", "--json"]);
    assert_eq!(s.code, 0, "{s:?}");
    let s = s.result();
    assert_eq!(s["live"]["image"], "bgd-demo:v1", "{s}");
    assert_eq!(s["idle"]["role"], "candidate", "{s}");
    // nginx says so too: the flag put back took its marker (the candidate was never live),
    // so a rollback cannot take it for a parked release
    let files = t.lb_sh(&format!("ls /etc/nginx/bgd/{}", t.app));
    assert!(
        !files.contains("promoted-") && !files.contains("flip-"),
        "{files}"
    );
    let bgd = http_get(t.preview_port, "/__bgd").expect("/__bgd answers");
    assert_eq!(bgd.header("x-bgd-idle-role"), Some("candidate"));
    assert_eq!(
        t.bgd(&["rollback"]).code,
        2,
        "nothing parked to roll back to"
    );
    assert_eq!(t.bgd(&["switch"]).code, 0);
    assert_eq!(t.live_version(), "v2");
}

/// A Docker API proxy on loopback TCP that relays to the local daemon's socket, and loses the
/// answers to the container renames numbered in `cut` (1 = the first it relays): the daemon
/// renames, the client sees its connection cut, as after a timeout. Returns its port and the
/// count of renames it relayed.
fn proxy_losing_rename_answers(
    cut: &'static [usize],
) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let socket = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(str::to_string))
        .unwrap_or_else(|| "/var/run/docker.sock".to_string());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let renames = Arc::new(AtomicUsize::new(0));
    let counted = renames.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let Ok(daemon) = std::os::unix::net::UnixStream::connect(&socket) else {
                continue;
            };
            let cut_here = Arc::new(AtomicBool::new(false));
            let (mut c_in, mut c_out) = (client.try_clone().unwrap(), client);
            let (mut d_in, mut d_out) = (daemon.try_clone().unwrap(), daemon);
            let (renames, cut_up) = (renames.clone(), cut_here.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 << 10];
                while let Ok(n) = c_in.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    // set before the request goes on: its answer comes after
                    if String::from_utf8_lossy(&buf[..n]).contains("/rename?") {
                        let nth = renames.fetch_add(1, Ordering::SeqCst) + 1;
                        if cut.contains(&nth) {
                            cut_up.store(true, Ordering::SeqCst);
                        }
                    }
                    if d_out.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = d_out.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 << 10];
                while let Ok(n) = d_in.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if cut_here.load(Ordering::SeqCst) {
                        // the daemon did it; its answer never arrives
                        let _ = c_out.shutdown(std::net::Shutdown::Both);
                        return;
                    }
                    if c_out.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = c_out.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (port, counted)
}

/// set-aside renames the parked release's 2 replicas at once; the daemon does the first
/// rename but its answer is lost, so the deploy fails (exit 6) and gives the release back;
/// the daemon does the first give-back rename too, its answer lost as well. The parked
/// release ends up under its own names, parked, whatever names the daemon left it under.
#[test]
fn a_set_aside_rename_whose_answer_is_lost_is_given_back() {
    let t = TestApp::new("lostren");
    t.write(&t.config());
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v1"]).code, 0);
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v2"]).code, 0);
    let parked_before = t.containers("blue");
    assert_eq!(parked_before.len(), 2, "{parked_before:?}");

    // renames 1 and 2: set aside; 3 and 4: given back
    let (port, renames) = proxy_losing_rename_answers(&[1, 3]);
    let host = format!("tcp://127.0.0.1:{port}");
    let r = bgd_env(
        &t.dir,
        &[("DOCKER_HOST", &host)],
        &["deploy", "bgd-demo:v3"],
    );
    assert_eq!(r.code, 6, "{r:?}");
    assert!(r.stderr.contains("rename container"), "{r:?}");
    assert!(!r.stderr.contains("could not give"), "{r:?}");
    assert_eq!(
        renames.load(std::sync::atomic::Ordering::SeqCst),
        4,
        "both replicas set aside and given back: {r:?}"
    );
    // the parked release is back under its own names, running; nothing is left aside
    assert_eq!(t.containers("blue"), parked_before);
    let aside = docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("name={}-", t.app),
        "--format",
        "{{.Names}}",
    ]);
    assert!(!aside.contains("parked"), "{aside}");
    let st = t.bgd(&["--json", "status"]).result();
    assert_eq!(st["idle"]["role"], "parked", "{st}");
    assert_eq!(st["idle"]["image"], "bgd-demo:v1", "{st}");
    assert_eq!(t.live_version(), "v2");
    // and a rollback to it works
    assert_eq!(t.bgd(&["rollback"]).code, 0);
    assert_eq!(t.live_version(), "v1");
}
