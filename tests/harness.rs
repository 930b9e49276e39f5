//! The test harness itself: configs edited as data, ports claimed without a race, output
//! normalised for exact comparison.

mod common;
use common::*;
use serde_json::json;

#[test]
fn cfg_sets_and_unsets_by_path() {
    let c = Cfg::new(json!({"app": "web", "container": {"port": 8080}}))
        .set("container.env.A", "1")
        .set_at(&["container", "labels", "bgd.color"], "green")
        .set("replicas", 2)
        .unset("app");
    assert_eq!(c.get("container.env.A"), "1");
    assert_eq!(c.0["container"]["labels"]["bgd.color"], "green");
    assert!(c.yaml().contains("replicas: 2"));
    assert!(c.0.get("app").is_none());
}

#[test]
#[should_panic(expected = "not in the config")]
fn cfg_refuses_to_unset_what_is_not_there() {
    let _ = Cfg::new(json!({"app": "web"})).unset("readiness.deadline");
}

#[test]
fn port_claims_are_exclusive() {
    let a = claim_port();
    let b = claim_port();
    assert_ne!(a.port, b.port);
    let claim = std::env::temp_dir()
        .join("bgd-test-ports")
        .join(a.port.to_string());
    let again = std::fs::File::create(claim).unwrap();
    assert!(again.try_lock().is_err(), "held while the claim lives");
    drop(a);
    assert!(again.try_lock().is_ok(), "free once the claim is dropped");
}
