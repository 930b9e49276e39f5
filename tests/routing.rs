//! Routing follows containers: the app's containers restart in another order (what a host
//! reboot, a daemon restart or an OOM kill under the restart policy does) while another
//! container takes addresses on the network. With nginx >= 1.27.3 live traffic stays on the
//! live release by itself; with an older nginx `status` says what live traffic reaches and
//! `bgd reroute` fixes it.

mod common;
use common::*;
use std::time::{Duration, Instant};

/// The IPv4 address of `container` on `network`.
fn ip_of(container: &str, network: &str) -> String {
    docker(&[
        "inspect",
        "-f",
        &format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"),
        container,
    ])
    .trim()
    .to_string()
}

/// Stops every container of the app, then starts a competing container on the network (it
/// takes the lowest free address) and the app's containers in another order: parked blue
/// first, live green last, in reverse replica order. Returns the live replicas' addresses
/// from before, and asserts that at least one of them now belongs to another container.
fn shuffle(t: &TestApp, restart_nginx_while_down: bool) {
    let net = format!("{}-net", t.app);
    let (blue, green) = (t.containers("blue"), t.containers("green"));
    assert_eq!((blue.len(), green.len()), (2, 2), "{blue:?} {green:?}");
    let before: Vec<(String, String)> = green.iter().map(|g| (g.clone(), ip_of(g, &net))).collect();
    let mut all: Vec<&str> = vec!["stop", "-t", "1"];
    all.extend(blue.iter().chain(&green).map(String::as_str));
    docker(&all);
    if restart_nginx_while_down {
        // nginx starts while no app container runs: the names it routes to do not resolve
        docker(&["restart", "-t", "1", &t.lb()]);
    }
    let intruder = format!("{}-intruder", t.app);
    docker(&[
        "run",
        "-d",
        "--name",
        &intruder,
        "--network",
        &net,
        "--label",
        &format!("bgd.app={}", t.app),
        "bgd-demo:v3",
    ]);
    for c in [&blue[1], &blue[0], &green[1], &green[0]] {
        docker(&["start", c]);
    }
    let taken: Vec<String> = before
        .iter()
        .filter(|(g, ip)| ip_of(g, &net) != *ip)
        .filter_map(|(_, ip)| {
            let holder = [&intruder, &blue[0], &blue[1], &green[0], &green[1]]
                .into_iter()
                .find(|c| ip_of(c, &net) == *ip)?;
            (!green.contains(holder)).then(|| format!("{ip} now {holder}"))
        })
        .collect();
    assert!(
        !taken.is_empty(),
        "the shuffle must give a live replica's old address to another container: {before:?}"
    );
    eprintln!("shuffled: {}", taken.join(", "));
}

/// The versions that answer `n` requests to the live listener (fresh connections).
fn live_versions(t: &TestApp, n: usize) -> Vec<String> {
    (0..n).map(|_| t.live_version()).collect()
}

