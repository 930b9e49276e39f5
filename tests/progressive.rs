//! Progressive delivery against the real daemon and nginx: the mirror (live requests copied
//! to the candidate, its answers judged against live's from what nginx logged) and the canary
//! (a sticky share of live clients, set by hand or step by step with automatic analysis).

mod common;

use common::*;
use serde_json::json;
use std::collections::BTreeMap;

/// GETs `/` through the live listener on a fresh connection, with `cookie`;
/// (X-Bgd-Color, Set-Cookie).
fn get(port: u16, cookie: Option<&str>) -> (String, Option<String>) {
    let headers: Vec<(&str, &str)> = cookie.map(|c| ("Cookie", c)).into_iter().collect();
    let reply = http_get_with(port, "/", &headers).expect("an answer from the live listener");
    (
        reply.header("x-bgd-color").unwrap_or_default().to_string(),
        reply.header("set-cookie").map(String::from),
    )
}

/// The `bgd_canary=NN` part of a Set-Cookie header.
fn canary_cookie(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string()
}

fn traffic_logs(t: &TestApp) -> String {
    t.lb_sh(&format!(
        "ls /etc/nginx/bgd/logs/ | grep '^{}-traffic' || true",
        t.app
    ))
}

#[test]
fn the_mirror_rejects_a_flaky_candidate_on_live_traffic_and_passes_a_good_one() {
    let t = TestApp::new("mir");
    t.write(&t.config());
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v1"]).code, 0);
    // judged on 5xx here (a loaded machine can double a cold candidate's p95 under a 100%
    // mirror); the latency threshold is the canary test's
    let mirrored = t.config().set(
        "warmup.mirror",
        json!({"share": "100%", "for": "4s", "min_requests": 30, "max_latency_ratio": 10}),
    );
    let load = Load::start(t.live_port, &t.dir);
    load.expect("blue");

    // a candidate that answers 500 to a fifth of its requests
    t.write(&mirrored.clone().set("container.env.DEMO_ERROR_PERCENT", 20));
    let plan = t.bgd(&["deploy", "--plan", "bgd-demo:v2"]);
    assert!(
        plan.stdout
            .contains("copy 100% of live GET/HEAD requests to green for 4.0s"),
        "{plan:?}"
    );
    let r = t.bgd(&["--json", "deploy", "bgd-demo:v2"]);
    assert_eq!(r.code, 3, "{r:?}");
    let result = r.result();
    let error = result["error"].as_str().unwrap_or("");
    assert!(
        error.contains("the candidate failed on mirrored live traffic"),
        "{error}"
    );
    assert!(error.contains("5xx rate is"), "{error}");
    let judged = r
        .json_lines()
        .into_iter()
        .find(|l| l["event"] == "analysis")
        .unwrap_or_else(|| panic!("no analysis event: {r:?}"));
    assert_eq!(judged["phase"], "mirror");
    assert_eq!(judged["verdict"], "fail");
    assert!(judged["candidate"]["requests"].as_u64().unwrap_or(0) >= 30);
    assert!(judged["candidate"]["errors"].as_u64().unwrap_or(0) > 0);
    assert_eq!(judged["stable"]["errors"], 0, "{judged}");
    assert_eq!(t.live_version(), "v1");
    assert!(t.containers("green").is_empty());
    // the history keeps the figures
    let h = t.bgd(&["--json", "history"]);
    let entries = h.result()["entries"].clone();
    let last = entries
        .as_array()
        .and_then(|e| e.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(last["outcome"], "rejected", "{last}");
    assert_eq!(last["analysis"][0]["verdict"], "fail", "{last}");

    // a good candidate passes, and the mirror leaves nothing behind
    t.write(&mirrored);
    load.expect("any");
    let d = t.bgd(&["--json", "deploy", "bgd-demo:v2"]);
    assert_eq!(d.code, 0, "{d:?}");
    let done = d
        .json_lines()
        .into_iter()
        .find(|l| l["step"] == "mirror" && l["status"] == "done")
        .unwrap_or_else(|| panic!("no mirror step: {d:?}"));
    let message = done["message"].as_str().unwrap_or("");
    assert!(message.starts_with("mirror: candidate "), "{message}");
    assert!(message.ends_with(": pass"), "{message}");
    assert_eq!(d.result()["analysis"][0]["verdict"], "pass", "{d:?}");
    load.expect("green");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let summary = load.finish();
    assert_eq!(summary["failures"], 0, "{summary:#}");
    assert!(!t.active_config().contains("mirror"));
    assert_eq!(traffic_logs(&t).trim(), "", "traffic logs left behind");
}

#[test]
fn the_mirror_is_skipped_when_nothing_is_live() {
    let t = TestApp::new("mir0");
    t.write(&t.config().set("warmup.mirror", json!({"for": "2s"})));
    let d = t.bgd(&["--json", "deploy", "bgd-demo:v1"]);
    assert_eq!(d.code, 0, "{d:?}");
    let done = d
        .json_lines()
        .into_iter()
        .find(|l| l["step"] == "mirror" && l["status"] == "done")
        .unwrap_or_else(|| panic!("no mirror step: {d:?}"));
    assert!(
        done["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("skipped: nothing is live yet"),
        "{done}"
    );
}

#[test]
fn a_manual_canary_is_sticky_changes_share_rolls_back_to_zero_and_promotes() {
    let t = TestApp::new("can");
    t.write(&t.config());
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v1"]).code, 0);
    let load = Load::start(t.live_port, &t.dir);
    load.expect("blue");

    load.expect("any");
    let d = t.bgd(&["--json", "deploy", "--canary", "30", "bgd-demo:v2"]);
    assert_eq!(d.code, 0, "{d:?}");
    let result = d.result();
    assert_eq!(result["share"], 30, "{result}");
    assert_eq!(result["canary"]["color"], "green");
    assert_eq!(result["live"]["color"], "blue");

    // new clients split about 30/70, each told its bucket once
    let mut sides: BTreeMap<String, u32> = BTreeMap::new();
    let mut clients = Vec::new();
    for _ in 0..200 {
        let (color, set) = get(t.live_port, None);
        let set = set.unwrap_or_else(|| panic!("no Set-Cookie for a new client"));
        assert!(set.starts_with("bgd_canary="), "{set}");
        *sides.entry(color.clone()).or_default() += 1;
        clients.push((color, canary_cookie(&set)));
    }
    let green = sides.get("green").copied().unwrap_or(0);
    assert!(
        (40..=80).contains(&green),
        "30% of 200 new clients: {sides:?}"
    );
    // each client stays on its side, and is not told again
    for (color, cookie) in clients.iter().take(40) {
        for _ in 0..3 {
            let (again, set) = get(t.live_port, Some(cookie));
            assert_eq!(&again, color, "{cookie} moved");
            assert_eq!(set, None);
        }
    }
    // status: the split, and each side's requests as nginx logged them
    let st = t.bgd(&["--json", "status"]);
    assert_eq!(st.code, 0, "{st:?}");
    let c = st.result()["canary"].clone();
    assert_eq!(c["share"], 30, "{c}");
    assert!(c["canary"]["requests"].as_u64().unwrap_or(0) > 0, "{c}");
    assert!(c["stable"]["requests"].as_u64().unwrap_or(0) > 0, "{c}");
    let human = t.bgd(&["status"]);
    assert!(
        human.stdout.contains("30% of live clients on green"),
        "{human:?}"
    );

    // a larger share moves clients from blue to green only
    let c = t.bgd(&["--json", "canary", "60"]);
    assert_eq!(c.code, 0, "{c:?}");
    assert_eq!(c.result()["share"], 60);
    for (color, cookie) in clients.iter().filter(|(c, _)| c == "green").take(20) {
        assert_eq!(&get(t.live_port, Some(cookie)).0, color, "{cookie}");
    }
    // ... and moves some: buckets 30-59 of the blue ones (30 of 70, about 43%)
    let blue: Vec<&String> = clients
        .iter()
        .filter(|(c, _)| c == "blue")
        .map(|(_, cookie)| cookie)
        .collect();
    let moved = blue
        .iter()
        .filter(|cookie| get(t.live_port, Some(cookie)).0 == "green")
        .count();
    let pct = moved * 100 / blue.len().max(1);
    assert!((25..=60).contains(&pct), "{moved} of {} moved", blue.len());
    // the candidate serves clients: discard refuses until its share is 0
    let d = t.bgd(&["discard"]);
    assert_eq!(d.code, 2, "{d:?}");
    assert!(d.stderr.contains("bgd rollback"), "{d:?}");
    // a record lost during a canary is rebuilt with it, from what nginx serves
    docker(&[
        "exec",
        &t.lb(),
        "rm",
        &format!("/etc/nginx/bgd/{}/state.json", t.app),
    ]);
    assert_eq!(t.bgd(&["repair"]).code, 0);
    let st = t.bgd(&["--json", "status"]).result();
    assert_eq!(st["canary"]["share"], 60, "{st}");
    // a deploy now would replace the canary: refused
    let refused = t.bgd(&["deploy", "bgd-demo:v3"]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(refused.stderr.contains("a canary runs"), "{refused:?}");

    // rollback: all of live traffic on blue, the candidate idle
    let rb = t.bgd(&["--json", "rollback"]);
    assert_eq!(rb.code, 0, "{rb:?}");
    assert_eq!(rb.result()["share"], 0, "{rb:?}");
    load.expect("blue");
    for (_, cookie) in clients.iter().take(20) {
        assert_eq!(get(t.live_port, Some(cookie)).0, "blue");
    }
    let st = t.bgd(&["--json", "status"]).result();
    assert_eq!(st["idle"]["role"], "candidate", "{st}");
    assert_eq!(st["canary"], serde_json::Value::Null, "{st}");
    assert_eq!(
        t.bgd(&["rollback"]).code,
        2,
        "no canary, nothing parked: nothing to roll back to"
    );

    // again, and promoted: the usual switch, verify and park
    load.expect("any");
    assert_eq!(t.bgd(&["canary", "10"]).code, 0);
    let p = t.bgd(&["--json", "promote"]);
    assert_eq!(p.code, 0, "{p:?}");
    assert_eq!(p.result()["live"]["color"], "green");
    assert_eq!(p.result()["parked"]["color"], "blue");
    load.expect("green");
    for (_, cookie) in clients.iter().take(10) {
        let (color, set) = get(t.live_port, Some(cookie));
        assert_eq!(color, "green");
        assert_eq!(set, None, "no canary cookie once promoted");
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let summary = load.finish();
    assert_eq!(summary["failures"], 0, "{summary:#}");
    assert_eq!(traffic_logs(&t).trim(), "", "traffic logs left behind");
}

#[test]
fn an_automatic_canary_advances_step_by_step_and_aborts_on_a_breach() {
    let t = TestApp::new("cana");
    t.write(&t.config());
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v1"]).code, 0);
    let stepped = t.config().set(
        "canary",
        // p95 under 80 ms passes (4 x the 20 ms floor), whatever the machine's load; the slow
        // release's 150 ms does not
        json!({"steps": ["20%", "50%"], "step_for": "3s", "min_requests": 20, "max_latency_ratio": 4}),
    );
    t.write(&stepped);
    let load = Load::start(t.live_port, &t.dir);
    load.expect("any");
    let d = t.bgd(&["--json", "deploy", "bgd-demo:v2"]);
    assert_eq!(d.code, 0, "{d:?}");
    let result = d.result();
    assert_eq!(result["live"]["color"], "green", "{result}");
    let phases: Vec<String> = result["analysis"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|j| format!("{} {}", j["phase"], j["verdict"]))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        phases,
        vec!["\"canary 20%\" \"pass\"", "\"canary 50%\" \"pass\""],
        "{result}"
    );
    load.expect("green");

    // a slow release breaks the p95 threshold at its first step: all back on green, exit 4
    t.write(&stepped.clone().set("container.env.DEMO_DELAY_MS", 150));
    load.expect("any");
    let r = t.bgd(&["--json", "deploy", "bgd-demo:v3"]);
    assert_eq!(r.code, 4, "{r:?}");
    let error = r.result()["error"].as_str().unwrap_or("").to_string();
    assert!(error.contains("the canary failed its analysis"), "{error}");
    assert!(error.contains("p95"), "{error}");
    // at its first step, which the history keeps with its figures
    let judged: Vec<serde_json::Value> = r
        .json_lines()
        .into_iter()
        .filter(|l| l["event"] == "analysis")
        .collect();
    assert_eq!(judged.len(), 1, "{judged:?}");
    assert_eq!(judged[0]["phase"], "canary 20%");
    assert_eq!(judged[0]["verdict"], "fail");
    let h = t.bgd(&["--json", "history"]).result();
    let last = h["entries"]
        .as_array()
        .and_then(|e| e.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(last["command"], "deploy", "{last}");
    assert_eq!(last["outcome"], "rolled-back", "{last}");
    assert_eq!(last["analysis"][0]["verdict"], "fail", "{last}");
    load.expect("green");
    assert_eq!(t.live_version(), "v2");
    let st = t.bgd(&["--json", "status"]).result();
    assert_eq!(st["idle"]["role"], "candidate", "{st}");
    assert_eq!(st["canary"], serde_json::Value::Null, "{st}");
    // the failed canary is not promoted by mistake
    let p = t.bgd(&["promote"]);
    assert_eq!(p.code, 2, "{p:?}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let summary = load.finish();
    assert_eq!(summary["failures"], 0, "{summary:#}");
    // discard, and the next deploy works
    assert_eq!(t.bgd(&["discard"]).code, 0);
}

#[test]
fn a_window_too_quiet_to_judge_fails_only_when_asked() {
    let t = TestApp::new("mirq");
    t.write(&t.config());
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v1"]).code, 0);
    // no traffic at all: no verdict
    let quiet = t.config().set("warmup.mirror", json!({"for": "1s"}));
    t.write(&quiet.clone().set("warmup.mirror.inconclusive", "fail"));
    let r = t.bgd(&["deploy", "bgd-demo:v2"]);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(r.stderr.contains("(inconclusive: fail)"), "{r:?}");
    assert_eq!(t.live_version(), "v1");
    t.write(&quiet);
    // requests of bgd's own (its user agent: the switch window's checks, the confirmation)
    // through lb.url are not the app's traffic: neither logged nor mirrored. A stand-in sends
    // such requests all through the deploys below, beside bgd's own.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (port, stopped) = (t.live_port, stop.clone());
    let checker = std::thread::spawn(move || {
        let mut sent = 0u32;
        while !stopped.load(std::sync::atomic::Ordering::SeqCst) {
            if http_get_with(port, "/", &[("User-Agent", "bgd/0.0.0")]).is_some() {
                sent += 1;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        sent
    });
    let d = t.bgd(&["--json", "deploy", "bgd-demo:v2"]);
    assert_eq!(d.code, 0, "{d:?}");
    assert!(d.stdout.contains("too little traffic to judge"), "{d:?}");
    let nothing_judged = |d: &Run, phase: &str| {
        let judged = d
            .json_lines()
            .into_iter()
            .find(|l| l["event"] == "analysis")
            .unwrap_or_else(|| panic!("no analysis event: {d:?}"));
        assert_eq!(judged["phase"], phase, "{judged}");
        assert_eq!(judged["candidate"]["requests"], 0, "{judged}");
        assert_eq!(judged["stable"]["requests"], 0, "{judged}");
    };
    nothing_judged(&d, "mirror");
    // a canary's too: its window's checks and its confirmation split like any client's
    t.write(&t.config().set(
        "canary",
        json!({"steps": ["50%"], "step_for": "1s", "min_requests": 5}),
    ));
    let c = t.bgd(&["--json", "deploy", "bgd-demo:v3"]);
    assert_eq!(c.code, 0, "{c:?}");
    nothing_judged(&c, "canary 50%");
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let sent = checker.join().unwrap();
    assert!(sent > 50, "the stand-in sent {sent} requests");
}

#[test]
fn rollback_ends_a_canary_whose_replicas_died() {
    let t = TestApp::new("cand");
    t.write(&t.config());
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v1"]).code, 0);
    assert_eq!(t.bgd(&["deploy", "--canary", "50", "bgd-demo:v2"]).code, 0);
    let green = t.containers("green");
    assert_eq!(green.len(), 2, "{green:?}");
    docker_on(&["stop", "-t", "1"], &green);
    // a share cannot go up on stopped replicas, and says what to do
    let up = t.bgd(&["canary", "80"]);
    assert_eq!(up.code, 3, "{up:?}");
    assert!(up.stderr.contains("`bgd rollback`"), "{up:?}");
    // the incident command ends it anyway: every client on the live release
    let rb = t.bgd(&["--json", "rollback"]);
    assert_eq!(rb.code, 0, "{rb:?}");
    assert_eq!(rb.result()["share"], 0, "{rb:?}");
    for _ in 0..20 {
        assert_eq!(get(t.live_port, None).0, "blue");
    }
    let st = t.bgd(&["--json", "status"]).result();
    assert_eq!(st["canary"], serde_json::Value::Null, "{st}");
    assert_eq!(st["live"]["color"], "blue", "{st}");
    assert_eq!(t.bgd(&["discard"]).code, 0);
}
