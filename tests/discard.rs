//! `deploy --no-switch` sets the parked release aside instead of removing it; `bgd discard`
//! removes the waiting candidate and gives the parked release back (rollback works again),
//! live traffic untouched; `switch` removes the set-aside release; a failed deploy over a
//! waiting candidate gives it back too.

mod common;

use common::*;

fn preview_version(t: &TestApp) -> String {
    http_get(t.preview_port, "/")
        .and_then(|r| r.header("X-App-Version").map(str::to_string))
        .unwrap_or_else(|| "none".into())
}

fn aside_containers(t: &TestApp) -> Vec<String> {
    let mut all = t.containers("blue");
    all.extend(t.containers("green"));
    all.into_iter().filter(|n| n.ends_with("-parked")).collect()
}

#[test]
fn discard_gives_back_the_parked_release_a_candidate_set_aside() {
    let t = TestApp::new("discard");
    t.write(&t.config());
    for v in ["v1", "v2"] {
        let d = t.bgd(&["deploy", &format!("bgd-demo:{v}")]);
        assert_eq!(d.code, 0, "{d:?}");
    }
    // live v2 (green), parked v1 (blue); the candidate v3 takes blue and sets v1 aside
    let held = t.bgd(&["deploy", "--no-switch", "bgd-demo:v3"]);
    assert_eq!(held.code, 0, "{held:?}");
    assert_eq!(t.live_version(), "v2");
    assert_eq!(preview_version(&t), "v3");
    assert_eq!(aside_containers(&t).len(), 2, "{:?}", t.containers("blue"));
    let st = t.bgd(&["--json", "status"]);
    assert_eq!(st.code, 0, "{st:?}");
    let s = st.result();
    assert_eq!(s["set_aside"]["image"], "bgd-demo:v1", "{s}");
    assert_eq!(s["idle"]["role"], "candidate", "{s}");
    let human = t.bgd(&["status"]);
    assert!(
        human
            .stdout
            .contains("`bgd discard` removes it and parks bgd-demo:v1 again"),
        "{human:?}"
    );
    let rb = t.bgd(&["rollback"]);
    assert_eq!(rb.code, 2, "{rb:?}");
    assert!(rb.stderr.contains("`bgd discard`"), "{rb:?}");
    // a record rebuilt by `repair` still knows the release set aside
    let rp = t.bgd(&["repair"]);
    assert_eq!(rp.code, 0, "{rp:?}");
    let s = t.bgd(&["--json", "status"]).result();
    assert_eq!(s["set_aside"]["image"], "bgd-demo:v1", "{s}");

    // discard under load: live traffic never notices
    let load = Load::start(t.live_port, &t.dir);
    load.expect("green");
    let d = t.bgd(&["discard"]);
    assert_eq!(d.code, 0, "{d:?}");
    assert!(d.stdout.contains("is parked again"), "{d:?}");
    let summary = load.finish();
    assert_eq!(summary["failures"], 0, "{summary:#}");
    assert_eq!(t.live_version(), "v2");
    assert_eq!(preview_version(&t), "v1");
    assert!(aside_containers(&t).is_empty());
    assert_eq!(t.containers("blue").len(), 2);
    let again = t.bgd(&["discard"]);
    assert_eq!(again.code, 2, "{again:?}");
    assert!(again.stderr.contains("nothing to discard"), "{again:?}");
    // rollback works again, to the release given back
    let rb = t.bgd(&["rollback"]);
    assert_eq!(rb.code, 0, "{rb:?}");
    assert_eq!(t.live_version(), "v1");

    // switch promotes the candidate and removes the release it set aside
    let held = t.bgd(&["deploy", "--no-switch", "bgd-demo:v3"]);
    assert_eq!(held.code, 0, "{held:?}");
    assert_eq!(aside_containers(&t).len(), 2);
    let sw = t.bgd(&["switch"]);
    assert_eq!(sw.code, 0, "{sw:?}");
    assert_eq!(t.live_version(), "v3");
    assert!(
        aside_containers(&t).is_empty(),
        "{:?}",
        t.containers("green")
    );
    let s = t.bgd(&["--json", "status"]).result();
    assert!(s["set_aside"].is_null(), "{s}");
    assert_eq!(s["idle"]["image"], "bgd-demo:v1", "{s}");

    // a deploy that fails over a waiting candidate gives the set-aside release back
    let held = t.bgd(&["deploy", "--no-switch", "bgd-demo:v4"]);
    assert_eq!(held.code, 0, "{held:?}");
    let bad = t.bgd(&["deploy", "bgd-demo:unhealthy"]);
    assert_eq!(bad.code, 3, "{bad:?}");
    let s = t.bgd(&["--json", "status"]).result();
    assert_eq!(s["idle"]["image"], "bgd-demo:v1", "{s}");
    assert_eq!(s["idle"]["role"], "parked", "{s}");
    assert!(s["set_aside"].is_null(), "{s}");
    assert!(aside_containers(&t).is_empty());
    let rb = t.bgd(&["rollback"]);
    assert_eq!(rb.code, 0, "{rb:?}");
    assert_eq!(t.live_version(), "v1");

    // with nothing parked, discard just removes the candidate
    let t2 = TestApp::new("discard1");
    t2.write(&t2.config());
    let held = t2.bgd(&["deploy", "--no-switch", "bgd-demo:v1"]);
    assert_eq!(held.code, 0, "{held:?}");
    let d = t2.bgd(&["--json", "discard"]);
    assert_eq!(d.code, 0, "{d:?}");
    assert!(d.result()["parked"].is_null());
    assert!(t2.containers("blue").is_empty() && t2.containers("green").is_empty());
}
