//! bgd on another machine than the Docker host: `DOCKER_HOST=ssh://...`. The "remote host" is
//! a container running sshd and the docker CLI with the daemon's socket mounted, so every
//! Engine API call bgd makes goes through ssh and `docker system dial-stdio`.

mod common;
use common::*;
use std::time::Duration;

/// The daemon's socket on this machine, to mount into the sshd container.
fn daemon_socket() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(str::to_string))
        .unwrap_or_else(|| "/var/run/docker.sock".to_string())
}

/// An sshd container on a loopback port accepting a fresh key; returns (port, ssh command).
fn start_sshd(t: &TestApp) -> (u16, String) {
    let key = t.dir.join("id_ed25519");
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .output()
        .expect("run ssh-keygen (install openssh-client)");
    assert!(out.status.success(), "{out:?}");
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let port = free_port();
    let name = format!("{}-sshd", t.app);
    let id = docker(&[
        "run",
        "-d",
        "--name",
        &name,
        // removed by the test's guard; bgd ignores it (not bgd.managed)
        "--label",
        &format!("bgd.app={}", t.app),
        "-p",
        &format!("127.0.0.1:{port}:22"),
        "-v",
        &format!("{}:/var/run/docker.sock", daemon_socket()),
        "-e",
        &format!("AUTHORIZED_KEY={}", public.trim()),
        "bgd-sshd:test",
    ]);
    assert!(!id.trim().is_empty(), "sshd container did not start");
    // sshd is up when it sends its banner
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let banner = std::net::TcpStream::connect(("127.0.0.1", port))
            .ok()
            .and_then(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
                let mut buf = [0u8; 4];
                std::io::Read::read_exact(&mut s, &mut buf).ok()?;
                Some(buf)
            });
        if banner == Some(*b"SSH-") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sshd did not come up: {}",
            docker(&["logs", &name])
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let ssh = format!(
        "ssh -i {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
        key.display()
    );
    (port, ssh)
}

#[test]
fn deploys_and_rolls_back_through_an_ssh_docker_host() {
    let t = TestApp::new("ssh");
    t.write_config(&t.config_text(""));
    let (port, ssh) = start_sshd(&t);
    let host = format!("ssh://root@127.0.0.1:{port}");
    let env = [
        ("DOCKER_HOST", host.as_str()),
        ("BGD_SSH_COMMAND", ssh.as_str()),
    ];
    let remote = |args: &[&str]| bgd_env(&t.dir, &env, args);

    let v1 = remote(&["deploy", "bgd-demo:v1"]);
    assert_eq!(v1.code, 0, "{v1:?}");
    assert_eq!(t.live_version(), "v1");
    let v2 = remote(&["deploy", "bgd-demo:v2"]);
    assert_eq!(v2.code, 0, "{v2:?}");
    assert_eq!(t.live_version(), "v2");
    let st = remote(&["status", "--json"]).result();
    assert_eq!(st["live"]["image"], "bgd-demo:v2", "{st}");
    assert_eq!(st["idle"]["role"], "parked", "{st}");
    let ours = |e: &std::fs::DirEntry| e.file_name().to_string_lossy().starts_with("bgd-ssh-");
    let before: Vec<std::path::PathBuf> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(Result::ok)
        .filter(ours)
        .map(|e| e.path())
        .collect();
    let rb = remote(&["rollback"]);
    assert_eq!(rb.code, 0, "{rb:?}");
    assert_eq!(t.live_version(), "v1");
    let logs = docker(&["logs", &format!("{}-sshd", t.app)]);
    let logs = logs
        + &String::from_utf8_lossy(
            &std::process::Command::new("docker")
                .args(["logs", &format!("{}-sshd", t.app)])
                .output()
                .unwrap()
                .stderr,
        );
    assert!(
        logs.contains("Accepted publickey for root"),
        "not through ssh:\n{logs}"
    );

    // the local socket bgd made for ssh is gone once it exits (other tests' may come and go)
    let left: Vec<std::path::PathBuf> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(Result::ok)
        .filter(ours)
        .map(|e| e.path())
        .filter(|p| !before.contains(p))
        .filter(|p| std::os::unix::net::UnixStream::connect(p.join("docker.sock")).is_err())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn an_unreachable_ssh_host_is_exit_6_with_what_ssh_said() {
    let t = TestApp::new("sshbad");
    t.write_config(&t.config_text(""));
    let closed = free_port();
    let host = format!("ssh://root@127.0.0.1:{closed}");
    let r = bgd_env(
        &t.dir,
        &[
            ("DOCKER_HOST", &host),
            ("BGD_SSH_COMMAND", "ssh -o LogLevel=ERROR"),
        ],
        &["status"],
    );
    assert_eq!(r.code, 6, "{r:?}");
    assert!(
        r.stderr.contains("Connection refused"),
        "says what ssh said: {r:?}"
    );
    assert!(
        r.stderr
            .contains(&format!("ssh -p {closed} root@127.0.0.1 docker version")),
        "says what to try: {r:?}"
    );
    // something ssh would take as an option is refused before ssh runs
    let r = bgd_env(
        &t.dir,
        &[("DOCKER_HOST", "ssh://-oProxyCommand=touch")],
        &["status"],
    );
    assert_eq!(r.code, 2, "{r:?}");
}
