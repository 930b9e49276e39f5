//! Config errors and examples, through the real binary where the user would see them.

mod common;
use common::bgd_in;
use std::path::{Path, PathBuf};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir()
        .join("bgd-tests")
        .join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const VALID: &str = "app: web\ncontainer:\n  port: 8080\nlb:\n  publish: [\"127.0.0.1:8000:80\", \"127.0.0.1:8001:8081\"]\n";

#[test]
fn unknown_key_exits_2_with_line_and_column() {
    let dir = scratch("unknown");
    std::fs::write(
        dir.join("bgd.yaml"),
        "app: web\ncontainer:\n  port: 8080\n  prot: 9090\nlb:\n  publish: [\"127.0.0.1:8000:80\", \"127.0.0.1:8001:8081\"]\n",
    )
    .unwrap();
    let r = bgd_in(&dir, &["validate"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("bgd.yaml:4:3"), "line and column: {r:?}");
    assert!(
        r.stderr.contains("container") && r.stderr.contains("prot"),
        "key path: {r:?}"
    );
}

#[test]
fn bad_duration_exits_2_with_line_and_column() {
    let dir = scratch("duration");
    std::fs::write(
        dir.join("bgd.yaml"),
        format!("{VALID}readiness:\n  interval: 10 parsecs\n"),
    )
    .unwrap();
    let r = bgd_in(&dir, &["validate", "--json"]);
    assert_eq!(r.code, 2, "{r:?}");
    let res = r.result();
    let msg = res["error"].as_str().unwrap();
    assert!(msg.contains("bgd.yaml:7:13"), "{msg}");
    assert!(msg.contains("readiness.interval"), "{msg}");
    assert!(msg.contains("10 parsecs"), "{msg}");
}

#[test]
fn semantic_errors_point_at_the_key() {
    let dir = scratch("semantic");
    let cases = [
        ("app: Web_App\ncontainer:\n  port: 8080\n", "bgd.yaml:1:1: app:"),
        (
            &format!("{VALID}smoke:\n  - name: a\n    path: /\n    expect:\n      status: [700]\n"),
            "bgd.yaml:10:7: smoke[0].expect.status",
        ),
        (
            "app: web\ncontainer:\n  port: 8080\nlb:\n  listen: 8080\n  preview_listen: 8080\n  url: http://127.0.0.1:1\n  preview_url: http://127.0.0.1:2\n",
            "bgd.yaml:6:3: lb.preview_listen",
        ),
        (
            "app: web\nreplicas: 0\ncontainer:\n  port: 8080\n",
            "bgd.yaml:2:1: replicas",
        ),
        (
            &format!("{VALID}  url: ftp://x\n"),
            "lb.url",
        ),
        (
            "app: web\ncontainer:\n  port: 8080\nlb:\n  publish: [\"not-a-port:80\"]\n",
            "lb.publish[0]",
        ),
        (
            &format!("{VALID}warmup:\n  mirror:\n    share: 150%\n"),
            "bgd.yaml:8:5: warmup.mirror.share: \"150%\" is not a whole percentage between 1% and 100%",
        ),
        (
            &format!("{VALID}warmup:\n  mirror:\n    methods: [get]\n"),
            "warmup.mirror.methods",
        ),
        (
            &format!("{VALID}canary:\n  steps: [25, 10]\n"),
            "canary.steps[1]: the shares must rise",
        ),
        (
            &format!("{VALID}canary:\n  max_latency_ratio: 0.5\n"),
            "canary.max_latency_ratio",
        ),
        (
            &format!("{VALID}canary:\n  inconclusive: maybe\n"),
            "canary.inconclusive",
        ),
    ];
    for (text, want) in cases {
        std::fs::write(dir.join("bgd.yaml"), text).unwrap();
        let r = bgd_in(&dir, &["validate"]);
        assert_eq!(r.code, 2, "{text}\n{r:?}");
        assert!(r.stderr.contains(want), "want {want:?} for\n{text}\n{r:?}");
    }
}

#[test]
fn missing_or_binary_config_exits_2() {
    let dir = scratch("missing");
    let r = bgd_in(&dir, &["-f", "nope.yaml", "validate"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("nope.yaml") && r.stderr.contains("bgd init"),
        "{r:?}"
    );
    std::fs::write(dir.join("bin.yaml"), [0u8, 159, 146, 150, 0, 1]).unwrap();
    let r = bgd_in(&dir, &["-f", "bin.yaml", "validate"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("not a text file"), "{r:?}");
}

#[test]
fn env_file_values_are_never_printed() {
    let dir = scratch("secret");
    std::fs::write(
        dir.join(".env"),
        "API_TOKEN=s3cr3t-value-123\nbroken line s3cr3t-value-456\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("bgd.yaml"),
        VALID.replace("  port: 8080\n", "  port: 8080\n  env_file: .env\n"),
    )
    .unwrap();
    let r = bgd_in(&dir, &["validate"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("line 2"), "{r:?}");
    assert!(
        !r.stderr.contains("s3cr3t") && !r.stdout.contains("s3cr3t"),
        "{r:?}"
    );
}

fn example_configs(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            // examples/ci holds CI pipelines, checked by tests/ci_examples.rs
            if path.file_name().is_some_and(|n| n != "ci") {
                example_configs(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

#[test]
fn every_example_config_parses() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files = Vec::new();
    example_configs(&root, &mut files);
    assert!(files.len() >= 2, "found {files:?}");
    for f in files {
        let r = bgd_in(&root, &["-f", f.to_str().unwrap(), "validate"]);
        assert_eq!(r.code, 0, "{}: {r:?}", f.display());
    }
}

#[test]
fn init_writes_a_valid_starter_and_refuses_to_overwrite() {
    let dir = scratch("init");
    let _ = std::fs::remove_file(dir.join("bgd.yaml"));
    let r = bgd_in(&dir, &["init"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(bgd_in(&dir, &["validate"]).code, 0);
    let again = bgd_in(&dir, &["init"]);
    assert_eq!(again.code, 2, "{again:?}");
    assert_eq!(bgd_in(&dir, &["init", "--force"]).code, 0);
}

#[test]
fn completions_print_a_script() {
    let r = bgd_in(Path::new("."), &["completions", "bash"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("bgd"));
}

#[test]
fn unreachable_docker_daemon_exits_6() {
    let dir = scratch("nodaemon");
    std::fs::write(dir.join("bgd.yaml"), VALID).unwrap();
    for host in ["unix:///nonexistent/docker.sock", "tcp://127.0.0.1:9"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_bgd"))
            .args(["status"])
            .current_dir(&dir)
            .env("DOCKER_HOST", host)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(6), "{host}: {stderr}");
        assert!(
            stderr.contains("cannot reach the Docker daemon") && stderr.contains(host),
            "{stderr}"
        );
    }
}
