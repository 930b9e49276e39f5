//! Defaults that hold with real application servers: gunicorn + Flask from Debian's packages
//! (tests/images/gunicorn) at their defaults, and what nginx does after one upstream error.

mod common;
use common::*;
use serde_json::json;
use std::time::Duration;

const GUNICORN: &str = "bgd-gunicorn:test";

/// gunicorn's app on its port 8000; the readiness deadline leaves room for Python to start.
fn gunicorn_config(t: &TestApp) -> Cfg {
    t.config()
        .set("container.port", 8000)
        .set("readiness.deadline", "20s")
}

/// gunicorn at its defaults listens on 127.0.0.1 inside its container: nginx is refused, and
/// readiness says so and what to change, not "/health answered 502".
#[test]
fn gunicorn_at_its_defaults_is_named_as_listening_on_loopback() {
    let t = TestApp::new("gdef");
    t.write(&gunicorn_config(&t).set("readiness.deadline", "6s"));
    let d = t.bgd(&["deploy", GUNICORN]);
    assert_eq!(d.code, 3, "{d:?}");
    for want in [
        format!("nginx could not connect to {}-blue-", t.app),
        "(connection refused) — is the app listening on 0.0.0.0:8000, not 127.0.0.1".to_string(),
    ] {
        assert!(d.stderr.contains(&want), "lacks {want:?}: {d:?}");
    }
}

/// gunicorn's gthread worker closes idle keep-alive connections after 2 s, its default. bgd's
/// default `lb.upstream_keepalive_timeout` (1 s) sits below it, so nginx never reuses a
/// connection gunicorn is closing: POSTs paced 2 s apart (the idle gap that meets gunicorn's
/// closes), keep-alive and fresh-connection clients, through two switches, lose nothing.
/// Each POST goes on a fresh connection to nginx, so its 2 s gaps are felt by nginx's pooled
/// connections to gunicorn; a client's own connection idle across a reload is another matter
/// (docs/commands.md, "what it assumes of clients").
#[test]
fn gunicorn_behind_bgd_defaults_loses_nothing() {
    let t = TestApp::new("guni");
    let serving = |version: &str| {
        gunicorn_config(&t)
            .set(
                "container.command",
                json!([
                    "gunicorn",
                    "--bind",
                    "0.0.0.0:8000",
                    "--threads",
                    "4",
                    "app:app"
                ]),
            )
            .set("container.env.APP_VERSION", version)
    };
    t.write(&serving("g1"));
    let d = t.bgd(&["deploy", GUNICORN]);
    assert_eq!(d.code, 0, "{d:?}");
    assert!(
        t.active_config().contains("keepalive_timeout 1s;"),
        "{}",
        t.active_config()
    );

    let load = Load::start_with(
        t.live_port,
        &t.dir,
        "X-Bgd-Color",
        &["--post", "16", "--post-pace-ms", "2000", "--post-close"],
    );
    load.expect("blue");
    std::thread::sleep(Duration::from_secs(5));
    t.write(&serving("g2"));
    switch_under_load(&t, &load, &["deploy", GUNICORN]);
    std::thread::sleep(Duration::from_secs(5));
    switch_under_load(&t, &load, &["rollback"]);
    std::thread::sleep(Duration::from_secs(5));
    let summary = load.finish();
    assert_eq!(summary["failures"], 0, "failed requests: {summary:#}");
    assert!(
        summary["clients"]["post"]["requests"].as_u64().unwrap_or(0) > 100,
        "{summary}"
    );
}

/// One upstream error does not take a replica out of rotation. nginx's default
/// (`max_fails=1 fail_timeout=10s`) would: a request every replica drops (a worker that
/// crashes) marks them all failed, and every request gets 502 for 10 s. bgd's probes are the
/// health checks, so its upstreams say `max_fails=0`.
#[test]
fn one_upstream_error_takes_no_replica_out() {
    let t = TestApp::new("fails");
    t.write(&t.config());
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v1"]).code, 0);
    // nginx tries one replica, then the other (a GET may be retried): both drop it
    let dropped = http_get(t.live_port, "/drop").map(|r| r.status);
    assert_eq!(dropped, Some(502), "{dropped:?}");
    let mut hosts = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let r = http_get(t.live_port, "/").expect("live listener");
        assert_eq!(r.status, 200, "right after one upstream error: {r:?}");
        hosts.insert(r.header("X-App-Host").unwrap_or("?").to_string());
    }
    assert_eq!(hosts.len(), 2, "both replicas still serve: {hosts:?}");
}
