//! Lossless switching: real nginx, real containers, a non-retrying load running throughout.

mod common;
use common::*;
use std::time::Duration;

fn assert_no_failures(summary: &serde_json::Value) {
    assert_eq!(summary["failures"], 0, "failed requests: {summary:#}");
    assert!(
        summary["requests"].as_u64().unwrap() > 500,
        "too little load to prove anything: {summary}"
    );
    for client in ["keepalive", "paced", "close", "post"] {
        assert!(
            summary["clients"][client]["requests"].as_u64().unwrap_or(0) > 0,
            "{client} sent nothing: {summary}"
        );
    }
}

#[test]
fn deploys_and_rollbacks_under_load_drop_nothing() {
    let t = TestApp::new("load");
    t.write(&t.config());
    let v1 = t.bgd(&["deploy", "bgd-demo:v1"]);
    assert_eq!(v1.code, 0, "{v1:?}");

    let load = Load::start(t.live_port, &t.dir);
    load.expect("blue");
    switch_under_load(&t, &load, &["deploy", "bgd-demo:v2"]);
    switch_under_load(&t, &load, &["rollback"]);
    switch_under_load(&t, &load, &["deploy", "bgd-demo:v3"]);
    let last = switch_under_load(&t, &load, &["rollback"]);
    // v3 replaced the parked v2 in green, so the last rollback returns to v1
    assert_eq!(last["live"]["image"], "bgd-demo:v1");
    // a candidate held back: its preview reload leaves every live request on blue...
    let held = t.bgd(&["deploy", "--no-switch", "bgd-demo:v4"]);
    assert_eq!(held.code, 0, "{held:?}");
    // ...until `switch` promotes it, on the same lossless path
    let promoted = switch_under_load(&t, &load, &["switch"]);
    assert_eq!(promoted["live"]["image"], "bgd-demo:v4");
    std::thread::sleep(Duration::from_millis(300));
    let summary = load.finish();
    assert_no_failures(&summary);
    assert!(
        summary["colors"]["blue"].as_u64().unwrap() > 0
            && summary["colors"]["green"].as_u64().unwrap() > 0,
        "{summary}"
    );
    assert_eq!(t.live_version(), "v4");
}

/// A 3-second request that reached the old color just before the switch completes with 200
/// from the old color, and bgd reports the switch only once no old nginx worker remains.
#[test]
fn in_flight_request_on_the_old_color_completes() {
    let t = TestApp::new("drain");
    t.write(&t.config());
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v1"]).code, 0);
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v2"]).code, 0);
    let port = t.live_port;
    let slow = std::thread::spawn(move || http_get(port, "/slow?ms=3000"));
    std::thread::sleep(Duration::from_millis(300));
    let r = t.bgd(&["rollback"]);
    assert_eq!(r.code, 0, "{r:?}");
    // bgd returned: the old workers are gone, so nothing can route to green any more
    let ps = t.lb_sh("for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done");
    assert!(
        !ps.contains("shutting down"),
        "an old worker remains after the switch was reported:\n{ps}"
    );
    let reply = slow
        .join()
        .unwrap()
        .expect("the slow request got a response");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.header("X-Bgd-Color"),
        Some("green"),
        "served by the old color"
    );
    assert_eq!(reply.header("X-App-Version"), Some("v2"));
    assert_eq!(t.live_version(), "v1");
}

/// park.mode stopped: the old color is stopped after the drain; rollback starts it, checks
/// readiness, then switches, all under load without a failed request.
#[test]
fn parked_stopped_rollback_starts_it_first() {
    let t = TestApp::new("stopped");
    t.write(&t.config().set("park.mode", "stopped"));
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v1"]).code, 0);
    let load = Load::start(t.live_port, &t.dir);
    load.expect("blue");
    switch_under_load(&t, &load, &["deploy", "bgd-demo:v2"]);
    let s = t.bgd(&["status", "--json"]).result();
    assert_eq!(s["idle"]["state"], "stopped", "{s}");
    for c in s["idle"]["containers"].as_array().unwrap() {
        assert_eq!(c["state"], "exited", "{c}");
    }
    let back = switch_under_load(&t, &load, &["rollback"]);
    assert_eq!(back["live"]["color"], "blue");
    std::thread::sleep(Duration::from_millis(300));
    assert_no_failures(&load.finish());
    assert_eq!(t.live_version(), "v1");
    let s = t.bgd(&["status", "--json"]).result();
    assert_eq!(
        s["idle"]["state"], "stopped",
        "v2 is parked stopped now: {s}"
    );
}

