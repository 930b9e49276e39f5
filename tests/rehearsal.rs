//! Rehearsed migrations (`hooks.migrate.rehearse`): the migration and both versions run on a
//! scratch copy of the data first; a migration that would break the live version is rejected
//! before it touches anything shared, with the live version still serving, the real data
//! unchanged and every scratch container and volume gone.
//!
//! The demo app's "schema" is a number in a file; each version works with schemas up to its
//! own (v1 -> 1), and its stand-in migration writes `DEMO_MIGRATE_SCHEMA` there.

mod common;

use common::*;
use serde_json::{json, Value};

/// What the real (shared) schema file holds, read by a helper container.
fn schema_in(volume: &str, file: &str) -> String {
    docker(&[
        "run",
        "--rm",
        "-v",
        &format!("{volume}:/data"),
        "--entrypoint",
        "cat",
        NGINX_IMAGE,
        &format!("/data/{file}"),
    ])
    .trim()
    .to_string()
}

fn leftovers(t: &TestApp) -> (String, String) {
    (
        docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("name={}-rehearsal", t.app),
        ]),
        docker(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            &format!("name={}-rehearsal", t.app),
        ]),
    )
}

fn last_entry(t: &TestApp) -> Value {
    t.history().last().cloned().unwrap_or(Value::Null)
}

fn migrating(t: &TestApp, volume: &str, schema: &str, rehearse: Value) -> Cfg {
    t.config()
        .set(
            "smoke",
            json!([{"name": "home", "path": "/", "expect": {"status": [200]}}]),
        )
        .set(
            "hooks.migrate",
            json!({"command": ["migrate"], "timeout": "10s", "rehearse": rehearse}),
        )
        .set("container.volumes", json!([format!("{volume}:/data")]))
        .set("container.env.DEMO_SCHEMA_FILE", "/data/schema")
        .set("container.env.DEMO_MIGRATE_SCHEMA", schema)
}

#[test]
fn a_migration_that_breaks_the_live_version_is_rejected_on_a_copied_volume() {
    let t = TestApp::new("rhv");
    let volume = format!("{}-data", t.app);
    let rehearse = json!({"volumes": [volume.clone()], "timeout": "30s"});
    t.write(&migrating(&t, &volume, "1", rehearse.clone()));
    // a first deploy: nothing live, nothing to rehearse against (said so)
    let first = t.bgd(&["deploy", "bgd-demo:v1"]);
    assert_eq!(first.code, 0, "{first:?}");
    assert!(
        first.stderr.contains("skipped: nothing is live yet"),
        "{first:?}"
    );
    assert_eq!(schema_in(&volume, "schema"), "1");

    // schema 2 would break v1, the live version: caught on the copy
    t.write(&migrating(&t, &volume, "2", rehearse.clone()));
    let plan = t.bgd(&["deploy", "--plan", "bgd-demo:v2"]);
    assert!(
        plan.stdout
            .contains("rehearse the migration on a scratch copy"),
        "{plan:?}"
    );
    let r = t.bgd(&["deploy", "bgd-demo:v2"]);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(
        r.stderr
            .contains("the live version (bgd-demo:v1) does not work on the migrated copy"),
        "{r:?}"
    );
    assert!(r.stderr.contains("copied"), "size and time reported: {r:?}");
    // the real data untouched, the live version serving, nothing of the rehearsal left
    assert_eq!(schema_in(&volume, "schema"), "1");
    assert_eq!(t.live_version(), "v1");
    let (containers, volumes) = leftovers(&t);
    assert!(
        containers.trim().is_empty() && volumes.trim().is_empty(),
        "{containers} {volumes}"
    );
    let e = last_entry(&t);
    assert!(
        e["rehearsal"].as_str().unwrap_or("").starts_with("failed:"),
        "{e}"
    );

    // a compatible one passes the rehearsal, then runs for real
    t.write(&migrating(&t, &volume, "1", rehearse));
    let d = t.bgd(&["deploy", "bgd-demo:v2"]);
    assert_eq!(d.code, 0, "{d:?}");
    assert!(d.stderr.contains("rehearsed on a scratch copy"), "{d:?}");
    assert_eq!(t.live_version(), "v2");
    let e = last_entry(&t);
    assert!(
        e["rehearsal"].as_str().unwrap_or("").starts_with("passed"),
        "{e}"
    );
    let (containers, volumes) = leftovers(&t);
    assert!(
        containers.trim().is_empty() && volumes.trim().is_empty(),
        "{containers} {volumes}"
    );
    drop(t);
    let _ = docker(&["volume", "rm", "-f", &volume]);
}

/// A scratch database made by `prepare`, used through `env`, dropped by `cleanup`. The
/// "database" is the schema file on the volume the app mounts at /data; the rehearsal mounts
/// it read-only (nothing in a rehearsal writes shared data), so the scratch copy is made on a
/// second volume, /scratch, which the rehearsal gets a writable scratch copy of.
#[test]
fn a_rehearsal_on_a_scratch_database_made_by_prepare_and_dropped_by_cleanup() {
    let t = TestApp::new("rhd");
    let volume = format!("{}-db", t.app);
    let scratch = format!("{}-scr", t.app);
    let rehearse = json!({
        "volumes": [scratch.clone()],
        "prepare": ["scratch-db", "create"],
        "cleanup": ["scratch-db", "drop"],
        "env": {"DEMO_SCHEMA_FILE": "/scratch/schema", "DEMO_SCRATCH_SOURCE": "/data/schema"},
        "timeout": "20s",
    });
    let config = |schema: &str| {
        migrating(&t, &volume, schema, rehearse.clone()).set(
            "container.volumes",
            json!([format!("{volume}:/data"), format!("{scratch}:/scratch")]),
        )
    };
    t.write(&config("1"));
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v1"]).code, 0);
    t.write(&config("2"));
    let r = t.bgd(&["deploy", "bgd-demo:v2"]);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(
        r.stderr
            .contains("scratch-db: /data/schema copied to /scratch/schema"),
        "{r:?}"
    );
    assert!(
        r.stderr.contains("does not work on the migrated copy"),
        "{r:?}"
    );
    assert!(
        r.stderr.contains("scratch-db: /scratch/schema dropped"),
        "{r:?}"
    );
    assert_eq!(schema_in(&volume, "schema"), "1");
    assert_eq!(t.live_version(), "v1");

    t.write(&config("1"));
    let d = t.bgd(&["deploy", "bgd-demo:v2"]);
    assert_eq!(d.code, 0, "{d:?}");
    assert_eq!(t.live_version(), "v2");
    drop(t);
    let _ = docker(&["volume", "rm", "-f", &volume, &scratch]);
}
