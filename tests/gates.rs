//! Release gates: the migration hook and the old-version compatibility check, drift,
//! `deploy --no-switch` and `switch`.

mod common;
use common::*;
use serde_json::json;

/// The demo app's shared "schema" lives on a volume both colors and the migration mount;
/// `migrate_env` steers the stand-in migration (`DEMO_MIGRATE_*`).
fn config_with_migration(t: &TestApp, migrate_env: (&str, &str)) -> Cfg {
    t.config()
        .set(
            "smoke",
            json!([{"name": "home", "path": "/", "expect": {"status": [200]}}]),
        )
        .set(
            "hooks.migrate",
            json!({"command": ["migrate"], "timeout": "2s"}),
        )
        .set(
            "container.volumes",
            json!([format!("{}-data:/data", t.app)]),
        )
        .set("container.env.DEMO_SCHEMA_FILE", "/data/schema")
        .set(&format!("container.env.{}", migrate_env.0), migrate_env.1)
}

#[test]
fn compatible_migration_passes_and_breaking_one_is_caught() {
    let t = TestApp::new("migrate");
    t.write(&config_with_migration(&t, ("DEMO_MIGRATE_SCHEMA", "1")));
    let v1 = t.bgd(&["deploy", "bgd-demo:v1"]);
    assert_eq!(v1.code, 0, "{v1:?}");
    assert!(
        v1.stderr.contains("migrate | migrate: schema is now 1"),
        "streams its output: {v1:?}"
    );

    // schema 1 keeps v1 working: the deploy completes
    let v2 = t.bgd(&["deploy", "bgd-demo:v2", "--json"]);
    assert_eq!(v2.code, 0, "{v2:?}");
    let lines = v2.json_lines();
    assert!(
        lines.iter().any(|l| l["message"]
            .as_str()
            .is_some_and(|m| m.contains("migrate | migrate: done"))),
        "{v2:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["step"] == "compatibility" && l["status"] == "done"),
        "{v2:?}"
    );
    assert_eq!(t.live_version(), "v2");
    assert!(
        docker(&["ps", "-aq", "--filter", &format!("name={}-migrate", t.app)])
            .trim()
            .is_empty(),
        "migration container removed"
    );

    // back on v1 for the breaking case; schema 2 breaks v1 (it understands up to 1)
    assert_eq!(t.bgd(&["rollback"]).code, 0);
    t.write(&config_with_migration(&t, ("DEMO_MIGRATE_SCHEMA", "2")));
    let v3 = t.bgd(&["deploy", "bgd-demo:v3"]);
    assert_eq!(v3.code, 3, "{v3:?}");
    assert!(v3.stderr.contains("not backward-compatible"), "{v3:?}");
    assert!(v3.stderr.contains("expand"), "explains what to do: {v3:?}");
    let reply = t.live().unwrap();
    assert_eq!(
        reply.header("X-Bgd-Color"),
        Some("blue"),
        "traffic never switched to the candidate"
    );
    assert!(
        t.containers("green").is_empty()
            || docker(&[
                "inspect",
                "-f",
                "{{.Config.Image}}",
                &format!("{}-green-1", t.app)
            ])
            .trim()
                != "bgd-demo:v3"
    );
}

#[test]
fn failing_or_slow_migration_rejects_the_candidate() {
    let t = TestApp::new("migfail");
    t.write(&config_with_migration(&t, ("DEMO_MIGRATE_SCHEMA", "1")));
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v1"]).code, 0);

    t.write(&config_with_migration(&t, ("DEMO_MIGRATE_EXIT", "3")));
    let r = t.bgd(&["deploy", "bgd-demo:v2"]);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(
        r.stderr.contains("failed with exit code 3") && r.stderr.contains("migrate: failed"),
        "{r:?}"
    );
    assert!(t.containers("green").is_empty());
    assert_eq!(t.live_version(), "v1");

    t.write(&config_with_migration(&t, ("DEMO_MIGRATE_MS", "10000")));
    let r = t.bgd(&["deploy", "bgd-demo:v2"]);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(r.stderr.contains("did not finish within 2.0s"), "{r:?}");
    assert!(t.containers("green").is_empty());
    assert_eq!(t.live_version(), "v1");
    assert!(
        docker(&["ps", "-aq", "--filter", &format!("name={}-migrate", t.app)])
            .trim()
            .is_empty()
    );
}

