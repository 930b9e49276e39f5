//! The record cannot lie: a record bgd cannot read, from a newer bgd, missing, or that
//! disagrees with nginx is never acted on (exit 7, what was found, `bgd repair`); every write
//! is atomic and made with the change it records; the history keeps what it cannot read.

mod common;
use common::*;
use serde_json::Value;

fn file(t: &TestApp, name: &str) -> String {
    format!("/etc/nginx/bgd/{}/{name}", t.app)
}

fn state(t: &TestApp) -> Value {
    let text = t.lb_sh(&format!("cat {}", file(t, "state.json")));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("state.json {text:?}: {e}"))
}

/// v1 parked in blue, v2 live in green.
fn two_releases(t: &TestApp) {
    t.write(&t.config());
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v1"]).code, 0);
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v2"]).code, 0);
}

/// A deploy on a record it cannot trust stops with exit 7 before touching anything, says
/// what it found, and `bgd repair` makes the record say what nginx does.
fn refused_then_repaired(t: &TestApp, spoil: &str, says: &str) {
    refused_then_repaired_by(t, spoil, says, &["deploy", "bgd-demo:v3"]);
}

/// The same, refused by `refused` (a command bgd runs).
fn refused_then_repaired_by(t: &TestApp, spoil: &str, says: &str, refused: &[&str]) {
    t.lb_sh(spoil);
    let ours = || {
        docker(&[
            "ps",
            "-a",
            "--filter",
            &format!("name=^{}-", t.app),
            "--format",
            "{{.Names}} {{.Image}} {{.State}}",
        ])
    };
    let before = ours();
    let record_before = t.lb_sh(&format!("cat {} || true", file(t, "state.json")));
    let d = t.bgd(refused);
    assert_eq!(d.code, 7, "{spoil}: {d:?}");
    assert_eq!(
        t.lb_sh(&format!("cat {} || true", file(t, "state.json"))),
        record_before,
        "the record was not replaced: {d:?}"
    );
    assert!(d.stderr.contains(says), "{spoil}: {d:?}");
    assert!(
        d.stderr.contains("nginx routes live traffic to green") && d.stderr.contains("bgd repair"),
        "says what it found and what to do: {d:?}"
    );
    assert_eq!(ours(), before, "nothing was touched");
    assert_eq!(t.live_version(), "v2");
    let st = t.bgd(&["status", "--json"]);
    assert_eq!(st.code, 7, "status says it too: {st:?}");
    assert!(st.result()["problems"].to_string().contains(says), "{st:?}");

    let r = t.bgd(&["--json", "repair"]);
    assert_eq!(r.code, 0, "{r:?}");
    let rr = r.result();
    assert_eq!(rr["live"]["image"], "bgd-demo:v2", "{rr}");
    assert_eq!(rr["idle"]["image"], "bgd-demo:v1", "{rr}");
    assert_eq!(rr["idle"]["role"], "parked", "{rr}");
    assert!(!rr["was"].as_array().unwrap().is_empty(), "{rr}");
    assert_eq!(t.live_version(), "v2", "repair changes no routing");
    assert_eq!(state(t)["live"]["release"], rr["live"]["release"]);
    let st = t.bgd(&["status", "--json"]);
    assert_eq!(st.code, 0, "{st:?}");
}

#[test]
fn a_record_it_cannot_trust_is_never_acted_on() {
    let t = TestApp::new("record");
    two_releases(&t);
    let state_json = file(&t, "state.json");
    refused_then_repaired(
        &t,
        &format!("head -c 25 {state_json} > /tmp/s && cat /tmp/s > {state_json}"),
        "cannot be read",
    );
    refused_then_repaired(
        &t,
        &format!("echo garbage > {state_json}"),
        "cannot be read",
    );
    refused_then_repaired(
        &t,
        &format!("sed -i 's/\"schema\":[0-9]*/\"schema\":99/' {state_json}"),
        "written by a newer bgd",
    );
    // the fast rollback, which does not read the record, does not replace it either; nor
    // does a reroute
    refused_then_repaired_by(
        &t,
        &format!("sed -i 's/\"schema\":[0-9]*/\"schema\":99/' {state_json}"),
        "written by a newer bgd",
        &["rollback"],
    );
    refused_then_repaired_by(
        &t,
        &format!("echo garbage > {state_json}"),
        "cannot be read",
        &["rollback"],
    );
    refused_then_repaired_by(
        &t,
        &format!("head -c 25 {state_json} > /tmp/s && cat /tmp/s > {state_json}"),
        "cannot be read",
        &["reroute"],
    );
    refused_then_repaired(&t, &format!("rm {state_json}"), "record is missing");
    // a record that names the wrong color live
    refused_then_repaired(
        &t,
        &format!(
            "sed -i 's/\"live\":{{\"color\":\"green\"/\"live\":{{\"color\":\"blue\"/' {state_json}"
        ),
        "says blue is live",
    );
    // and after all that, the deploy goes through: v3 replaces the parked v1
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v3"]).code, 0);
    assert_eq!(t.live_version(), "v3");
    let s = t.bgd(&["status", "--json"]).result();
    assert_eq!(s["idle"]["image"], "bgd-demo:v2", "{s}");
}

