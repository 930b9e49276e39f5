//! The deploy lock: one run at a time, whoever and wherever it runs; a foreign lock is
//! refused with its holder, a dead one on this machine is taken over, `--lock-wait` waits.

mod common;
use common::*;

fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn concurrent_deploys_one_runs_the_other_exits_5_naming_the_holder() {
    let t = TestApp::new("lock");
    t.write(&t.config());
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v1"]).code, 0);
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| t.bgd(&["deploy", "bgd-demo:v2"]));
        let b = s.spawn(|| t.bgd(&["deploy", "bgd-demo:v3"]));
        (a.join().unwrap(), b.join().unwrap())
    });
    let mut codes = [a.code, b.code];
    codes.sort();
    assert_eq!(
        codes,
        [0, 5],
        "one runs, the other is refused:\n{a:?}\n{b:?}"
    );
    let loser = if a.code == 5 { &a } else { &b };
    assert!(loser.stderr.contains("holds the deploy lock"), "{loser:?}");
    assert!(
        loser.stderr.contains("bgd deploy bgd-demo:v"),
        "names the holder's command: {loser:?}"
    );
    assert!(loser.stderr.contains("pid "), "{loser:?}");
    // the winner released it
    let s = t.bgd(&["lock", "status", "--json"]).result();
    assert_eq!(s["held"], false, "{s}");
    assert!(t.live_version() == "v2" || t.live_version() == "v3");
}

#[test]
fn foreign_and_stale_locks() {
    let t = TestApp::new("lock2");
    t.write(&t.config());
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v1"]).code, 0);
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v2"]).code, 0);

    // held by a run on another machine: refused, with who and since
    t.plant_lock("ci-runner-7", 4242, "bgd deploy web:v9");
    let d = t.bgd(&["deploy", "bgd-demo:v3"]);
    assert_eq!(d.code, 5, "{d:?}");
    assert!(
        d.stderr.contains("someone@ci-runner-7") && d.stderr.contains("2026-01-01"),
        "{d:?}"
    );
    let r = t.bgd(&["rollback"]);
    assert_eq!(r.code, 5, "rollback respects the lock too: {r:?}");
    assert_eq!(t.live_version(), "v2", "nothing changed");
    let st = t.bgd(&["lock", "status"]);
    assert!(st.stdout.contains("ci-runner-7"), "{st:?}");
    let rel = t.bgd(&["lock", "release"]);
    assert_eq!(
        rel.code, 5,
        "without --force a possibly-running holder is kept: {rel:?}"
    );
    assert_eq!(t.bgd(&["lock", "release", "--force"]).code, 0);
    assert_eq!(t.bgd(&["lock", "status", "--json"]).result()["held"], false);

    // held by a process of this machine that is gone: taken over with a warning
    t.plant_lock(&this_host(), 999_999_999, "bgd deploy web:v8");
    let d = t.bgd(&["deploy", "bgd-demo:v3"]);
    assert_eq!(d.code, 0, "{d:?}");
    assert!(d.stderr.contains("taking over the deploy lock"), "{d:?}");
    assert_eq!(t.live_version(), "v3");

    // --lock-wait: the deploy waits for the holder to finish (released once it says it waits)
    t.plant_lock("ci-runner-7", 4242, "bgd deploy web:v9");
    let mut waiter = t.watch(&["deploy", "bgd-demo:v4", "--lock-wait", "20s"]);
    waiter.wait_for("the wait for the lock", |e| {
        e["event"] == "log"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains("waiting for the deploy lock"))
    });
    assert_eq!(t.bgd(&["lock", "release", "--force"]).code, 0);
    let w = waiter.finish();
    assert_eq!(w.code, 0, "{w:?}");
    assert_eq!(t.live_version(), "v4");
    let bad = t.bgd(&["deploy", "bgd-demo:v4", "--lock-wait", "soon"]);
    assert_eq!(bad.code, 2, "{bad:?}");
}

/// A config whose candidates take `ms` to become ready: a deploy holds the lock that long.
fn slow_start(t: &TestApp, ms: &str) -> Cfg {
    t.config()
        .set("container.env.DEMO_START_DELAY_MS", ms)
        .set("readiness.deadline", "60s")
}