#[test]
fn no_switch_leaves_a_candidate_that_switch_promotes() {
    let t = TestApp::new("noswitch");
    t.write(&t.config().set(
        "smoke",
        json!([{"name": "home", "path": "/", "expect": {"status": [200]}}]),
    ));
    // nothing to switch to yet
    let s = t.bgd(&["switch"]);
    assert_eq!(s.code, 2, "{s:?}");
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v1"]).code, 0);
    let s = t.bgd(&["switch"]);
    assert_eq!(s.code, 2, "{s:?}");
    assert!(
        s.stderr.contains("bgd deploy --no-switch"),
        "says how to get one: {s:?}"
    );

    let d = t.bgd(&["--json", "deploy", "--no-switch", "bgd-demo:v2"]);
    assert_eq!(d.code, 0, "{d:?}");
    let r = d.result();
    assert_eq!(r["candidate"]["color"], "green", "{r}");
    assert_eq!(r["live"]["color"], "blue", "{r}");
    // live traffic untouched, the preview listener serves the candidate
    assert_eq!(t.live_version(), "v1");
    let preview = http_get(t.preview_port, "/").expect("preview answers");
    assert_eq!(preview.status, 200);
    assert_eq!(preview.header("X-App-Version"), Some("v2"));
    assert_eq!(preview.header("X-Bgd-Color"), Some("green"));
    let st = t.bgd(&["status", "--json"]).result();
    assert_eq!(st["live"]["image"], "bgd-demo:v1", "{st}");
    assert_eq!(st["idle"]["role"], "candidate", "{st}");
    assert_eq!(st["idle"]["image"], "bgd-demo:v2", "{st}");
    let human = t.bgd(&["status"]);
    assert!(human.stdout.contains("candidate green"), "{human:?}");
    assert!(
        human
            .stdout
            .contains("`bgd switch` promotes the candidate green"),
        "says what to do next: {human:?}"
    );

    // a candidate is not a rollback target
    let rb = t.bgd(&["rollback"]);
    assert_eq!(rb.code, 2, "{rb:?}");
    assert!(rb.stderr.contains("bgd switch"), "{rb:?}");
    assert_eq!(t.live_version(), "v1");

    let s = t.bgd(&["--json", "switch"]);
    assert_eq!(s.code, 0, "{s:?}");
    let r = s.result();
    assert_eq!(r["live"]["image"], "bgd-demo:v2", "{r}");
    assert_eq!(r["parked"]["image"], "bgd-demo:v1", "{r}");
    let lines = s.json_lines();
    for step in ["readiness", "smoke", "drift", "switch", "verify"] {
        assert!(
            lines
                .iter()
                .any(|l| l["step"] == step && l["status"] == "done"),
            "switch runs {step}: {s:?}"
        );
    }
    assert_eq!(t.live_version(), "v2");
    let st = t.bgd(&["status", "--json"]).result();
    assert_eq!(st["idle"]["role"], "parked", "{st}");
    assert_eq!(st["idle"]["image"], "bgd-demo:v1", "{st}");
    let human = t.bgd(&["status"]);
    assert!(
        human
            .stdout
            .contains("`bgd rollback` sends traffic back to blue (bgd-demo:v1)"),
        "{human:?}"
    );
    let h = t.bgd(&["history"]);
    assert!(
        h.stdout.contains("deploy --no-switch") && h.stdout.contains("switch "),
        "{h:?}"
    );

    // nothing is waiting any more; rollback goes back to v1 as usual
    assert_eq!(t.bgd(&["switch"]).code, 2);
    assert_eq!(t.bgd(&["rollback"]).code, 0);
    assert_eq!(t.live_version(), "v1");
}

