//! How bgd's probes meet real endpoints: bounded reads of a streaming body.

mod common;
use common::*;

/// A health endpoint that streams 10 MiB, 64 KiB every 50 ms (8 s in all), against a 2 s
/// probe timeout: bgd reads the first 64 KiB and closes the connection, so readiness,
/// verification and status all pass; reading the body whole would time out every probe.
#[test]
fn a_streaming_health_endpoint_is_read_up_to_a_cap() {
    let t = TestApp::new("stream");
    t.write(
        &t.config()
            .set("readiness.path", "/stream?bytes=10485760&every_ms=50")
            .set("readiness.timeout", "2s"),
    );
    let d = t.bgd(&["deploy", "bgd-demo:v1"]);
    assert_eq!(d.code, 0, "{d:?}");
    let s = t.bgd(&["status", "--json"]).result();
    for c in s["live"]["containers"].as_array().unwrap() {
        assert_eq!(c["health"], "healthy", "{s}");
    }
}

/// Both logs of the user's nginx (stdout: access, stderr: errors), as one text.
fn nginx_main_logs(t: &TestApp) -> String {
    let out = std::process::Command::new("docker")
        .args(["logs", &t.lb()])
        .output()
        .expect("docker logs");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// An app that listens on 127.0.0.1 inside its container (gunicorn's default) refuses nginx:
/// readiness says so and what to change, not "/health answered 502". bgd's probes on the
/// preview listener, failed ones included, go to their own logs, not the production ones.
#[test]
fn a_replica_that_refuses_connections_is_named_and_probe_traffic_is_logged_apart() {
    let t = TestApp::new("refuse");
    t.write(&t.config().set("readiness.deadline", "3s"));
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v1"]).code, 0);
    let main_before = nginx_main_logs(&t);

    t.write(
        &t.config()
            .set("readiness.deadline", "3s")
            .set("container.env.DEMO_LISTEN_ADDR", "127.0.0.1"),
    );
    let d = t.bgd(&["deploy", "bgd-demo:v2"]);
    assert_eq!(d.code, 3, "{d:?}");
    let green1 = format!("{}-green-1", t.app);
    for want in [
        format!("nginx could not connect to {green1} at "),
        "(connection refused) — is the app listening on 0.0.0.0:8080, not 127.0.0.1".to_string(),
    ] {
        assert!(d.stderr.contains(&want), "lacks {want:?}: {d:?}");
    }
    assert!(!d.stderr.contains("answered 502"), "{d:?}");
    assert_eq!(t.live_version(), "v1");

    // the production logs saw none of it; the preview listener's own logs saw all of it
    let main_after = nginx_main_logs(&t);
    for noise in ["GET /health", "connect() failed", " 502 "] {
        assert_eq!(
            main_after.matches(noise).count(),
            main_before.matches(noise).count(),
            "probe traffic ({noise:?}) reached the production logs:\n{main_after}"
        );
    }
    let logs = format!("/etc/nginx/bgd/logs/{}-preview", t.app);
    let access = docker(&["exec", &t.lb(), "cat", &format!("{logs}.access.log")]);
    assert!(
        access.contains("GET /health") && access.contains(" 502 "),
        "{access}"
    );
    let errors = docker(&["exec", &t.lb(), "cat", &format!("{logs}.error.log")]);
    assert!(errors.contains("Connection refused"), "{errors}");
}
