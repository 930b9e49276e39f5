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