/// A live bgd in another PID namespace on this machine (a container with the host's name,
/// `--network host`): its pid does not exist here, but that proves nothing, so its lock is
/// never taken over.
#[test]
fn a_live_lock_from_another_pid_namespace_is_never_taken_over() {
    let t = TestApp::new("pidns");
    t.write(&t.config());
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v1"]).code, 0);
    t.write(&slow_start(&t, "30000"));
    // pid 100000 in its namespace: above this machine's pid_max, so never in our /proc
    let mut cmd = std::process::Command::new("unshare");
    cmd.args([
        "--pid",
        "--fork",
        "--mount-proc",
        "--kill-child",
        "sh",
        "-c",
    ])
    .arg("echo 99999 > /proc/sys/kernel/ns_last_pid && \"$@\"; exit $?")
    .arg("sh")
    .arg(env!("CARGO_BIN_EXE_bgd"))
    .args(["--json", "deploy", "bgd-demo:v2"])
    .current_dir(&t.dir)
    .env_remove("BGD_CONFIG");
    let mut other = watch_command(cmd);
    other.wait_step("readiness", "started");
    let held = t.bgd(&["lock", "status", "--json"]).result();
    assert_eq!(held["holder"]["pid"], 100000, "{held}");
    assert!(
        !std::path::Path::new("/proc/100000").exists(),
        "precondition"
    );
    assert_eq!(held["holder"]["host"].as_str(), Some(this_host().as_str()));

    let r = t.bgd(&["deploy", "bgd-demo:v3"]);
    assert_eq!(r.code, 5, "a live lock was taken over: {r:?}");
    assert!(r.stderr.contains("pid 100000"), "{r:?}");
    assert_eq!(
        t.bgd(&["lock", "release"]).code,
        5,
        "nor released without --force"
    );
    assert_eq!(t.live_version(), "v1");
    drop(other); // kills it, and its namespace with it
}

/// Two runs find the same stale lock at once: one takes it over, the other finds it held by
/// the winner (alive) and exits 5. Never both.
#[test]
fn of_two_runs_taking_over_a_stale_lock_one_wins() {
    let t = TestApp::new("takers");
    t.write(&t.config());
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v1"]).code, 0);
    // the winner holds the lock for a few seconds, through its candidate's slow start
    t.write(&slow_start(&t, "4000"));
    t.plant_lock(&this_host(), 999_999_999, "bgd deploy web:v0");
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| t.bgd(&["deploy", "bgd-demo:v2"]));
        let b = s.spawn(|| t.bgd(&["deploy", "bgd-demo:v3"]));
        (a.join().unwrap(), b.join().unwrap())
    });
    let mut codes = [a.code, b.code];
    codes.sort();
    assert_eq!(codes, [0, 5], "one takes the lock over:\n{a:?}\n{b:?}");
    let (winner, loser) = if a.code == 0 { (&a, &b) } else { (&b, &a) };
    assert!(
        winner.stderr.contains("taking over the deploy lock"),
        "{winner:?}"
    );
    assert!(loser.stderr.contains("holds the deploy lock"), "{loser:?}");
    assert_eq!(t.bgd(&["lock", "status", "--json"]).result()["held"], false);
}

/// A lock directory without its holder (a run killed while taking it): it is held, nobody
/// can say by whom, and `lock release --force` clears it.
#[test]
fn release_force_clears_a_half_written_lock() {
    let t = TestApp::new("halflock");
    t.write(&t.config());
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v1"]).code, 0);
    t.plant_lock_text("");
    let s = t.bgd(&["lock", "status", "--json"]).result();
    assert_eq!(
        (s["held"].as_bool(), s["holder"].is_null()),
        (Some(true), true),
        "{s}"
    );
    let d = t.bgd(&["deploy", "bgd-demo:v2"]);
    assert_eq!(d.code, 5, "{d:?}");
    assert!(
        d.stderr.contains("lock release --force"),
        "says how to clear it: {d:?}"
    );
    assert_eq!(t.bgd(&["lock", "release"]).code, 5);
    let r = t.bgd(&["lock", "release", "--force"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(t.bgd(&["lock", "status", "--json"]).result()["held"], false);
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v2"]).code, 0);
}