/// The load tool must be able to fail: a server that truncates, answers 503, or answers with
/// the wrong color, and a closed port, are each counted.
#[test]
fn load_tool_counts_every_kind_of_failure() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for (i, conn) in listener.incoming().enumerate() {
            let Ok(mut conn) = conn else { continue };
            let mut buf = [0u8; 2048];
            let _ = conn.read(&mut buf);
            let reply: &[u8] = match i % 3 {
                0 => b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nX-Bgd-Color: blue\r\n\r\ntruncated",
                1 => b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nX-Bgd-Color: blue\r\n\r\n",
                _ => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Bgd-Color: blue\r\nConnection: close\r\n\r\nok",
            };
            let _ = conn.write_all(reply);
        }
    });
    let dir = std::env::temp_dir().join(format!("bgd-load-selftest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("expect"), "green").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bgd-load"))
        .args([
            "--url",
            &format!("http://127.0.0.1:{port}/"),
            "--close",
            "2",
            "--duration",
            "1",
        ])
        .arg("--expect-file")
        .arg(dir.join("expect"))
        .output()
        .unwrap();
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for kind in ["eof", "status-5xx", "wrong-color"] {
        assert!(
            summary["failure_kinds"][kind].as_u64().unwrap_or(0) > 0,
            "{kind} not counted: {summary}"
        );
    }

    let closed = claim_port();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bgd-load"))
        .args([
            "--url",
            &format!("http://127.0.0.1:{}/", closed.port),
            "--keepalive",
            "1",
            "--duration",
            "1",
        ])
        .output()
        .unwrap();
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        summary["failure_kinds"]["connect"].as_u64().unwrap_or(0) > 0,
        "{summary}"
    );

    // only loopback is ever a target
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bgd-load"))
        .args(["--url", "http://10.1.2.3:80/", "--duration", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// A parked replica restarted with a new address: nginx's route to the old address is stale.
/// The rollback must notice (the fast path checks where each probe went) and route to the
/// replica's current address, never to whatever holds the old one.
#[test]
fn rollback_follows_a_parked_replica_that_changed_address() {
    let t = TestApp::new("newip");
    t.write(&t.config());
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v1"]).code, 0);
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v2"]).code, 0);
    let blue1 = format!("{}-blue-1", t.app);
    let net = format!("{}-net", t.app);
    let ip = || {
        docker(&[
            "inspect",
            "-f",
            &format!("{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}"),
            &blue1,
        ])
        .trim()
        .to_string()
    };
    let before = ip();
    docker(&["stop", "-t", "1", &blue1]);
    // a squatter on the app network, serving another version, may take the freed address
    docker(&[
        "run",
        "-d",
        "--name",
        &format!("{}-squatter", t.app),
        "--label",
        &format!("bgd.app={}", t.app),
        "--network",
        &net,
        "bgd-demo:v4",
    ]);
    docker(&["start", &blue1]);
    assert_ne!(
        ip(),
        before,
        "precondition: the replica came back with another address"
    );

    let r = t.bgd(&["rollback"]);
    assert_eq!(r.code, 0, "{r:?}");
    for _ in 0..20 {
        assert_eq!(
            t.live_version(),
            "v1",
            "every live request reaches the parked release"
        );
    }
    let s = t.bgd(&["status", "--json"]).result();
    for c in s["live"]["containers"].as_array().unwrap() {
        assert_eq!(c["health"], "healthy", "{s}");
    }
}

/// nginx older than 1.27.4 cannot close the keep-alive race: bgd still works, and says so in
/// deploy and status output.
#[test]
fn old_nginx_works_with_a_warning() {
    let t = TestApp::new("old");
    t.write(&t.config().set("lb.image", "bgd-nginx:1.22"));
    let r = t.bgd(&["deploy", "bgd-demo:v1"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("lacks keepalive_min_timeout"), "{r:?}");
    assert!(
        !t.active_config().contains("keepalive_min_timeout"),
        "not rendered for 1.22"
    );
    assert_eq!(t.live_version(), "v1");
    let s = t.bgd(&["status", "--json"]).result();
    let warnings = s["warnings"].to_string();
    assert!(warnings.contains("keepalive_min_timeout"), "{s}");
    assert_eq!(s["nginx"]["version"], "1.22.1");
    let v2 = t.bgd(&["deploy", "bgd-demo:v2"]);
    assert_eq!(v2.code, 0, "{v2:?}");
    let back = t.bgd(&["rollback"]);
    assert_eq!(back.code, 0, "{back:?}");
    assert!(
        back.stderr.contains("lacks keepalive_min_timeout"),
        "{back:?}"
    );
    assert_eq!(t.live_version(), "v1");
}
