//! `warmup.requests`: sent to every candidate replica through the preview listener after
//! readiness; failures reported, gating only with `warmup.must_pass`.

mod common;

use common::*;
use serde_json::json;

#[test]
fn the_candidate_is_warmed_up_and_a_failed_warm_up_gates_only_when_asked() {
    let t = TestApp::new("wrm");
    t.write(&t.config());
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v1"]).code, 0);

    let warm = t.config().set(
        "warmup.requests",
        json!([{"path": "/", "count": 20}, {"path": "/version", "method": "GET", "count": 5}]),
    );
    t.write(&warm);
    let plan = t.bgd(&["deploy", "--plan", "bgd-demo:v2"]);
    assert!(
        plan.stdout.contains("warm up every green replica"),
        "{plan:?}"
    );
    let d = t.bgd(&["--json", "deploy", "bgd-demo:v2"]);
    assert_eq!(d.code, 0, "{d:?}");
    let done = d
        .json_lines()
        .into_iter()
        .find(|l| l["step"] == "warmup" && l["status"] == "done")
        .unwrap_or_else(|| panic!("no warmup step: {d:?}"));
    let message = done["message"].as_str().unwrap_or("");
    assert!(
        message.starts_with("50 warm-up request(s) to 2 replica(s), 0 failed"),
        "{message}"
    );

    // failures are reported, not gating
    let failing = t
        .config()
        .set("warmup.requests", json!([{"path": "/nope", "count": 3}]));
    t.write(&failing);
    let d = t.bgd(&["deploy", "bgd-demo:v3"]);
    assert_eq!(d.code, 0, "{d:?}");
    assert!(
        d.stderr.contains("warm-up: 6 of 6 request(s) failed"),
        "{d:?}"
    );
    assert!(d.stderr.contains("status 404"), "{d:?}");
    // ... unless they must pass
    t.write(&failing.set("warmup.must_pass", true));
    let r = t.bgd(&["deploy", "bgd-demo:v4"]);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(
        r.stderr.contains("the warm-up failed (warmup.must_pass)"),
        "{r:?}"
    );
    assert_eq!(t.live_version(), "v3");
}
