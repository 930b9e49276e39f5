//! The engine's own contracts: `deploy --plan` touches nothing and shows the steps, specs
//! and config diff; a deploy runs exactly the steps the plan lists; verification judges
//! every answer by the color that served it.

mod common;
use common::*;
use serde_json::{json, Value};

/// (step, text) of every step a `--json` run reported starting, in order; release ids masked
/// (the plan and the deploy each make their own).
fn started(r: &Run) -> Vec<(String, String)> {
    r.json_lines()
        .iter()
        .filter(|e| e["event"] == "step" && e["status"] == "started")
        .map(|e| (e["step"].as_str().unwrap().to_string(), mask(&e["message"])))
        .collect()
}

/// (step, text) of the steps `deploy --plan --json` printed.
fn planned(t: &TestApp, args: &[&str]) -> Vec<(String, String)> {
    let mut all = vec!["--json", "deploy", "--plan"];
    all.extend_from_slice(args);
    let p = t.bgd(&all);
    assert_eq!(p.code, 0, "{p:?}");
    let r = p.result();
    let names = r["step_names"].as_array().unwrap();
    let texts = r["steps"].as_array().unwrap();
    assert_eq!(names.len(), texts.len(), "{r}");
    names
        .iter()
        .zip(texts)
        .map(|(n, t)| (n.as_str().unwrap().to_string(), mask(t)))
        .collect()
}

/// A release id (`20261126-084826`) in a step's text, masked.
fn mask(text: &Value) -> String {
    let text = text.as_str().unwrap_or_default();
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("release ") {
        let (head, tail) = rest.split_at(i + "release ".len());
        out.push_str(head);
        let id: String = tail
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '-')
            .collect();
        out.push_str(if id.len() == 15 { "RELEASE" } else { &id });
        rest = &tail[id.len()..];
    }
    out.push_str(rest);
    out
}

/// Plans `deploy ARGS`, runs it, and checks it ran the plan: the same steps, in the same
/// order, saying the same things.
fn deploy_as_planned(t: &TestApp, args: &[&str], expect_steps: &[&str]) {
    let plan = planned(t, args);
    let names: Vec<&str> = plan.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, expect_steps, "the plan of deploy {args:?}");
    let mut all = vec!["--json", "deploy"];
    all.extend_from_slice(args);
    let run = t.bgd(&all);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(started(&run), plan, "deploy {args:?} ran its plan");
    let done = run
        .json_lines()
        .iter()
        .filter(|e| e["event"] == "step" && e["status"] == "done")
        .count();
    assert_eq!(done, plan.len(), "every step ended: {run:?}");
}

#[test]
fn a_deploy_runs_exactly_the_steps_its_plan_lists() {
    let t = TestApp::new("steps");
    let cfg = t
        .config()
        .set("smoke", json!([{"name": "home", "path": "/"}]));
    t.write(&cfg);
    // a fresh app: the network and nginx are created first
    deploy_as_planned(
        &t,
        &["bgd-demo:v1"],
        &[
            "network",
            "lb",
            "prepare",
            "start",
            "preview",
            "readiness",
            "smoke",
            "drift",
            "switch",
            "verify",
        ],
    );
    // a second deploy: nothing parked yet
    deploy_as_planned(
        &t,
        &["bgd-demo:v2"],
        &[
            "prepare",
            "start",
            "preview",
            "readiness",
            "smoke",
            "drift",
            "switch",
            "verify",
        ],
    );
    // with a migration hook, and a parked release to set aside and let go
    t.write(&cfg.set(
        "hooks.migrate",
        json!({"command": ["migrate"], "timeout": "30s"}),
    ));
    deploy_as_planned(
        &t,
        &["bgd-demo:v3"],
        &[
            "prepare",
            "set-aside",
            "start",
            "preview",
            "readiness",
            "migrate",
            "compatibility",
            "smoke",
            "drift",
            "switch",
            "drop-parked",
            "verify",
        ],
    );
    // --no-switch stops after the gates, the parked release kept aside (for `discard`)
    deploy_as_planned(
        &t,
        &["--no-switch", "bgd-demo:v4"],
        &[
            "prepare",
            "set-aside",
            "start",
            "preview",
            "readiness",
            "migrate",
            "compatibility",
            "smoke",
            "drift",
        ],
    );
    // and the next deploy replaces the waiting candidate, the release aside parked again
    // until the switch lets it go
    deploy_as_planned(
        &t,
        &["bgd-demo:v1"],
        &[
            "prepare",
            "tidy",
            "set-aside",
            "start",
            "preview",
            "readiness",
            "migrate",
            "compatibility",
            "smoke",
            "drift",
            "switch",
            "drop-parked",
            "verify",
        ],
    );
    assert_eq!(t.live_version(), "v1");
}

