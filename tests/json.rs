//! `--json` is a contract for scripts (docs/json.md): every line on stdout is one of
//! the events below, the last is the result, and every field is known. The structs reject
//! unknown fields, so a field added or renamed without updating docs/json.md fails here.

mod common;
use common::*;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
#[allow(dead_code)]
enum Line {
    Step(Step),
    Pull(Pull),
    Log(Log),
    Warning(Warning),
    Analysis(Judged),
    Result(serde_json::Value),
}

/// A judged window of the candidate's traffic (the mirror's, a canary step's).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Judged {
    phase: String,
    verdict: String,
    reason: String,
    stable: TrafficSummary,
    candidate: TrafficSummary,
    window_ms: u64,
}

/// One side's traffic as nginx logged it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct TrafficSummary {
    requests: u64,
    errors: u64,
    error_rate: f64,
    p95_ms: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Step {
    step: String,
    status: StepStatus,
    message: String,
    /// only when done
    ms: Option<u64>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
enum StepStatus {
    Started,
    Done,
    Failed,
}

/// A pull's progress (tests/registry.rs makes real ones)
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Pull {
    image: String,
    status: PullStatus,
    layers: u64,
    layers_done: u64,
    bytes: u64,
    total_bytes: u64,
    ms: u64,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
enum PullStatus {
    Progress,
    Done,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Log {
    level: Level,
    message: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Level {
    Debug,
    Info,
    Warn,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Warning {
    message: String,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Color {
    Blue,
    Green,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Release {
    color: Color,
    image: String,
    release: String,
}

/// A result struct: the fields every result line has (`event` is the tag `Line` took off),
/// then the command's own.
macro_rules! result {
    ($name:ident { $($field:ident : $ty:ty),* $(,)? }) => {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct $name {
            command: String,
            ok: bool,
            exit_code: i32,
            $($field: $ty,)*
        }
    };
}

result!(Switched {
    live: Release,
    parked: Option<Release>,
    generation: u64,
    switch_ms: u64,
    reloaded: bool,
    switch_window: SwitchWindow,
    // only with `prune: auto` (tests/prune.rs)
    pruned: Option<Vec<String>>,
    // only when the candidate's traffic was judged (a mirror, canary steps)
    analysis: Option<Vec<Judged>>,
});
result!(CanaryResult {
    canary: Release,
    live: Release,
    share: u8,
    generation: u64,
    switch_window: SwitchWindow,
});

/// `status`'s `canary` while one runs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct CanaryStatus {
    share: u8,
    since: String,
    stable: TrafficSummary,
    canary: TrafficSummary,
}

/// What the live listener saw during a switch.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct SwitchWindow {
    checks: u64,
    failed: u64,
    longest_gap_ms: u64,
    span_ms: u64,
    first_failure: Option<String>,
    capped: Option<bool>,
    failing_before: Option<u64>,
    first_failing_before: Option<String>,
}
result!(CandidateLeft {
    candidate: Release,
    live: Option<Release>,
    preview_url: String,
    generation: u64,
});
result!(Plan {
    image: String,
    target: Color,
    steps: Vec<String>,
    step_names: Vec<String>,
    notes: Vec<String>,
    warnings: Vec<String>,
    create: Vec<PlannedContainer>,
    remove: Vec<String>,
    nginx: PlannedNginx,
});
result!(Status {
    app: String,
    live: Option<LiveColor>,
    idle: Option<IdleColor>,
    set_aside: Option<Release>,
    nginx: NginxStatus,
    problems: Vec<String>,
    warnings: Vec<String>,
    tls: Option<TlsStatus>,
    canary: Option<CanaryStatus>,
});

/// `status`'s `tls` (null here: the app has no lb.tls; tests/tls.rs reads it with one).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct TlsStatus {
    listen: Option<u16>,
    served: Option<Certificate>,
    configured: Option<Certificate>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Certificate {
    subject: String,
    issuer: String,
    names: Vec<String>,
    not_after: String,
    days_left: i64,
    expired: bool,
    sha256: String,
}
result!(History {
    app: String,
    entries: Vec<Entry>,
});
result!(Validate {
    app: String,
    file: String,
});
result!(Render { config: String });
result!(Repaired {
    app: String,
    live: Option<Release>,
    idle: Option<IdleRelease>,
    generation: u64,
    was: Vec<String>,
});
result!(Rerouted {
    app: String,
    live: Release,
    idle: Option<IdleRelease>,
    replicas: Vec<String>,
    generation: u64,
    was: Vec<String>,
});

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct IdleRelease {
    color: Color,
    image: String,
    release: String,
    role: String,
}
result!(LockStatus {
    app: String,
    held: bool,
    holder: Option<Holder>,
});
result!(LockRelease {
    app: String,
    released: Option<Holder>,
});
result!(PrunePlanned {
    app: String,
    plan: bool,
    retain: u32,
    would_remove: Vec<String>,
    kept: Vec<Kept>,
});
result!(Pruned {
    app: String,
    plan: bool,
    retain: u32,
    removed: Vec<String>,
    kept: Vec<Kept>,
});

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Kept {
    image: String,
    why: String,
}
result!(Discarded {
    app: String,
    discarded: Release,
    parked: Option<Release>,
    generation: u64,
});
result!(Init { path: String });
result!(Completions {
    shell: String,
    script: String,
});
result!(Failed { error: String });

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct PlannedContainer {
    name: String,
    image: String,
    command: Option<Vec<String>>,
    env: Vec<String>,
    volumes: Vec<String>,
    network: String,
    labels: BTreeMap<String, String>,
    restart_policy: String,
    stop_timeout_ms: Option<u64>,
    memory_bytes: Option<u64>,
    cpus: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct PlannedNginx {
    container: String,
    diff: String,
    after: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Container {
    name: String,
    state: String,
    health: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct LiveColor {
    color: Color,
    image: String,
    release: String,
    containers: Vec<Container>,
    drift: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct IdleColor {
    color: Color,
    image: String,
    release: String,
    role: String,
    state: String,
    containers: Vec<Container>,
    drift: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct NginxStatus {
    container: String,
    state: Option<String>,
    version: Option<String>,
    routes_to: Option<String>,
    generation: Option<u64>,
    flipped: bool,
    other_apps: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Entry {
    at: String,
    command: String,
    who: String,
    image: Option<String>,
    release: Option<String>,
    from: Option<Color>,
    to: Option<Color>,
    outcome: String,
    exit_code: i32,
    duration_ms: u64,
    message: String,
    run: String,
    switch_window: Option<SwitchWindow>,
    switch_back_window: Option<SwitchWindow>,
    rehearsal: Option<String>,
    analysis: Option<Vec<Judged>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Holder {
    user: String,
    host: String,
    pid: u32,
    ci: Option<String>,
    command: String,
    since: String,
}

/// Parses every line of a `--json` run strictly: events before, the result last, typed `R`.
fn strict<R: serde::de::DeserializeOwned>(r: &Run, command: &str) -> (Vec<Line>, R) {
    let mut lines: Vec<Line> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}\n{r:?}")))
        .collect();
    let Some(Line::Result(last)) = lines.pop() else {
        panic!("the last line is not the result: {r:?}");
    };
    assert!(
        !lines.iter().any(|l| matches!(l, Line::Result(_))),
        "one result line only: {r:?}"
    );
    assert_eq!(last["command"], command, "{last}");
    assert_eq!(last["exit_code"], r.code, "{last}");
    assert_eq!(last["ok"], r.code == 0, "{last}");
    let typed = serde_json::from_value(last.clone())
        .unwrap_or_else(|e| panic!("{command} result {last}: {e}"));
    (lines, typed)
}

#[test]
fn the_structs_are_strict() {
    let ok = r#"{"event":"step","step":"switch","status":"done","message":"m","ms":3}"#;
    assert!(serde_json::from_str::<Line>(ok).is_ok());
    let pull = r#"{"event":"pull","image":"r.example.com/w:1","status":"done","layers":3,"layers_done":3,"bytes":10,"total_bytes":10,"ms":5}"#;
    assert!(serde_json::from_str::<Line>(pull).is_ok());
    let judged = r#"{"event":"analysis","phase":"mirror","verdict":"pass","reason":"pass","stable":{"requests":9,"errors":0,"error_rate":0.0,"p95_ms":2.0},"candidate":{"requests":3,"errors":0,"error_rate":0.0},"window_ms":1000}"#;
    assert!(serde_json::from_str::<Line>(judged).is_ok());
    assert!(serde_json::from_str::<Line>(
        &judged.replace("\"window_ms\"", "\"x\":1,\"window_ms\"")
    )
    .is_err());
    let extra = pull.replace("\"ms\"", "\"password\":\"x\",\"ms\"");
    assert!(serde_json::from_str::<Line>(&extra).is_err());
    for bad in [
        r#"{"event":"step","step":"switch","status":"done","message":"m","ms":3,"extra":1}"#,
        r#"{"event":"step","step":"switch","status":"finished","message":"m"}"#,
        r#"{"event":"warning","message":"m","extra":1}"#,
        r#"{"event":"progress","message":"m"}"#,
    ] {
        assert!(serde_json::from_str::<Line>(bad).is_err(), "{bad}");
    }
    let result =
        serde_json::json!({"command":"render","ok":true,"exit_code":0,"config":"x","extra":1});
    assert!(serde_json::from_value::<Render>(result).is_err());
}

#[test]
fn every_command_speaks_the_documented_json() {
    let t = TestApp::new("json");
    t.write(&t.config().set(
        "smoke",
        serde_json::json!([{"name": "home", "path": "/", "expect": {"status": [200]}}]),
    ));
    let json = |args: &[&str]| {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        t.bgd(&all)
    };

    let _: (_, Validate) = strict(&json(&["validate"]), "validate");
    let (_, s): (_, Status) = strict(&json(&["status"]), "status");
    assert!(s.live.is_none() && s.idle.is_none());
    let (_, p): (_, Plan) = strict(&json(&["deploy", "--plan", "bgd-demo:v1"]), "deploy");
    assert_eq!(p.target, Color::Blue);
    assert_eq!(p.create[0].restart_policy, "unless-stopped");

    let (events, d): (_, Switched) = strict(&json(&["deploy", "bgd-demo:v1"]), "deploy");
    assert_eq!(d.live.image, "bgd-demo:v1");
    assert!(d.parked.is_none());
    let done: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Line::Step(s) if s.status == StepStatus::Done => Some(s.step.as_str()),
            _ => None,
        })
        .collect();
    for step in [
        "prepare",
        "start",
        "preview",
        "readiness",
        "smoke",
        "drift",
        "switch",
        "verify",
    ] {
        assert!(done.contains(&step), "{step} done: {done:?}");
    }
    assert!(events.iter().all(|e| match e {
        Line::Step(s) => (s.status == StepStatus::Done) == s.ms.is_some(),
        _ => true,
    }));

    let (_, c): (_, CandidateLeft) =
        strict(&json(&["deploy", "--no-switch", "bgd-demo:v2"]), "deploy");
    assert_eq!(c.candidate.color, Color::Green);
    let (_, s): (_, Status) = strict(&json(&["status"]), "status");
    assert_eq!(s.idle.map(|i| i.role), Some("candidate".to_string()));
    let (_, sw): (_, Switched) = strict(&json(&["switch"]), "switch");
    assert_eq!(sw.live.image, "bgd-demo:v2");
    let (_, rb): (_, Switched) = strict(&json(&["rollback"]), "rollback");
    assert_eq!(rb.live.image, "bgd-demo:v1");
    // each switch was watched from outside: checks made, none failed
    for w in [&d.switch_window, &sw.switch_window, &rb.switch_window] {
        assert!(w.checks > 0 && w.failed == 0, "{w:?}");
    }
    // a candidate sets the parked release aside; discard gives it back
    let (_, c): (_, CandidateLeft) =
        strict(&json(&["deploy", "--no-switch", "bgd-demo:v3"]), "deploy");
    assert_eq!(c.candidate.color, Color::Green);
    let (_, s): (_, Status) = strict(&json(&["status"]), "status");
    assert_eq!(
        s.set_aside.map(|r| r.image),
        Some("bgd-demo:v2".to_string())
    );
    let (_, d): (_, Discarded) = strict(&json(&["discard"]), "discard");
    assert_eq!(d.discarded.image, "bgd-demo:v3");
    assert_eq!(d.parked.map(|p| p.image), Some("bgd-demo:v2".to_string()));
    let (_, f): (_, Failed) = strict(&json(&["discard"]), "discard");
    assert!(f.error.contains("nothing to discard"), "{f:?}");
    let (_, s): (_, Status) = strict(&json(&["status"]), "status");
    assert_eq!(s.nginx.routes_to.as_deref(), Some("blue"));
    assert_eq!(s.live.map(|l| l.containers.len()), Some(2));
    let (_, rp): (_, Repaired) = strict(&json(&["repair"]), "repair");
    assert!(rp.was.is_empty(), "{rp:?}");
    assert_eq!(rp.idle.map(|i| i.role), Some("parked".to_string()));
    let (events, rr): (_, Rerouted) = strict(&json(&["reroute"]), "reroute");
    assert_eq!((rr.live.color, rr.replicas.len()), (Color::Blue, 2));
    assert!(events
        .iter()
        .any(|e| matches!(e, Line::Step(s) if s.step == "reroute")));
    let (_, h): (_, History) = strict(&json(&["history"]), "history");
    assert_eq!(h.entries.len(), 8);
    // three images, all within `retain`: nothing goes (and these images are shared)
    let (_, pp): (_, PrunePlanned) = strict(&json(&["prune", "--plan"]), "prune");
    assert!(
        pp.plan && pp.would_remove.is_empty() && pp.kept.len() == 3,
        "{pp:?}"
    );
    let (_, pr): (_, Pruned) = strict(&json(&["prune"]), "prune");
    assert!(!pr.plan && pr.removed.is_empty(), "{pr:?}");
    let (_, r): (_, Render) = strict(&json(&["render"]), "render");
    assert!(r.config.starts_with("# bgd-state: "));
    let (_, l): (_, LockStatus) = strict(&json(&["lock", "status"]), "lock");
    assert!(!l.held && l.holder.is_none());
    let (_, l): (_, LockRelease) = strict(&json(&["lock", "release"]), "lock");
    assert!(l.released.is_none());
    let (_, c): (_, Completions) = strict(&json(&["completions", "bash"]), "completions");
    assert!(c.script.contains("_bgd"));

    // failures: the same result line, ok false, the error, and the documented code
    let (_, f): (_, Failed) = strict(&json(&["deploy", "bgd-demo:not-here"]), "deploy");
    assert_eq!(f.exit_code, 6);
    assert!(f.error.contains("bgd-demo:not-here"));
    let (_, f): (_, Failed) = strict(&json(&["init"]), "init");
    assert_eq!(f.exit_code, 2, "bgd.yaml exists");

    let dir = t.dir.join("fresh");
    std::fs::create_dir_all(&dir).unwrap();
    let (_, i): (_, Init) = strict(&bgd_in(&dir, &["--json", "init"]), "init");
    assert_eq!(i.path, "bgd.yaml");

    // a canary (after a mirror that sees too little traffic to judge), its share changed,
    // rolled back to 0%, and promoted
    t.write(
        &t.config()
            .set("warmup.mirror", serde_json::json!({"for": "1s"})),
    );
    let (events, c): (_, CanaryResult) = strict(
        &json(&["deploy", "--canary", "20", "bgd-demo:v3"]),
        "deploy",
    );
    assert_eq!(
        (c.canary.color, c.live.color, c.share),
        (Color::Green, Color::Blue, 20)
    );
    assert!(events.iter().any(
        |e| matches!(e, Line::Analysis(j) if j.phase == "mirror" && j.verdict == "inconclusive")
    ));
    let (_, s): (_, Status) = strict(&json(&["status"]), "status");
    assert_eq!(s.canary.map(|c| c.share), Some(20));
    let (_, c): (_, CanaryResult) = strict(&json(&["canary", "40"]), "canary");
    assert_eq!(c.share, 40);
    let (_, c): (_, CanaryResult) = strict(&json(&["rollback"]), "rollback");
    assert_eq!(c.share, 0);
    let (_, c): (_, CanaryResult) = strict(&json(&["canary", "10"]), "canary");
    assert_eq!(c.share, 10);
    let (_, p): (_, Switched) = strict(&json(&["promote"]), "promote");
    assert_eq!(p.live.image, "bgd-demo:v3");
    let (_, h): (_, History) = strict(&json(&["history"]), "history");
    assert!(h.entries.iter().any(|e| e.analysis.is_some()));
}