/// Lines bgd cannot read (a torn write, another version's) stay in the history; a switch
/// back after a failed verification is recorded by the switch back's own exec, so a bgd
/// killed right after it leaves a record that says so.
#[test]
fn the_history_keeps_what_it_cannot_read_and_a_switch_back_is_recorded_with_it() {
    let t = TestApp::new("hist");
    let smoke = serde_json::json!([{"name": "home", "path": "/"}]);
    t.write(&t.config().set("smoke", smoke.clone()));
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v1"]).code, 0);
    let history = file(&t, "history.jsonl");
    // and a torn one with a NUL byte (GNU grep would read the file as binary)
    t.lb_sh(&format!(
        "echo 'a line of another bgd' >> {history} && printf 'torn\\000line\\n' >> {history}"
    ));
    // v2 passes every gate, then fails during verification: the switch back is recorded
    t.write(
        &t.config()
            .set("smoke", smoke)
            .set("container.env.DEMO_FAIL_AFTER_MS", "4000")
            .set("switch.verify", "20s"),
    );
    let mut run = t.watch(&["deploy", "bgd-demo:v2"]);
    run.wait_step("switch-back", "done");
    run.signal("-KILL");
    run.finish();
    let s = state(&t);
    assert_eq!(s["live"]["color"], "blue", "{s}");
    assert_eq!(s["idle"]["color"], "green", "{s}");
    assert_eq!(s["idle"]["role"], "candidate", "{s}");
    let lines = t.lb_sh(&format!("cat {history}"));
    assert!(lines.contains("a line of another bgd"), "{lines}");
    assert!(lines.contains("torn\0line"), "{lines:?}");
    let entries: Vec<Value> = lines
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let last = entries.last().unwrap();
    assert_eq!(last["outcome"], "rolled-back", "{lines}");
    let runs = entries.iter().filter(|e| e["run"] == last["run"]).count();
    assert_eq!(
        runs, 1,
        "the switch and its switch back are one entry: {lines}"
    );
    assert_eq!(t.live_version(), "v1");
    // the next deploy reads that record as it is
    t.write(&t.config());
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v3"]).code, 0);
    assert!(t
        .lb_sh(&format!("cat {history}"))
        .contains("a line of another bgd"));
}

/// A switch nginx applied but whose record could not be written is a failure (exit 7), never
/// a success: the record would say the old color is live.
#[test]
fn a_switch_it_could_not_record_is_a_failure() {
    let t = TestApp::new("unrec");
    t.write(&t.config());
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v1"]).code, 0);
    // the temporary file the state is written through cannot be made
    let tmp = format!("{}.bgd-tmp", file(&t, "state.json"));
    t.lb_sh(&format!("mkdir {tmp}"));
    let d = t.bgd(&["deploy", "bgd-demo:v2"]);
    assert_eq!(d.code, 7, "{d:?}");
    assert!(
        d.stderr.contains("nginx routes live traffic to green") && d.stderr.contains("bgd repair"),
        "{d:?}"
    );
    assert_eq!(t.live_version(), "v2", "the switch itself happened");
    t.lb_sh(&format!("rmdir {tmp}"));
    assert_eq!(t.bgd(&["repair"]).code, 0);
    assert_eq!(state(&t)["live"]["image"], "bgd-demo:v2");
    assert_eq!(t.bgd(&["status"]).code, 0);
}

/// A release parked stopped (`park.mode: stopped`) is not on the preview listener, so nginx's
/// config does not name it: `repair` finds it by its labels, and rollback still returns to it.
#[test]
fn repair_keeps_a_release_parked_stopped() {
    let t = TestApp::new("rstop");
    t.write(&t.config().set("park.mode", "stopped"));
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v1"]).code, 0);
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v2"]).code, 0);
    // a config rendered after the parking (here a reroute) has nothing on the preview listener
    assert_eq!(t.bgd(&["reroute"]).code, 0);
    assert!(
        t.active_config().contains("\"preview\":null"),
        "{}",
        t.active_config()
    );
    t.lb_sh(&format!("echo garbage > {}", file(&t, "state.json")));
    let r = t.bgd(&["--json", "repair"]);
    assert_eq!(r.code, 0, "{r:?}");
    let rr = r.result();
    assert_eq!(rr["live"]["image"], "bgd-demo:v2", "{rr}");
    assert_eq!(rr["idle"]["image"], "bgd-demo:v1", "{rr}");
    assert_eq!(rr["idle"]["role"], "parked", "{rr}");
    let rb = t.bgd(&["rollback"]);
    assert_eq!(rb.code, 0, "{rb:?}");
    assert_eq!(t.live_version(), "v1");
}
