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