/// Waits until `want` answers 10 requests in a row on the live listener; how long it took.
fn converge(t: &TestApp, want: &str, within: Duration) -> Duration {
    let started = Instant::now();
    let mut streak = 0;
    let mut last = Vec::new();
    while started.elapsed() < within {
        let v = t.live_version();
        streak = if v == want { streak + 1 } else { 0 };
        if streak >= 10 {
            return started.elapsed();
        }
        last.push(v);
        if last.len() > 20 {
            last.remove(0);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("live traffic did not settle on {want} within {within:?}; last answers {last:?}");
}

#[test]
fn restarted_containers_keep_live_traffic_on_the_live_release() {
    let t = TestApp::new("follow");
    t.write(&t.config());
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v1"]).code, 0);
    let v2 = t.bgd(&["deploy", "bgd-demo:v2"]);
    assert_eq!(v2.code, 0, "{v2:?}");
    assert!(
        !t.active_config().contains(&ip_of(
            &format!("{}-green-1", t.app),
            &format!("{}-net", t.app)
        )),
        "nginx >= 1.27.3 routes by name, not address:\n{}",
        t.active_config()
    );

    // nginx restarts with every app container down, then they come back shuffled
    shuffle(&t, true);
    let took = converge(&t, "v2", Duration::from_secs(15));
    eprintln!("live traffic on v2 alone {took:?} after the last replica started");

    // from then on: v2 only, nothing failed, under load (no retries)
    let load = Load::start_judging(t.live_port, &t.dir, "X-App-Version");
    load.expect("v2");
    std::thread::sleep(Duration::from_secs(3));
    let summary = load.finish();
    assert_eq!(summary["failures"], 0, "{summary}");
    let versions: Vec<&String> = summary["colors"].as_object().unwrap().keys().collect();
    assert_eq!(versions, ["v2"], "{summary}");

    // nginx restarted with everything up: the same
    docker(&["restart", "-t", "1", &t.lb()]);
    converge(&t, "v2", Duration::from_secs(15));
    assert!(live_versions(&t, 30).iter().all(|v| v == "v2"));

    // status agrees, and every replica, parked ones included, is probed where it is now
    let s = t.bgd(&["status", "--json"]);
    assert_eq!(s.code, 0, "{s:?}");
    let r = s.result();
    assert_eq!(r["problems"], serde_json::json!([]), "{r}");
    for color in ["live", "idle"] {
        for c in r[color]["containers"].as_array().unwrap() {
            assert_eq!(c["health"], "healthy", "{r}");
        }
    }
    // and the parked release is a rollback away
    let rb = t.bgd(&["rollback"]);
    assert_eq!(rb.code, 0, "{rb:?}");
    assert!(live_versions(&t, 20).iter().all(|v| v == "v1"));
}

#[test]
fn an_nginx_that_routes_by_address_is_caught_by_status_and_fixed_by_reroute() {
    let t = TestApp::new("reroute");
    t.write(&t.config().set("lb.image", "bgd-nginx:1.22"));
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v1"]).code, 0);
    let v2 = t.bgd(&["deploy", "bgd-demo:v2"]);
    assert_eq!(v2.code, 0, "{v2:?}");
    assert!(
        v2.stderr
            .contains("cannot resolve upstream names (>= 1.27.3)"),
        "warns what is at risk: {v2:?}"
    );

    shuffle(&t, false);
    // nginx 1.22 keeps the old addresses: live traffic reaches whoever holds them now
    let seen = live_versions(&t, 40);
    assert!(seen.iter().any(|v| v != "v2"), "{seen:?}");

    let s = t.bgd(&["status"]);
    eprintln!("{}{}", s.stdout, s.stderr);
    assert_eq!(s.code, 7, "{s:?}");
    assert!(s.stdout.contains("`bgd reroute`"), "{s:?}");
    let j = t.bgd(&["status", "--json"]);
    assert_eq!(j.code, 7, "{j:?}");
    let r = j.result();
    assert_eq!(r["ok"], false, "{r}");
    let problems: Vec<&str> = r["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("not the live green") || p.contains("which is not a container of")),
        "{problems:?}"
    );

    let rr = t.bgd(&["reroute"]);
    eprintln!("{}{}", rr.stdout, rr.stderr);
    assert_eq!(rr.code, 0, "{rr:?}");
    let rr = t.bgd(&["--json", "reroute"]);
    assert_eq!(rr.code, 0, "{rr:?}");
    let res = rr.result();
    assert_eq!(res["live"]["color"], "green", "{res}");
    assert_eq!(
        res["was"],
        serde_json::json!([]),
        "the first reroute fixed it: {res}"
    );
    assert!(live_versions(&t, 40).iter().all(|v| v == "v2"));
    let s = t.bgd(&["status", "--json"]);
    assert_eq!(s.code, 0, "{s:?}");
    assert_eq!(s.result()["problems"], serde_json::json!([]));
    let h = t.bgd(&["history", "--json"]).result();
    let last = h["entries"].as_array().unwrap().last().cloned().unwrap();
    assert_eq!(last["command"], "reroute", "{h}");
    assert_eq!(last["outcome"], "ok", "{h}");

    // with no live replica running, reroute refuses and leaves nginx as it is
    let before = t.active_config();
    docker_on(&["stop", "-t", "1"], &t.containers("green"));
    let none = t.bgd(&["reroute"]);
    eprintln!("{}", none.stderr);
    assert_eq!(none.code, 6, "{none:?}");
    assert!(
        none.stderr.contains("no replica of the live release"),
        "{none:?}"
    );
    assert_eq!(t.active_config(), before);
}

/// A deploy while every live replica is down (restarting) keeps the live release live: the
/// rejected candidate's undo leaves nginx answering 502 for it, not "nothing is live", so the
/// record and nginx still agree; once the replicas are back `status` says live traffic
/// reaches none of them and `bgd reroute` brings it back.
#[test]
fn a_deploy_while_the_live_replicas_are_down_keeps_them_live() {
    let t = TestApp::new("down");
    t.write(&t.config().set("readiness.deadline", "3s"));
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v1"]).code, 0);
    let blue = t.containers("blue");
    docker_on(&["stop", "-t", "1"], &blue);
    let d = t.bgd(&["deploy", "bgd-demo:unhealthy"]);
    assert_eq!(d.code, 3, "{d:?}");
    assert!(d.stderr.contains("no running replicas"), "warned: {d:?}");
    assert!(
        t.active_config().contains("\"live\":\"blue\""),
        "{}",
        t.active_config()
    );
    let s = t.bgd(&["status", "--json"]);
    assert_eq!(s.code, 0, "nothing to fix while they are down: {s:?}");

    docker_on(&["start"], &blue);
    let s = t.bgd(&["status", "--json"]);
    assert_eq!(s.code, 7, "{s:?}");
    assert!(
        s.result()["problems"].to_string().contains("bgd reroute"),
        "{s:?}"
    );
    let r = t.bgd(&["reroute"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(t.live_version(), "v1");
    assert_eq!(t.bgd(&["status"]).code, 0);
}

/// A deploy while every live replica is gone (removed by hand) ends the outage: live traffic
/// failed before the switch touched anything, so those failed checks are reported apart
/// (`failing_before`) and are not the switch's: the deploy succeeds, and is not sent back to
/// a release with nothing running.
#[test]
fn a_deploy_that_ends_a_live_outage_is_not_failed_for_it() {
    let t = TestApp::new("mends");
    t.write(&t.config());
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v1"]).code, 0);
    docker_on(&["rm", "-f"], &t.containers("blue"));
    let d = t.bgd(&["deploy", "bgd-demo:v2"]);
    assert_eq!(d.code, 0, "{d:?}");
    assert!(d.stderr.contains("no running replicas"), "warned: {d:?}");
    assert!(
        d.stderr.contains("as live traffic did before the switch"),
        "the outage is reported: {d:?}"
    );
    assert_eq!(t.live_version(), "v2");
    let last = t.history().last().cloned().unwrap();
    assert_eq!(last["outcome"], "ok", "{last}");
    let window = &last["switch_window"];
    assert_eq!(window["failed"], 0, "{last}");
    assert!(window["failing_before"].as_u64().unwrap_or(0) > 0, "{last}");
    assert!(
        window["first_failing_before"]
            .as_str()
            .is_some_and(|f| f.contains("502")),
        "{last}"
    );
}
