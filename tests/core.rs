//! The core pipeline against the real Docker daemon and a real nginx, through the real binary.

mod common;
use common::*;
use serde_json::json;

/// A smoke probe every demo-app version passes.
fn smoke_home() -> serde_json::Value {
    json!([{"name": "home", "path": "/", "expect": {"status": [200], "body_contains": "demo-app version="}}])
}

#[test]
fn deploy_v1_v2_status_rollback() {
    let t = TestApp::new("core");
    t.write(&t.config().set("smoke", smoke_home()));

    // status on a fresh host: nothing live
    let fresh = t.bgd(&["status", "--json"]);
    assert_eq!(fresh.code, 0, "{fresh:?}");
    let r = fresh.result();
    assert!(r["live"].is_null() && r["idle"].is_null(), "{r}");
    assert_eq!(r["app"], t.app.as_str());

    let v1 = t.bgd(&["deploy", "bgd-demo:v1", "--json"]);
    assert_eq!(v1.code, 0, "{v1:?}");
    let r = v1.result();
    assert_eq!(r["ok"], true);
    assert_eq!(r["live"]["color"], "blue");
    assert_eq!(t.live_version(), "v1");
    let reply = t.live().expect("live listener answers");
    assert_eq!(reply.header("X-Bgd-Color"), Some("blue"));
    assert!(reply.header("X-Bgd-Generation").is_some());

    let v2 = t.bgd(&["deploy", "bgd-demo:v2"]);
    assert_eq!(v2.code, 0, "{v2:?}");
    assert_eq!(t.live_version(), "v2");
    assert_eq!(t.live().unwrap().header("X-Bgd-Color"), Some("green"));

    let status = t.bgd(&["status", "--json"]);
    assert_eq!(status.code, 0, "{status:?}");
    let s = status.result();
    assert_eq!(s["live"]["color"], "green", "{s}");
    assert_eq!(s["live"]["image"], "bgd-demo:v2");
    assert_eq!(s["idle"]["color"], "blue");
    assert_eq!(s["idle"]["image"], "bgd-demo:v1");
    assert_eq!(s["idle"]["role"], "parked");
    assert_eq!(s["idle"]["state"], "running");
    assert_eq!(s["nginx"]["routes_to"], "green");
    assert_eq!(s["nginx"]["container"], t.lb().as_str());
    let live_containers = s["live"]["containers"].as_array().unwrap();
    assert_eq!(live_containers.len(), 2);
    for c in live_containers {
        assert_eq!(c["state"], "running", "{c}");
        assert_eq!(c["health"], "healthy", "{c}");
    }
    assert_eq!(
        live_containers[0]["name"],
        format!("{}-green-1", t.app).as_str()
    );

    // human status names both colors
    let human = t.bgd(&["status"]);
    assert!(
        human.stdout.contains("live") && human.stdout.contains("parked"),
        "{human:?}"
    );

    let back = t.bgd(&["rollback"]);
    assert_eq!(back.code, 0, "{back:?}");
    assert_eq!(t.live_version(), "v1");
    assert_eq!(t.live().unwrap().header("X-Bgd-Color"), Some("blue"));
    let s = t.bgd(&["status", "--json"]).result();
    assert_eq!(s["live"]["image"], "bgd-demo:v1");
    assert_eq!(s["idle"]["image"], "bgd-demo:v2");
    assert_eq!(s["idle"]["role"], "parked");

    // history: what the host recorded, in order
    let h = t.bgd(&["history", "--json"]).result();
    let entries = h["entries"].as_array().unwrap();
    let kinds: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["command"].as_str().unwrap(),
                e["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [("deploy", "ok"), ("deploy", "ok"), ("rollback", "ok")]
    );

    // labels per docs/host.md
    let labels = docker(&[
        "inspect",
        "-f",
        "{{json .Config.Labels}}",
        &format!("{}-blue-1", t.app),
    ]);
    let labels: serde_json::Value = serde_json::from_str(labels.trim()).unwrap();
    assert_eq!(labels["bgd.managed"], "true");
    assert_eq!(labels["bgd.app"], t.app.as_str());
    assert_eq!(labels["bgd.color"], "blue");
    assert_eq!(labels["bgd.replica"], "1");
    assert!(labels["bgd.release"].is_string());

    // a second rollback goes back to v2: the parked release is always the other one
    let again = t.bgd(&["rollback", "-q"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(t.live_version(), "v2");

    // deploying v3 replaces the parked v1 in blue; v2 becomes the parked release
    let v3 = t.bgd(&["deploy", "bgd-demo:v3"]);
    assert_eq!(v3.code, 0, "{v3:?}");
    assert_eq!(t.live_version(), "v3");
    let image = docker(&[
        "inspect",
        "-f",
        "{{.Config.Image}}",
        &format!("{}-blue-1", t.app),
    ]);
    assert_eq!(image.trim(), "bgd-demo:v3");
    let s = t.bgd(&["status", "--json"]).result();
    assert_eq!(s["idle"]["image"], "bgd-demo:v2");
    assert_eq!(t.containers("blue").len() + t.containers("green").len(), 4);
}

const SECRET: &str = "planted-s3cret-7731";
/// A secret given in `env` under a secret-looking name.
const ENV_SECRET: &str = "env-pl4nted-9911";

#[test]
fn container_settings_applied_and_secrets_never_shown() {
    let t = TestApp::new("spec");
    std::fs::write(t.dir.join(".env"), format!("SECRET_TOKEN={SECRET}\n")).unwrap();
    let config = t
        .config()
        .set("container.stop_timeout", "7s")
        .set("container.command", json!(["serve"]))
        .set(
            "container.env",
            json!({"GREETING": "hello", "DEMO_ECHO_VAR": "SECRET_TOKEN,DB_PASSWORD", "DB_PASSWORD": ENV_SECRET}),
        )
        .set("container.env_file", ".env")
        .set("container.volumes", json!([format!("{}-data:/data", t.app)]))
        .set("container.labels", json!({"team": "payments"}))
        .set("readiness.deadline", "3s");
    t.write(&config);
    let mut outputs = Vec::new();
    let v1 = t.bgd(&["deploy", "bgd-demo:v1", "-v"]);
    assert_eq!(v1.code, 0, "{v1:?}");
    outputs.push(format!("{v1:?}"));

    let c = format!("{}-blue-1", t.app);
    let inspect = docker(&["inspect", &c]);
    let v: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    let v = &v[0];
    let env: Vec<&str> = v["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(env.contains(&"GREETING=hello"), "{env:?}");
    assert!(
        env.contains(&format!("SECRET_TOKEN={SECRET}").as_str()),
        "the app gets its secret"
    );
    assert_eq!(v["Config"]["Cmd"], serde_json::json!(["serve"]));
    assert_eq!(v["Config"]["Labels"]["team"], "payments");
    assert_eq!(v["Config"]["StopTimeout"], 7);
    assert_eq!(v["HostConfig"]["RestartPolicy"]["Name"], "unless-stopped");
    assert_eq!(
        v["HostConfig"]["Binds"],
        serde_json::json!([format!("{}-data:/data", t.app)])
    );
    assert!(
        !v["Config"]["Labels"].to_string().contains(SECRET),
        "secret in labels"
    );

    // a failing run whose candidate prints the secret in its log, which bgd quotes
    let bad = t.bgd(&["deploy", "bgd-demo:unhealthy", "--json"]);
    assert_eq!(bad.code, 3, "{bad:?}");
    outputs.push(format!("{bad:?}"));
    let bad_human = t.bgd(&["deploy", "bgd-demo:unhealthy", "-v"]);
    assert_eq!(bad_human.code, 3, "{bad_human:?}");
    assert!(
        bad_human.stderr.contains("SECRET_TOKEN=<redacted>"),
        "the log line is shown, redacted: {bad_human:?}"
    );
    assert!(
        bad_human.stderr.contains("DB_PASSWORD=<redacted>"),
        "an env value with a secret name is redacted too: {bad_human:?}"
    );
    outputs.push(format!("{bad_human:?}"));
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["history"],
        &["history", "--json"],
        &["render"],
    ] {
        let r = t.bgd(args);
        assert_eq!(r.code, 0, "{args:?}: {r:?}");
        outputs.push(format!("{r:?}"));
    }
    outputs.push(t.lb_sh(&format!(
        "cat /etc/nginx/bgd/{}/* /etc/nginx/conf.d/*",
        t.app
    )));
    for o in &outputs {
        assert!(!o.contains(SECRET), "secret leaked in:\n{o}");
        assert!(!o.contains(ENV_SECRET), "env secret leaked in:\n{o}");
    }
    let _ = docker(&["volume", "rm", &format!("{}-data", t.app)]);
}

/// A user-provided nginx container (not created by bgd) laid out like the official image, its
/// stock default.conf on port 80: bgd writes only its own files, so it refuses (exit 2) and
/// names the file that would answer requests meant for the app, changing nothing; once the
/// user removes it, bgd uses the container, and requests for "localhost" reach the app.
#[test]
fn an_official_layout_nginx_of_the_users_is_used_and_left_alone() {
    let t = TestApp::new("byo");
    let run = std::process::Command::new("docker")
        .args([
            "run",
            "-d",
            "--name",
            &t.lb(),
            "-p",
            &format!("127.0.0.1:{}:80", t.live_port),
            "-p",
            &format!("127.0.0.1:{}:8081", t.preview_port),
            NGINX_IMAGE,
        ])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let welcome = || {
        t.live()
            .is_some_and(|r| r.body.contains("Welcome to nginx"))
    };
    let up = (0..50).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        welcome()
    });
    assert!(up, "the stock server answers before bgd deploys");
    let default_conf = || docker(&["exec", &t.lb(), "cat", "/etc/nginx/conf.d/default.conf"]);
    let stock = default_conf();
    t.write(&t.config().unset("lb.image"));
    let r = t.bgd(&["deploy", "bgd-demo:v1"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("/etc/nginx/conf.d/default.conf")
            && r.stderr.contains("Nothing was changed"),
        "names the file: {r:?}"
    );
    assert_eq!(default_conf(), stock, "the user's file is untouched");
    assert!(welcome(), "and still serves");
    assert!(t.containers("blue").is_empty());

    // the user's stock server goes; a virtual host of theirs on the same port stays beside bgd
    docker(&["exec", &t.lb(), "rm", "/etc/nginx/conf.d/default.conf"]);
    t.lb_sh("printf 'server { listen 80; server_name shop.example.com; return 200 \"shop\\\\n\"; }\\n' > /etc/nginx/conf.d/shop.conf");
    let r = t.bgd(&["deploy", "bgd-demo:v1"]);
    assert_eq!(r.code, 0, "{r:?}");
    let shop = http_get_host(t.live_port, "/", "shop.example.com").unwrap();
    assert_eq!(shop.body, "shop\n", "the user's virtual host still answers");
    let reply = t.live().unwrap();
    assert_eq!(
        reply.header("X-App-Version"),
        Some("v1"),
        "Host: localhost reaches the app: {}",
        reply.body
    );
}

#[test]
fn failing_health_is_rejected_and_v1_keeps_serving() {
    let t = TestApp::new("health");
    t.write(&t.config().set("readiness.deadline", "3s"));
    let v1 = t.bgd(&["deploy", "bgd-demo:v1"]);
    assert_eq!(v1.code, 0, "{v1:?}");
    let before = t.active_config();

    let bad = t.bgd(&["deploy", "bgd-demo:unhealthy"]);
    assert_eq!(bad.code, 3, "{bad:?}");
    assert!(bad.stderr.contains("readiness"), "{bad:?}");
    assert!(bad.stderr.contains("500"), "says what came back: {bad:?}");
    assert_eq!(t.live_version(), "v1");
    assert!(
        t.containers("green").is_empty(),
        "candidate left: {:?}",
        t.containers("green")
    );
    assert_eq!(t.containers("blue").len(), 2);
    // live routing in the active config is unchanged (only the generation moved on)
    let live_before = TestApp::live_servers(&before);
    assert_eq!(live_before.len(), 2, "{before}");
    assert_eq!(live_before, TestApp::live_servers(&t.active_config()));

    let s = t.bgd(&["status", "--json"]).result();
    assert_eq!(s["live"]["image"], "bgd-demo:v1");
    assert!(s["idle"].is_null(), "{s}");
    let h = t.bgd(&["history", "--json"]).result();
    let last = h["entries"].as_array().unwrap().last().cloned().unwrap();
    assert_eq!(last["outcome"], "rejected");
    assert_eq!(last["exit_code"], 3);

    // and the next deploy works without a manual step
    let v2 = t.bgd(&["deploy", "bgd-demo:v2"]);
    assert_eq!(v2.code, 0, "{v2:?}");
    assert_eq!(t.live_version(), "v2");
}

#[test]
fn smoke_mismatch_is_rejected_with_what_came_back() {
    let t = TestApp::new("smoke");
    let smoke = json!([{"name": "says-v1", "path": "/", "expect": {"status": [200], "body_contains": "version=v1"}}]);
    t.write(&t.config().set("smoke", smoke));
    let v1 = t.bgd(&["deploy", "bgd-demo:v1"]);
    assert_eq!(v1.code, 0, "{v1:?}");
    let v2 = t.bgd(&["deploy", "bgd-demo:v2", "--json"]);
    assert_eq!(v2.code, 3, "{v2:?}");
    let r = v2.result();
    assert_eq!(r["ok"], false);
    assert_eq!(r["exit_code"], 3);
    let msg = r["error"].as_str().unwrap();
    assert!(msg.contains("says-v1"), "names the probe: {msg}");
    assert!(msg.contains("version=v1"), "says what was expected: {msg}");
    assert!(msg.contains("version=v2"), "says what came back: {msg}");
    assert_eq!(t.live_version(), "v1");
    assert!(t.containers("green").is_empty());
}

#[test]
fn missing_image_exits_6_and_names_it() {
    let t = TestApp::new("noimg");
    t.write(&t.config());
    let r = t.bgd(&["deploy", "bgd-demo:does-not-exist"]);
    assert_eq!(r.code, 6, "{r:?}");
    assert!(r.stderr.contains("bgd-demo:does-not-exist"), "{r:?}");
    assert!(t.containers("blue").is_empty());
}

#[test]
fn broken_custom_template_leaves_nginx_untouched() {
    let t = TestApp::new("tmpl");
    t.write(&t.config());
    let v1 = t.bgd(&["deploy", "bgd-demo:v1"]);
    assert_eq!(v1.code, 0, "{v1:?}");
    let before = t.active_config();
    assert!(!before.is_empty());

    // renders fine with tera, but nginx -t rejects it
    std::fs::write(
        t.dir.join("broken.conf.tera"),
        "server {\n    listen {{ listen }};\n    this_is_not_a_directive on;\n}\n",
    )
    .unwrap();
    t.write(&t.config().set("lb.template", "broken.conf.tera"));
    let r = t.bgd(&["deploy", "bgd-demo:v2"]);
    assert_ne!(r.code, 0, "{r:?}");
    assert_eq!(r.code, 2, "a broken template is a config error: {r:?}");
    assert!(
        r.stderr.contains("this_is_not_a_directive"),
        "shows nginx's complaint: {r:?}"
    );
    assert_eq!(t.active_config(), before, "nginx config changed");
    assert_eq!(t.live_version(), "v1");
    assert!(t.containers("green").is_empty());

    // a template tera cannot parse fails validate, touching nothing
    std::fs::write(t.dir.join("broken.conf.tera"), "{% if %}").unwrap();
    let v = t.bgd(&["validate"]);
    assert_eq!(v.code, 2, "{v:?}");
    assert!(v.stderr.contains("broken.conf.tera"), "{v:?}");
}

/// Replacing the nginx container bgd created (an nginx upgrade, say) keeps bgd's record: the
/// live and parked releases and the history live in a volume, so the next deploy keeps the
/// live release as the one to roll back to.
#[test]
fn the_record_survives_replacing_the_nginx_container() {
    let t = TestApp::new("lbnew");
    t.write(&t.config());
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v1"]).code, 0);
    assert_eq!(t.bgd(&["deploy", "bgd-demo:v2"]).code, 0);
    docker(&["rm", "-f", &t.lb()]);

    // no nginx: nothing to roll back through (the record is read through the container)
    assert_eq!(t.bgd(&["rollback"]).code, 2);

    let v3 = t.bgd(&["deploy", "bgd-demo:v3"]);
    assert_eq!(v3.code, 0, "{v3:?}");
    assert!(v3.stderr.contains("create the nginx container"), "{v3:?}");
    assert_eq!(t.live_version(), "v3");
    // v3 replaced the parked v1; v2, live before nginx was replaced, is parked
    let rb = t.bgd(&["--json", "rollback"]);
    assert_eq!(rb.code, 0, "{rb:?}");
    assert_eq!(rb.result()["live"]["image"], "bgd-demo:v2");
    assert_eq!(t.live_version(), "v2");
    let h = t.bgd(&["history", "--json"]).result();
    let images: Vec<&str> = h["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["image"].as_str())
        .collect();
    assert_eq!(
        images,
        ["bgd-demo:v1", "bgd-demo:v2", "bgd-demo:v3", "bgd-demo:v2"],
        "{h}"
    );
}