/// A template whose preview listener ignores `X-Bgd-Probe-Replica`: every probe goes to the
/// idle color. Before the switch that is the candidate, so its gates pass; after it, a probe
/// of a live replica is answered by the old color.
const NO_PROBE_MAP: &str = r#"
{%- if live %}
upstream bgd_{{ ident }}_live {
{%- for s in live.servers %}
    server {{ s.addr }};
{%- endfor %}
}
{%- endif %}
{%- if preview %}
upstream bgd_{{ ident }}_preview {
{%- for s in preview.servers %}
    server {{ s.addr }};
{%- endfor %}
}
{%- endif %}
server {
    listen {{ listen }} default_server;
    location / {
{%- if live %}
        proxy_pass http://bgd_{{ ident }}_live;
        add_header X-Bgd-Color {{ live.color }} always;
        add_header X-Bgd-Generation {{ generation }} always;
{%- else %}
        add_header X-Bgd-Color none always;
        add_header X-Bgd-Generation {{ generation }} always;
        return 503;
{%- endif %}
    }
}
server {
    listen {{ preview_listen }} default_server;
    location / {
{%- if preview %}
        proxy_pass http://bgd_{{ ident }}_preview;
        add_header X-Bgd-Color {{ preview.color }} always;
        add_header X-Bgd-Generation {{ generation }} always;
{%- else %}
        return 503;
{%- endif %}
    }
}
"#;

/// Verification probes every live replica through nginx; an answer from the old color is a
/// failure even when its status is fine (it used to pass), and traffic goes back.
#[test]
fn verification_rejects_an_answer_from_the_wrong_color() {
    let t = TestApp::new("color");
    t.write(&t.config());
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v1"]).code, 0);
    std::fs::write(t.dir.join("no-probe-map.conf.tera"), NO_PROBE_MAP).unwrap();
    t.write(&t.config().set("lb.template", "no-probe-map.conf.tera"));
    let r = t.bgd(&["--json", "deploy", "bgd-demo:v2"]);
    assert_eq!(r.code, 4, "{r:?}");
    let verify_failed = r
        .json_lines()
        .into_iter()
        .find(|e| e["step"] == "verify" && e["status"] == "failed")
        .unwrap_or_else(|| panic!("verification failed: {r:?}"));
    let why = verify_failed["message"].as_str().unwrap();
    assert!(
        why.contains("answered for color \"blue\", not green")
            && why.contains("X-Bgd-Probe-Replica"),
        "{why}"
    );
    assert_eq!(t.live_version(), "v1", "traffic is back on blue");
    let s = t.bgd(&["status", "--json"]).result();
    assert_eq!(s["live"]["image"], "bgd-demo:v1", "{s}");
}

/// Everything a deploy could change on the host for `t`: its containers, its network, the
/// nginx container and bgd's files in it.
fn host_snapshot(t: &TestApp) -> String {
    let containers = docker(&[
        "ps",
        "-a",
        "--no-trunc",
        "--filter",
        &format!("label=bgd.app={}", t.app),
        "--format",
        "{{.ID}} {{.Names}} {{.Image}} {{.State}}",
    ]);
    let lb = docker(&["inspect", "-f", "{{.Id}} {{.State.Status}}", &t.lb()]);
    let networks = docker(&[
        "network",
        "ls",
        "--no-trunc",
        "--filter",
        &format!("name={}", t.app),
        "--format",
        "{{.ID}} {{.Name}}",
    ]);
    let files = if lb.trim().is_empty() {
        String::new()
    } else {
        t.lb_sh("cd /etc/nginx && ls -R conf.d bgd && for f in conf.d/* bgd/*/*; do [ -f \"$f\" ] && echo \"== $f\" && cat \"$f\"; done")
    };
    let mut lines: Vec<&str> = containers.lines().collect();
    lines.sort();
    format!(
        "{}\n-- lb\n{lb}-- networks\n{networks}-- files\n{files}",
        lines.join("\n")
    )
}

