//! What an operator reads, pinned exactly: the human output of `deploy`, `rollback`,
//! `status` and `history` (stdout and stderr), compared with tests/snapshots/output/ after
//! normalising what changes from run to run (times, release ids, the app name, ports, the
//! user and host, nginx's patch version). `BGD_UPDATE_SNAPSHOTS=1` rewrites the files:
//! review the diff.

mod common;
use common::*;
use regex::Regex;
use serde_json::json;

/// The run-to-run parts of `text`, replaced by stable words.
fn normalise(t: &TestApp, text: &str) -> String {
    let text = text
        .replace(&t.app, "APP")
        .replace(&format!(":{}", t.live_port), ":LIVE")
        .replace(&format!(":{}", t.preview_port), ":PREVIEW");
    let rules = [
        // a release id: the UTC time of the deploy
        (r"\b\d{8}-\d{6}\b", "RELEASE"),
        // RFC 3339 times
        (r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\b", "TIME"),
        // how long a step or a command took
        (r"\((\d+ms|\d+\.\d+s)\)$", "(T)"),
        (r"\(\d+ ms\)$", "(T)"),
        (r"\(\d+ rounds\)", "(N rounds)"),
        // what the switch window saw (its failures stay visible)
        (
            r"switch window: \d+ checks, 0 failed, longest gap \d+ ms",
            "switch window: N checks, 0 failed, longest gap N ms",
        ),
        // who ran it
        (r"by [^ ]+@[^ ]+( \([^)]*\))?  ", "by WHO  "),
        (r"nginx \d+\.\d+\.\d+", "nginx X.Y.Z"),
        // a container's host name, as the demo app prints it
        (r"\(host [0-9a-f]{12}\)", "(host ID)"),
    ];
    let mut out = String::new();
    for line in text.lines() {
        let mut line = line.to_string();
        for (pattern, with) in rules {
            line = Regex::new(pattern)
                .unwrap()
                .replace_all(&line, with)
                .into_owned();
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Compares a run's normalised output with tests/snapshots/output/NAME.txt.
fn pin(t: &TestApp, name: &str, r: &Run) {
    let text = format!(
        "$ exit {}\n--- stdout\n{}--- stderr\n{}",
        r.code,
        normalise(t, &r.stdout),
        normalise(t, &r.stderr)
    );
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots/output")
        .join(format!("{name}.txt"));
    if std::env::var_os("BGD_UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &text).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (BGD_UPDATE_SNAPSHOTS=1 writes it)", path.display()));
    if text != expected {
        panic!(
            "{name}: the output changed.\n=== expected\n{expected}\n=== got\n{text}\n=== raw\n{r:?}"
        );
    }
}

#[test]
fn an_operator_reads_exactly_this() {
    let t = TestApp::new("out");
    t.write(
        &t.config()
            .set("smoke", json!([{"name": "home", "path": "/"}]))
            .set("switch.verify", "300ms"),
    );
    pin(&t, "status-fresh", &t.bgd(&["status"]));
    pin(&t, "deploy-first", &t.bgd(&["deploy", "bgd-demo:v1"]));
    pin(&t, "deploy-second", &t.bgd(&["deploy", "bgd-demo:v2"]));
    pin(&t, "status", &t.bgd(&["status"]));
    pin(&t, "rollback", &t.bgd(&["rollback"]));
    // a rejected candidate: which step failed, what was undone, why (once)
    t.write(
        &t.config()
            .set("smoke", json!([{"name": "home", "path": "/"}]))
            .set("switch.verify", "300ms")
            .set("readiness.deadline", "3s")
            .set("readiness.timeout", "2s")
            .set("replicas", 1),
    );
    pin(
        &t,
        "deploy-rejected",
        &t.bgd(&["deploy", "bgd-demo:unhealthy"]),
    );
    pin(&t, "history", &t.bgd(&["history"]));
}