#[test]
fn a_candidate_changed_by_hand_or_by_config_does_not_take_traffic() {
    let t = TestApp::new("drift");
    t.write(&t.config());
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v1"]).code, 0);
    assert_eq!(t.bgd(&["deploy", "--no-switch", "bgd-demo:v2"]).code, 0);
    let green1 = format!("{}-green-1", t.app);

    // changed by hand while it waited
    docker(&["update", "--restart", "no", &green1]);
    let s = t.bgd(&["switch"]);
    assert_eq!(s.code, 3, "{s:?}");
    assert!(
        s.stderr.contains(&format!(
            "restart policy no (bgd.yaml: unless-stopped) [{green1}]"
        )),
        "{s:?}"
    );
    assert_eq!(t.live_version(), "v1", "traffic never moved");
    docker(&["update", "--restart", "unless-stopped", &green1]);

    // bgd.yaml changed since it started: it is not what the config now describes
    t.write(&t.config().set("container.env.FEATURE_X", "on"));
    let s = t.bgd(&["switch"]);
    assert_eq!(s.code, 3, "{s:?}");
    assert!(
        s.stderr
            .contains("env FEATURE_X: in bgd.yaml, not in the container"),
        "{s:?}"
    );
    assert_eq!(t.live_version(), "v1");
    let st = t.bgd(&["status", "--json"]).result();
    assert_eq!(
        st["idle"]["role"], "candidate",
        "a rejected switch keeps the candidate: {st}"
    );

    // a fresh deploy applies the config and goes through
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v2"]).code, 0);
    assert_eq!(t.live_version(), "v2");
}

#[test]
fn config_changes_and_hand_changes_show_as_drift_in_status() {
    let t = TestApp::new("stdrift");
    t.write(&t.config());
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v1"]).code, 0);
    let st = t.bgd(&["status", "--json"]).result();
    assert_eq!(st["live"]["drift"], serde_json::json!([]), "{st}");

    let secret = "drift-secret-4242";
    t.write(
        &t.config()
            .set("container.memory", "256m")
            .set("container.env.DB_PASSWORD", secret),
    );
    let other = format!("{}-other", t.app);
    docker(&["network", "create", &other]);
    let blue2 = format!("{}-blue-2", t.app);
    docker(&["network", "connect", &other, &blue2]);

    let s = t.bgd(&["status", "--json"]);
    let st = s.result();
    let drift: Vec<&str> = st["live"]["drift"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d.as_str())
        .collect();
    let blue1 = format!("{}-blue-1", t.app);
    assert!(
        drift.contains(
            &format!("env DB_PASSWORD: in bgd.yaml, not in the container [{blue1}, {blue2}]")
                .as_str()
        ),
        "{drift:?}"
    );
    assert!(
        drift.contains(&format!("memory limit none (bgd.yaml: 256m) [{blue1}, {blue2}]").as_str()),
        "{drift:?}"
    );
    assert!(
        drift.contains(&format!("network {other}: connected, not in bgd.yaml [{blue2}]").as_str()),
        "{drift:?}"
    );
    let human = t.bgd(&["status"]);
    assert!(human.stdout.contains("drift from bgd.yaml"), "{human:?}");
    assert!(!s.stdout.contains(secret) && !human.stdout.contains(secret));

    docker(&["network", "disconnect", &other, &blue2]);
    docker(&["network", "rm", &other]);
    // the next deploy applies bgd.yaml: no drift left on the live color
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v2"]).code, 0);
    let st = t.bgd(&["status", "--json"]).result();
    assert_eq!(st["live"]["drift"], serde_json::json!([]), "{st}");
    let mem = docker(&[
        "inspect",
        "-f",
        "{{.HostConfig.Memory}}",
        &format!("{}-green-1", t.app),
    ]);
    assert_eq!(
        mem.trim(),
        (256u64 << 20).to_string(),
        "container.memory applied"
    );
}
