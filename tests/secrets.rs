//! Secrets by name tokens and value shapes, in env and in commands: never in output, the
//! plan, JSON or the history; and ordinary values are not mistaken for secrets.

mod common;
use common::*;
use serde_json::json;

const PWD: &str = "mysql-pwd-4411";
const SK: &str = "sk_live_9932";
const DSN_PW: &str = "dsn-pw-5521";
const URL_PW: &str = "url-pw-7723";
const FLAG: &str = "flag-secret-3310";
const MIGRATE_TOKEN: &str = "migrate-token-8842";
const ROTATED: &str = "rotated-secret-6620";

#[test]
fn secrets_by_token_and_shape_never_show_and_plain_values_do() {
    let t = TestApp::new("sec");
    let cfg = t
        .config()
        .set(
            "container.env",
            json!({
                // a plain value that happens to be the app's name: not a secret
                "AUTHOR": t.app,
                "KEYBOARD_LAYOUT": "us",
                "MYSQL_PWD": PWD,
                "STRIPE_SK": SK,
                "DATABASE_DSN_PLAIN": format!("shop:{DSN_PW}@tcp(db:3306)/shop"),
                "CALLBACK": format!("https://api.example.com/hook?user=a&password={URL_PW}"),
            }),
        )
        .set(
            "container.command",
            json!(["serve", format!("--admin-password={FLAG}")]),
        );
    t.write(&cfg);
    let mut outputs = Vec::new();
    let plan = t.bgd(&["deploy", "--plan", "bgd-demo:v1"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    assert!(
        plan.stdout.contains("AUTHOR=") && plan.stdout.contains(&t.app),
        "{plan:?}"
    );
    assert!(plan.stdout.contains("KEYBOARD_LAYOUT=us"), "{plan:?}");
    assert!(plan.stdout.contains("MYSQL_PWD=<secret>"), "{plan:?}");
    assert!(
        plan.stdout.contains("--admin-password=<secret>"),
        "the command's secret: {plan:?}"
    );
    outputs.push(format!("{plan:?}"));
    outputs.push(format!(
        "{:?}",
        t.bgd(&["--json", "deploy", "--plan", "bgd-demo:v1"])
    ));
    let d = t.bgd(&["deploy", "bgd-demo:v1", "-v"]);
    assert_eq!(d.code, 0, "{d:?}");
    outputs.push(format!("{d:?}"));

    // a migration that fails, its command carrying a token: not in the output, not in history
    t.write(
        &cfg.set(
            "hooks.migrate",
            json!({"command": ["migrate", "--token", MIGRATE_TOKEN], "timeout": "30s"}),
        )
        .set("container.env.DEMO_MIGRATE_EXIT", "3"),
    );
    let m = t.bgd(&["deploy", "bgd-demo:v2"]);
    assert_eq!(m.code, 3, "{m:?}");
    assert!(m.stderr.contains("migrate --token <redacted>"), "{m:?}");
    outputs.push(format!("{m:?}"));
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["history"],
        &["history", "--json"],
    ] {
        let r = t.bgd(args);
        assert_eq!(r.code, 0, "{args:?}: {r:?}");
        outputs.push(format!("{r:?}"));
    }
    let status = t.bgd(&["status"]);
    assert!(
        status.stdout.contains(&format!("app {}", t.app)),
        "the app's name is not masked: {status:?}"
    );
    // the password rotated in bgd.yaml: the drift status shows masks the new one and the
    // one the running container still has, which bgd.yaml no longer names
    t.write(&t.config().set(
        "container.command",
        json!(["serve", format!("--admin-password={ROTATED}")]),
    ));
    let drift = t.bgd(&["status"]);
    assert!(
        drift
            .stdout
            .contains(r#"command ["serve", "--admin-password=<secret>"]"#),
        "{drift:?}"
    );
    outputs.push(format!("{drift:?}"));
    outputs.push(t.lb_sh(&format!("cat /etc/nginx/bgd/{}/*", t.app)));
    for o in &outputs {
        for secret in [PWD, SK, DSN_PW, URL_PW, FLAG, MIGRATE_TOKEN, ROTATED] {
            assert!(!o.contains(secret), "{secret} leaked in:\n{o}");
        }
    }
}