#[test]
fn plan_touches_nothing_and_shows_the_steps_specs_and_config_diff() {
    let t = TestApp::new("plan");
    let secret = "plan-secret-value-31337";
    t.write(
        &t.config().set("container.memory", "128m").set(
            "container.env",
            json!({"API_TOKEN": secret, "MODE": "blue-green", "DATABASE_URL": format!("postgres://shop:{secret}x@db/shop")}),
        ),
    );

    // a fresh host: nothing is created, not even the network or nginx
    let before = host_snapshot(&t);
    let p = t.bgd(&["deploy", "--plan", "bgd-demo:v1"]);
    assert_eq!(p.code, 0, "{p:?}");
    assert_eq!(
        host_snapshot(&t),
        before,
        "a plan on a fresh host changed it"
    );
    assert!(docker(&[
        "network",
        "ls",
        "-q",
        "--filter",
        &format!("name={}-net", t.app)
    ])
    .trim()
    .is_empty());
    assert!(
        p.stdout
            .contains(&format!("create the network {}-net", t.app)),
        "{p:?}"
    );
    assert!(
        p.stdout
            .contains(&format!("create the nginx container {}", t.lb())),
        "{p:?}"
    );
    assert!(
        p.stdout.contains("+upstream bgd_"),
        "the config to be written: {p:?}"
    );

    assert_eq!(t.bgd(&["deploy", "bgd-demo:v1"]).code, 0);
    let before = host_snapshot(&t);
    let p = t.bgd(&["deploy", "--plan", "bgd-demo:v2"]);
    assert_eq!(p.code, 0, "{p:?}");
    let blue1 = format!("{}-blue-1", t.app);
    let green1 = format!("{}-green-1", t.app);
    for want in [
        "start 2 green replica(s) of bgd-demo:v2".to_string(),
        "switch live traffic to green".to_string(),
        "park blue (bgd-demo:v1)".to_string(),
        "MODE=blue-green".to_string(),
        "API_TOKEN=<secret>".to_string(),
        "DATABASE_URL=<secret>".to_string(),
        "memory        128 MiB".to_string(),
        format!("resolve max_fails=0;  # {green1}"),
        format!("+upstream bgd_{}_green {{", t.app.replace('-', "_")),
    ] {
        assert!(p.stdout.contains(&want), "plan lacks {want:?}: {p:?}");
    }
    assert!(
        !p.stdout.contains(secret) && !p.stderr.contains(secret),
        "{p:?}"
    );

    let j = t.bgd(&["--json", "deploy", "--plan", "--no-switch", "bgd-demo:v2"]);
    let r = j.result();
    assert_eq!(r["ok"], true, "{j:?}");
    assert_eq!(r["target"], "green");
    let steps: Vec<&str> = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    let notes = r["notes"].to_string();
    assert!(notes.contains("waits as the candidate"), "{notes}");
    assert!(
        !steps.iter().any(|s| s.starts_with("switch live traffic")),
        "{steps:?}"
    );
    assert_eq!(r["create"].as_array().unwrap().len(), 2);
    let diff = r["nginx"]["diff"].as_str().unwrap();
    assert!(
        diff.contains(&format!("resolve max_fails=0;  # {green1}")),
        "{diff}"
    );
    assert!(!j.stdout.contains(secret));

    // a plan for an image the host lacks says it would pull it, and still touches nothing
    let p = t.bgd(&["deploy", "--plan", "bgd-demo:not-here"]);
    assert_eq!(p.code, 0, "{p:?}");
    assert!(p.stdout.contains("pull bgd-demo:not-here"), "{p:?}");

    assert_eq!(host_snapshot(&t), before, "a plan changed the host");
    assert!(t.containers("green").is_empty());
    assert_eq!(t.live_version(), "v1");
    assert!(docker(&["ps", "--format", "{{.Names}}"]).contains(&blue1));
}

/// The "Docker API requests: N" that `bgd -v` ends with.
fn api_requests(r: &Run) -> u64 {
    r.stderr
        .lines()
        .filter_map(|l| l.split("Docker API requests: ").nth(1))
        .filter_map(|n| n.trim().parse().ok())
        .next_back()
        .unwrap_or_else(|| panic!("no API request count: {r:?}"))
}

/// `-v` says how many Engine API requests a command made; with more replicas, a deploy's
/// count grows by a small constant per replica, `status`'s by one inspect per container, and
/// a rollback's (one container list, no inspect) not at all.
#[test]
fn engine_api_requests_are_counted_and_grow_linearly_with_replicas() {
    let mut counts = Vec::new();
    for replicas in [1u64, 3] {
        let t = TestApp::new(&format!("api{replicas}"));
        t.write(&t.config().set("replicas", replicas));
        assert_eq!(t.bgd(&["deploy", "bgd-demo:v1"]).code, 0);
        assert_eq!(t.bgd(&["deploy", "bgd-demo:v2"]).code, 0);
        // the steady state: a live release and a parked one, which this deploy replaces
        let d = t.bgd(&["-v", "deploy", "bgd-demo:v3"]);
        assert_eq!(d.code, 0, "{d:?}");
        let s = t.bgd(&["-v", "status"]);
        assert_eq!(s.code, 0, "{s:?}");
        let r = t.bgd(&["-v", "rollback"]);
        assert_eq!(r.code, 0, "{r:?}");
        assert!(r.stderr.contains("by the rollback flag"), "{r:?}");
        counts.push((api_requests(&d), api_requests(&s), api_requests(&r)));
    }
    let ((d1, s1, r1), (d3, s3, r3)) = (counts[0], counts[1]);
    eprintln!(
        "API requests, 1 and 3 replicas: deploy {d1}, {d3}; status {s1}, {s3}; rollback {r1}, {r3}"
    );
    // two more replicas per color
    let per_replica = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / 2.0;
    assert!(
        per_replica(d1, d3) <= 7.0 && d3 > d1,
        "deploy: {d1} with 1 replica, {d3} with 3"
    );
    assert!(
        per_replica(s1, s3) <= 2.0,
        "status: {s1} with 1 replica, {s3} with 3"
    );
    assert_eq!(r1, r3, "rollback: {r1} with 1 replica, {r3} with 3");
}
