//! The verification the blue-green pattern asks for: every switch watched from the outside
//! through the live listener (checks, failures, the longest gap; a failed check is a failed
//! verification), and the rollback drill.

mod common;

use common::*;

#[test]
fn every_switch_is_watched_from_the_live_listener() {
    let t = TestApp::new("win");
    t.write(&t.config());
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v1"]).code, 0);
    let load = Load::start(t.live_port, &t.dir);
    let d = switch_under_load(&t, &load, &["deploy", "bgd-demo:v2"]);
    load.expect("any");
    let human = t.bgd(&["rollback"]);
    assert_eq!(human.code, 0, "{human:?}");
    load.expect("blue");
    let summary = load.finish();
    assert_eq!(summary["failures"], 0, "{summary}");
    let w = &d["switch_window"];
    assert!(w["checks"].as_u64().unwrap() > 10, "{w}");
    assert_eq!(w["failed"], 0, "{w}");
    assert!(w["longest_gap_ms"].as_u64().unwrap() < 2000, "{w}");
    assert!(
        human.stderr.contains("switch window: ") && human.stderr.contains(" 0 failed"),
        "{human:?}"
    );
    // the history keeps each switch's window
    let entries = t.history();
    let last = entries.last().unwrap();
    assert_eq!(last["command"], "rollback", "{last}");
    assert_eq!(last["switch_window"]["failed"], 0, "{last}");
    assert!(
        last["switch_window"]["checks"].as_u64().unwrap() > 0,
        "{last}"
    );
}

/// A switch whose new config answers live traffic with 500 (a template that breaks the green
/// color on purpose): the gates pass on the preview listener, nginx confirms the color and
/// generation, but the window sees the failures: switched back, exit 4.
#[test]
fn a_switch_that_fails_live_requests_is_switched_back() {
    let t = TestApp::new("wbr");
    let builtin = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/nginx.conf.tera"),
    )
    .unwrap();
    let live = builtin.find("# live listener").unwrap();
    let at =
        live + builtin[live..].find("    location / {\n").unwrap() + "    location / {\n".len();
    // green fails live requests once live: in a config written with green live, or by the
    // rollback flag of the preview config (the deploy's switch raises it)
    let broken = format!(
        "{}{{% if live and live.color == \"green\" %}}        return 500 \"broken on purpose\\n\";\n{{% elif flip %}}        if ($bgd_{{{{ ident }}}}_live_color = green) {{ return 500 \"broken on purpose\\n\"; }}\n{{% endif %}}{}",
        &builtin[..at],
        &builtin[at..]
    );
    std::fs::write(t.dir.join("broken.tera"), broken).unwrap();
    t.write(&t.config().set("lb.template", "broken.tera"));
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v1"]).code, 0);
    let r = t.bgd(&["--json", "deploy", "bgd-demo:v2"]);
    assert_eq!(r.code, 4, "{r:?}");
    let error = r.result()["error"].as_str().unwrap_or("").to_string();
    assert!(
        error.contains("live traffic saw failures during the switch"),
        "{error}"
    );
    assert_eq!(t.live_version(), "v1");
    let entries = t.history();
    let last = entries.last().unwrap();
    assert_eq!(last["outcome"], "rolled-back", "{last}");
    assert!(
        last["switch_window"]["failed"].as_u64().unwrap() > 0,
        "{last}"
    );
}

#[test]
fn the_rollback_drill_flips_back_and_forth_losslessly_within_the_rto() {
    let t = TestApp::new("drl");
    t.write(&t.config());
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v1"]).code, 0);
    // nothing parked yet: nothing to drill
    let r = t.bgd(&["drill"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("nothing to drill"), "{r:?}");
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v2"]).code, 0);

    let load = Load::start_judging(t.live_port, &t.dir, "X-App-Version");
    load.expect("any");
    let r = t.bgd(&["--json", "drill"]);
    load.expect("v2");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let summary = load.finish();
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(summary["failures"], 0, "{summary}");
    let d = r.result();
    assert_eq!(d["back"]["live"]["image"], "bgd-demo:v1", "{d}");
    assert_eq!(d["forward"]["live"]["image"], "bgd-demo:v2", "{d}");
    for flip in ["back", "forward"] {
        assert_eq!(d[flip]["switch_window"]["failed"], 0, "{d}");
        assert!(d[flip]["took_ms"].as_u64().unwrap() < 60_000, "{d}");
    }
    assert_eq!(d["rto_ms"], 60_000);
    assert_eq!(t.live_version(), "v2");
    let entries = t.history();
    let last = entries.last().unwrap();
    assert_eq!(last["command"], "drill", "{last}");
    assert_eq!(last["outcome"], "ok", "{last}");

    // an RTO no flip can meet: the drill fails (exit 4), traffic back where it was
    t.write(&t.config().set("drill.rto", "1ms"));
    let r = t.bgd(&["drill"]);
    assert_eq!(r.code, 4, "{r:?}");
    assert!(r.stderr.contains("over drill.rto"), "{r:?}");
    assert_eq!(t.live_version(), "v2");
    let entries = t.history();
    assert_eq!(entries.last().unwrap()["outcome"], "failed");
}

/// The session continuity gate: log in on the live color, then use that session on the
/// candidate. With sessions in each container's memory it fails (users would be logged out
/// at the switch); with a store both colors share (files on a volume) it passes.
#[test]
fn a_session_made_on_the_live_color_must_be_valid_on_the_candidate() {
    let smoke = serde_json::json!([
        {"name": "login-on-live", "target": "live", "method": "POST", "path": "/login",
         "capture": {"sid": "cookie:sid", "token": "json:/token"}},
        {"name": "session-on-candidate", "path": "/me", "headers": {"Cookie": "sid=${sid}"}},
        {"name": "token-on-candidate", "path": "/me", "headers": {"X-Token": "${token}"}},
    ]);
    // sessions in each container's memory (one replica a color, so that only the colors
    // differ: with more, nginx spreads the requests and even one color loses them)
    let t = TestApp::new("ses");
    t.write(&t.config().set("replicas", 1).set("smoke", smoke.clone()));
    // nothing live yet: the live probe, and those needing its values, are skipped, said so
    let first = t.bgd(&["deploy", "bgd-demo:v1"]);
    assert_eq!(first.code, 0, "{first:?}");
    assert!(
        first.stderr.contains("skipped, as nothing is live yet"),
        "{first:?}"
    );
    let r = t.bgd(&["deploy", "bgd-demo:v2"]);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(
        r.stderr.contains(
            "a session made on the live color (by probe \"login-on-live\") is not valid on the candidate"
        ),
        "{r:?}"
    );
    assert_eq!(t.live_version(), "v1");

    // sessions in a store both colors share (files on a volume): the gate passes
    let u = TestApp::new("ssh");
    let volume = format!("{}-sessions", u.app);
    u.write(
        &u.config()
            .set("smoke", smoke)
            .set("container.env.DEMO_SESSION_DIR", "/sessions")
            .set(
                "container.volumes",
                serde_json::json!([format!("{volume}:/sessions")]),
            ),
    );
    assert_eq!(u.bgd(&["deploy", "bgd-demo:v1"]).code, 0);
    let d = u.bgd(&["deploy", "bgd-demo:v2"]);
    assert_eq!(d.code, 0, "{d:?}");
    assert!(d.stderr.contains("3 smoke probe(s) passed"), "{d:?}");
    assert_eq!(u.live_version(), "v2");
    drop(u);
    let _ = std::process::Command::new("docker")
        .args(["volume", "rm", "-f", &volume])
        .output();
}
