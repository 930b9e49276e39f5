//! Many apps behind one nginx: each app's `lb.hosts` names its live server, its preview has a
//! name of its own, and one app's deploy, rollback, rejected candidate or concurrent deploy
//! never changes another's routing — 0 failed requests for the other app under load.

mod common;

use common::*;
use serde_json::json;

/// The two apps' configs: `owner` creates the shared nginx; both publish its ports and
/// reach it through them.
fn shared_config(t: &TestApp, owner: &TestApp, host: &str) -> Cfg {
    t.config()
        .set("lb.container", owner.lb())
        .set("lb.hosts", json!([host]))
        .set(
            "lb.publish",
            json!([
                format!("127.0.0.1:{}:80", owner.live_port),
                format!("127.0.0.1:{}:8081", owner.preview_port)
            ]),
        )
        .set("lb.url", format!("http://127.0.0.1:{}", owner.live_port))
        .set(
            "lb.preview_url",
            format!("http://127.0.0.1:{}", owner.preview_port),
        )
}

fn version_for(port: u16, host: &str) -> String {
    http_get_host(port, "/", host)
        .and_then(|r| r.header("X-App-Version").map(str::to_string))
        .unwrap_or_else(|| "none".into())
}

#[test]
fn apps_sharing_one_nginx_never_touch_each_others_routing() {
    // b first: a (the nginx's owner) is dropped first, so b's network can go after it
    let b = TestApp::new("shb");
    let a = TestApp::new("sha");
    a.write(&shared_config(&a, &a, "a.test"));
    b.write(&shared_config(&b, &a, "b.test"));
    let port = a.live_port;

    assert_eq!(a.bgd(&["deploy", "bgd-demo:v1"]).code, 0);
    let d = b.bgd(&["deploy", "bgd-demo:v2"]);
    assert_eq!(d.code, 0, "{d:?}");
    assert_eq!(version_for(port, "a.test"), "v1");
    assert_eq!(version_for(port, "b.test"), "v2");
    // each preview answers by its own name
    assert_eq!(
        http_get_host(a.preview_port, "/__bgd", "preview.b.test").map(|r| r.status),
        Some(204)
    );
    // status names the neighbour
    let st = a.bgd(&["--json", "status"]);
    assert_eq!(st.code, 0, "{st:?}");
    let r = st.result();
    assert_eq!(r["nginx"]["other_apps"], json!([b.app.clone()]), "{r}");

    // b under load while a deploys, rolls back, has a candidate rejected and one discarded
    let load = Load::start_with(port, &b.dir, "X-App-Version", &["--host", "b.test"]);
    load.expect("v2");
    for args in [
        vec!["deploy", "bgd-demo:v3"],
        vec!["rollback"],
        vec!["deploy", "--no-switch", "bgd-demo:v4"],
        vec!["discard"],
    ] {
        let r = a.bgd(&args);
        assert_eq!(r.code, 0, "{args:?}: {r:?}");
    }
    let rejected = a.bgd(&["deploy", "bgd-demo:unhealthy"]);
    assert_eq!(rejected.code, 3, "{rejected:?}");
    // a config nginx -t refuses (a broken custom template) changes nothing either
    let template = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/nginx.conf.tera"),
    )
    .unwrap()
        + "\nbgd_no_such_directive on;\n";
    std::fs::write(a.dir.join("broken.tera"), template).unwrap();
    a.write(&shared_config(&a, &a, "a.test").set("lb.template", "broken.tera"));
    let broken = a.bgd(&["deploy", "bgd-demo:v3"]);
    assert_eq!(broken.code, 2, "{broken:?}");
    assert!(
        broken.stderr.contains("bgd_no_such_directive"),
        "{broken:?}"
    );
    a.write(&shared_config(&a, &a, "a.test"));
    assert_eq!(version_for(port, "a.test"), "v1");
    // both deploy at once: each holds its own lock, their reloads take turns
    load.expect("any");
    let (ra, rb) = std::thread::scope(|s| {
        let ha = s.spawn(|| a.bgd(&["deploy", "bgd-demo:v4"]));
        let hb = s.spawn(|| b.bgd(&["deploy", "bgd-demo:v3"]));
        (ha.join().unwrap(), hb.join().unwrap())
    });
    assert_eq!(ra.code, 0, "{ra:?}");
    assert_eq!(rb.code, 0, "{rb:?}");
    load.expect("v3");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let summary = load.finish();
    assert_eq!(summary["failures"], 0, "{summary:#}");
    assert_eq!(version_for(port, "a.test"), "v4");
    assert_eq!(version_for(port, "b.test"), "v3");

    // a third app claiming b's name is refused before anything changes
    let c_dir = a.dir.join("c");
    std::fs::create_dir_all(&c_dir).unwrap();
    let c = shared_config(&a, &a, "b.test")
        .set("app", format!("{}-c", a.app))
        .set("network", format!("{}-net", a.app));
    std::fs::write(c_dir.join("bgd.yaml"), c.yaml()).unwrap();
    let clash = bgd_in(&c_dir, &["deploy", "bgd-demo:v1"]);
    assert_eq!(clash.code, 2, "{clash:?}");
    assert!(
        clash
            .stderr
            .contains(&format!("app {}: it answers b.test on port 80", b.app)),
        "{clash:?}"
    );
    assert_eq!(version_for(port, "b.test"), "v3");
}
