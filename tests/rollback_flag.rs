//! The reload-free rollback: with a live and a parked release both running, the config
//! routes by a flag file and `bgd rollback` moves it (no reload, no worker replaced), under
//! load, with nginx's own file cache turned on by the user, and through a deploy that clears
//! it. A template without the flag rolls back by reload, as before.

mod common;
use common::*;
use std::time::Duration;

/// The nginx worker processes' pids in the container, sorted.
fn workers(t: &TestApp) -> Vec<String> {
    let out = t.lb_sh(r#"for p in /proc/[0-9]*; do c=""; read -r c < "$p/cmdline" 2>/dev/null; case $c in "nginx: worker process"*) echo "${p#/proc/}";; esac; done"#);
    let mut v: Vec<String> = out.lines().map(str::to_string).collect();
    v.sort();
    v
}

/// The rollback flags in bgd's directory for the app.
fn flags(t: &TestApp) -> Vec<String> {
    t.lb_sh(&format!("cd /etc/nginx/bgd/{} && ls", t.app))
        .lines()
        .filter(|l| l.starts_with("flip-"))
        .map(str::to_string)
        .collect()
}

/// bgd's record on the host.
fn record(t: &TestApp) -> serde_json::Value {
    let text = docker(&[
        "exec",
        &t.lb(),
        "cat",
        &format!("/etc/nginx/bgd/{}/state.json", t.app),
    ]);
    serde_json::from_str(&text).expect("state.json")
}

/// `status --json`: exit 0, and nginx's `routes_to` and `flipped`.
fn routing(t: &TestApp) -> (String, bool) {
    let st = t.bgd(&["--json", "status"]);
    assert_eq!(st.code, 0, "{st:?}");
    let nginx = &st.result()["nginx"];
    (
        nginx["routes_to"].as_str().unwrap_or("?").to_string(),
        nginx["flipped"].as_bool().expect("nginx.flipped"),
    )
}

#[test]
fn rollback_moves_the_flag_without_a_reload_under_load() {
    let t = TestApp::new("flag");
    t.write(&t.config());
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v1"]).code, 0);
    // the user's nginx caches file lookups for a minute: bgd's servers must not
    t.lb_sh("printf 'open_file_cache max=1000 inactive=60s;\\nopen_file_cache_valid 60s;\\nopen_file_cache_errors on;\\n' > /etc/nginx/conf.d/zz-user-cache.conf");
    let d = t.bgd(&["--json", "deploy", "bgd-demo:v2"]);
    assert_eq!(d.code, 0, "{d:?}");
    // the preview config routes by the flag: the deploy's switch raised it, no second reload
    assert_eq!(d.result()["reloaded"], false, "{d:?}");
    assert!(
        t.active_config().contains("open_file_cache off;"),
        "the config routes by the flag"
    );
    // the deploy raised the preview config's flag: the record says so, in a schema a bgd
    // that knows no flag refuses
    assert_eq!(routing(&t), ("green".to_string(), true));
    assert_eq!(flags(&t).len(), 1);
    let rec = record(&t);
    assert_eq!(rec["schema"], 4, "{rec}");
    assert_eq!(rec["flipped_at"], rec["generation"], "{rec}");
    assert_eq!(rec["live"]["color"], "green", "{rec}");
    let human = t.bgd(&["status"]);
    assert!(
        human.stdout.contains("routes to green") && human.stdout.contains("by the rollback flag"),
        "{human:?}"
    );

    let load = Load::start(t.live_port, &t.dir);
    load.expect("green");
    let before = workers(&t);
    assert!(!before.is_empty());

    // back to blue: the flag is lowered, no worker replaced
    let r = switch_under_load(&t, &load, &["rollback"]);
    assert_eq!(r["live"]["color"], "blue", "{r}");
    assert_eq!(r["reloaded"], false, "{r}");
    assert_eq!(r["switch_window"]["failed"], 0, "{r}");
    assert_eq!(workers(&t), before, "nginx reloaded");
    assert_eq!(t.live_version(), "v1");
    assert_eq!(routing(&t), ("blue".to_string(), false));
    assert!(flags(&t).is_empty(), "{:?}", flags(&t));
    let rec = record(&t);
    assert_eq!(rec["schema"], 2, "{rec}");
    assert!(rec.get("flipped_at").is_none(), "{rec}");
    assert_eq!(rec["live"]["color"], "blue", "{rec}");
    // the file cache did not keep a worker on the old answer
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..20 {
        assert_eq!(t.live_version(), "v1");
    }

    // and forward again: the flag is raised (its marker says the idle release was live, so
    // the flag keeps moving)
    let r = switch_under_load(&t, &load, &["rollback"]);
    assert_eq!(r["live"]["color"], "green", "{r}");
    assert_eq!(r["reloaded"], false, "{r}");
    assert_eq!(workers(&t), before, "nginx reloaded");
    assert_eq!(routing(&t), ("green".to_string(), true));
    assert_eq!(t.live_version(), "v2");
    let rec = record(&t);
    assert_eq!(rec["schema"], 4, "{rec}");

    // back again, then a deploy: it renders what the record says (blue live, v3 into green),
    // removes the old flag once the old workers are gone, and raises its own config's
    let r = switch_under_load(&t, &load, &["rollback"]);
    assert_eq!(r["live"]["color"], "blue", "{r}");
    let old_flags = flags(&t);
    let d = switch_under_load(&t, &load, &["deploy", "bgd-demo:v3"]);
    assert_eq!(d["live"]["color"], "green", "{d}");
    assert_eq!(d["parked"]["image"], "bgd-demo:v1", "{d}");
    assert_eq!(d["reloaded"], false, "{d}");
    let new_flags = flags(&t);
    assert_eq!(new_flags.len(), 1, "{new_flags:?}");
    assert!(
        !old_flags.contains(&new_flags[0]),
        "{old_flags:?} {new_flags:?}"
    );
    assert_eq!(routing(&t), ("green".to_string(), true));
    // the new config's flag works the same way
    let r = switch_under_load(&t, &load, &["rollback"]);
    assert_eq!(r["live"]["image"], "bgd-demo:v1", "{r}");
    assert_eq!(r["reloaded"], false, "{r}");

    std::thread::sleep(Duration::from_millis(300));
    let summary = load.finish();
    assert_eq!(summary["failures"], 0, "failed requests: {summary:#}");
    assert!(summary["requests"].as_u64().unwrap() > 500, "{summary}");
    assert_eq!(t.live_version(), "v1");
    // the history has every rollback, as ever
    let entries = t.history();
    let rollbacks = entries
        .iter()
        .filter(|e| e["command"] == "rollback" && e["outcome"] == "ok")
        .count();
    assert_eq!(rollbacks, 4, "{entries:?}");

    // the history cannot be written: the flag moves all the same, and the run says so and
    // what to do (exit 7); `bgd repair` mends the record from what nginx routes
    let blocker = format!("/etc/nginx/bgd/{}/history.jsonl.bgd-tmp", t.app);
    docker(&["exec", &t.lb(), "mkdir", &blocker]);
    let serving = workers(&t);
    let r = t.bgd(&["rollback"]);
    assert_eq!(r.code, 7, "{r:?}");
    assert!(
        r.stderr
            .contains("could not be written (cannot write the record")
            && r.stderr.contains("bgd repair"),
        "{r:?}"
    );
    assert!(!r.stderr.contains("internal"), "{r:?}");
    assert_eq!(t.live_version(), "v3");
    assert_eq!(workers(&t), serving, "nginx reloaded");
    let gone = t.lb_sh(&format!(
        "ls -la {blocker} 2>&1; rmdir {blocker} 2>&1 && echo gone"
    ));
    assert!(gone.ends_with("gone\n"), "{gone}");
    let r = t.bgd(&["repair"]);
    assert_eq!(r.code, 0, "{r:?}");
    // the deploy's flag, lowered by a rollback, raised again by this one
    assert_eq!(routing(&t), ("green".to_string(), true));
    assert_eq!(record(&t)["live"]["image"], "bgd-demo:v3");
}

/// A custom template that does not route by the flag: the rollback reloads, as before.
#[test]
fn a_template_without_the_flag_rolls_back_by_reload() {
    let t = TestApp::new("noflag");
    let builtin = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/nginx.conf.tera"),
    )
    .unwrap();
    let without = builtin
        .replace("{%- if flip %}", "{%- if false %}")
        .replace("{%- elif flip %}", "{%- elif false %}")
        .replace("{% if flip %}", "{% if false %}");
    assert!(!without.contains("if flip"));
    std::fs::write(t.dir.join("mine.conf.tera"), without).unwrap();
    t.write(&t.config().set("lb.template", "mine.conf.tera"));
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v1"]).code, 0);
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v2"]).code, 0);
    let before = workers(&t);
    let r = t.bgd(&["--json", "rollback"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.result()["reloaded"], true, "{r:?}");
    assert_eq!(r.result()["live"]["color"], "blue", "{r:?}");
    assert_ne!(workers(&t), before, "a reload replaces the workers");
    assert_eq!(t.live_version(), "v1");
    assert_eq!(routing(&t), ("blue".to_string(), false));
}

/// A flip that `lb.url` cannot confirm is put back by the exec that made it, still holding the
/// lock (no second exec, no moment without the lock): the record from before it, the failed
/// rollback in the history, no reload.
#[test]
fn an_unconfirmable_flip_is_put_back_by_its_own_exec() {
    let t = TestApp::new("flipundo");
    t.write(&t.config());
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v1"]).code, 0);
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v2"]).code, 0);
    let before = workers(&t);
    // as the deploy left them: its switch raised the preview config's flag
    let (flags_before, routing_before) = (flags(&t), routing(&t));
    let flipped_before = record(&t).get("flipped_at").cloned();
    assert_eq!(routing_before, ("green".to_string(), true));
    // lb.url answers nothing: neither the flip nor the flag put back can be confirmed
    let closed = claim_port();
    t.write(
        &t.config()
            .set("lb.url", format!("http://127.0.0.1:{}", closed.port)),
    );
    let r = t.bgd(&["rollback"]);
    assert_eq!(r.code, 7, "{r:?}");
    assert!(
        r.stderr
            .contains("the previous routing was put back, but it could not be confirmed either"),
        "{r:?}"
    );
    assert_eq!(workers(&t), before, "nginx reloaded");
    assert_eq!(flags(&t), flags_before);
    assert_eq!(t.live_version(), "v2");
    t.write(&t.config());
    assert_eq!(routing(&t), routing_before);
    let rec = record(&t);
    assert_eq!(rec["live"]["color"], "green", "{rec}");
    assert_eq!(rec.get("flipped_at").cloned(), flipped_before, "{rec}");
    let last = t.history().last().cloned().unwrap_or_default();
    assert_eq!(last["command"], "rollback", "{last}");
    assert_ne!(last["outcome"], "ok", "{last}");
    assert_eq!(
        last["exit_code"], 7,
        "the history says what the run said: {last}"
    );
    // the lock went with the exec: the next rollback goes through, by the flag
    let r = t.bgd(&["--json", "rollback"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.result()["reloaded"], false, "{r:?}");
    assert_eq!(t.live_version(), "v1");
}
