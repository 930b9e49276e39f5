//! Any nginx image: bgd runs the image as it was built (no command of its own) and finds
//! nginx wherever it is: the official layout (CMD), nginx as the ENTRYPOINT, and nginx at
//! another path, off PATH. Each deploys, switches under load without a failure, rolls back.

mod common;

use common::*;

/// What the container and its image say they run: (entrypoint, cmd) as JSON.
fn runs(what: &str, kind: &str) -> (String, String) {
    let f = |field: &str| {
        docker(&[
            kind,
            "inspect",
            "-f",
            &format!("{{{{json .Config.{field}}}}}"),
            what,
        ])
        .trim()
        .to_string()
    };
    (f("Entrypoint"), f("Cmd"))
}

fn deploys_switches_and_rolls_back_with(image: &str, tag: &str) {
    let t = TestApp::new(tag);
    t.write(&t.config().set("lb.image", image));
    let d = t.bgd(&["deploy", "bgd-demo:v1"]);
    assert_eq!(d.code, 0, "{image}: {d:?}");
    assert_eq!(t.live_version(), "v1");
    // the container runs what the image says, nothing of bgd's
    assert_eq!(
        runs(&t.lb(), "container"),
        runs(image, "image"),
        "{image}: bgd changed what the image runs"
    );
    let load = Load::start(t.live_port, &t.dir);
    load.expect("blue");
    let d = switch_under_load(&t, &load, &["deploy", "bgd-demo:v2"]);
    assert_eq!(d["live"]["color"], "green", "{image}: {d}");
    let rb = switch_under_load(&t, &load, &["rollback"]);
    assert_eq!(rb["live"]["color"], "blue", "{image}: {rb}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let summary = load.finish();
    assert_eq!(summary["failures"], 0, "{image}: {summary:#}");
    assert_eq!(t.live_version(), "v1");
    let st = t.bgd(&["--json", "status"]);
    assert_eq!(st.code, 0, "{image}: {st:?}");
    assert!(
        st.result()["nginx"]["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.")),
        "{image}: {st:?}"
    );
}

#[test]
fn an_image_whose_entrypoint_is_nginx() {
    ensure_images();
    let (entrypoint, _) = runs("bgd-nginx:entrypoint", "image");
    assert!(entrypoint.contains("\"nginx\""), "{entrypoint}");
    deploys_switches_and_rolls_back_with("bgd-nginx:entrypoint", "lay-ep");
}

#[test]
fn an_image_with_nginx_off_path() {
    ensure_images();
    let (entrypoint, _) = runs("bgd-nginx:elsewhere", "image");
    assert!(entrypoint.contains("/opt/nginx/sbin/nginx"), "{entrypoint}");
    deploys_switches_and_rolls_back_with("bgd-nginx:elsewhere", "lay-else");
}

#[test]
fn the_official_layout_keeps_its_command() {
    ensure_images();
    deploys_switches_and_rolls_back_with(NGINX_IMAGE, "lay-off");
}

#[test]
fn a_container_without_nginx_is_named_as_such() {
    ensure_images();
    let t = TestApp::new("lay-none");
    // a running container of the user's, with sh but no nginx anywhere
    docker(&[
        "run",
        "-d",
        "--name",
        &t.lb(),
        "--label",
        &format!("bgd.app={}", t.app),
        "bgd-registry:test",
        "sh",
        "-c",
        "sleep 600",
    ]);
    t.write(&t.config().unset("lb.image"));
    let d = t.bgd(&["deploy", "bgd-demo:v1"]);
    assert_eq!(d.code, 6, "{d:?}");
    assert!(d.stderr.contains("no nginx bgd can find"), "{d:?}");
    assert!(t.containers("blue").is_empty(), "nothing was started");
}
