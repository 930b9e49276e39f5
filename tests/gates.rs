//! Release gates: the migration hook and the old-version compatibility check.

mod common;
use common::*;

/// The demo app's shared "schema" lives on a volume both colors and the migration mount.
fn config_with_migration(t: &TestApp, migrate_env: &str) -> String {
    t.config_text(
        "smoke:\n  - name: home\n    path: /\n    expect:\n      status: [200]\nhooks:\n  migrate:\n    command: [\"migrate\"]\n    timeout: 2s\n",
    )
    .replace(
        "  stop_timeout: 5s\n",
        &format!(
            "  stop_timeout: 5s\n  volumes: [\"{}-data:/data\"]\n  env: {{ DEMO_SCHEMA_FILE: /data/schema, {migrate_env} }}\n",
            t.app
        ),
    )
}

struct Volume(String);
impl Drop for Volume {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["volume", "rm", "-f", &self.0])
            .output();
    }
}

#[test]
fn compatible_migration_passes_and_breaking_one_is_caught() {
    let t = TestApp::new("migrate");
    let _volume = Volume(format!("{}-data", t.app));
    t.write_config(&config_with_migration(&t, "DEMO_MIGRATE_SCHEMA: \"1\""));
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
    t.write_config(&config_with_migration(&t, "DEMO_MIGRATE_SCHEMA: \"2\""));
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
    let _volume = Volume(format!("{}-data", t.app));
    t.write_config(&config_with_migration(&t, "DEMO_MIGRATE_SCHEMA: \"1\""));
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v1"]).code, 0);

    t.write_config(&config_with_migration(&t, "DEMO_MIGRATE_EXIT: \"3\""));
    let r = t.bgd(&["deploy", "bgd-demo:v2"]);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(
        r.stderr.contains("failed with exit code 3") && r.stderr.contains("migrate: failed"),
        "{r:?}"
    );
    assert!(t.containers("green").is_empty());
    assert_eq!(t.live_version(), "v1");

    t.write_config(&config_with_migration(&t, "DEMO_MIGRATE_MS: \"10000\""));
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
