//! bgd on another machine than the Docker host. `DOCKER_HOST=ssh://...`: the "remote host" is
//! a container running sshd and the docker CLI with the daemon's socket mounted, so every
//! Engine API call bgd makes goes through ssh and `docker system dial-stdio`.
//! `DOCKER_HOST=tcp://` with `DOCKER_TLS_VERIFY`: a TLS endpoint that requires a client
//! certificate (as `dockerd --tlsverify` does) in front of the daemon's socket.

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
/// It shares the host's network, as sshd on a real Docker host would: what it reaches on
/// 127.0.0.1 is nginx's published ports.
fn start_sshd(t: &TestApp) -> (Port, String) {
    start_sshd_on(t, "127.0.0.1")
}

/// The same sshd, listening on `addr` (an address of this machine).
fn start_sshd_on(t: &TestApp, addr: &str) -> (Port, String) {
    start_sshd_with(t, addr, "")
}

/// The same sshd, its key accepted with `options` (authorized_keys options, e.g. `restrict`).
fn start_sshd_with(t: &TestApp, addr: &str, options: &str) -> (Port, String) {
    let key = t.dir.join("id_ed25519");
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .output()
        .expect("run ssh-keygen (install openssh-client)");
    assert!(out.status.success(), "{out:?}");
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let claim = claim_port();
    let port = claim.port;
    let name = format!("{}-sshd", t.app);
    let serve = format!(
        "mkdir -p /root/.ssh && printf '%s\\n' \"$AUTHORIZED_KEY\" > /root/.ssh/authorized_keys && chmod 700 /root/.ssh && chmod 600 /root/.ssh/authorized_keys && exec /usr/sbin/sshd -D -e -p {port} -o ListenAddress={addr}"
    );
    let id = docker(&[
        "run",
        "-d",
        "--name",
        &name,
        // removed by the test's guard; bgd ignores it (not bgd.managed)
        "--label",
        &format!("bgd.app={}", t.app),
        "--network",
        "host",
        "-v",
        &format!("{}:/var/run/docker.sock", daemon_socket()),
        "-e",
        &format!("AUTHORIZED_KEY={options}{}", public.trim()),
        "bgd-sshd:test",
        "/bin/sh",
        "-c",
        &serve,
    ]);
    assert!(!id.trim().is_empty(), "sshd container did not start");
    // sshd is up when it sends its banner
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let banner = std::net::TcpStream::connect((addr, port))
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
    (claim, ssh)
}

#[test]
fn deploys_and_rolls_back_through_an_ssh_docker_host() {
    let t = TestApp::new("ssh");
    // enough replicas that a deploy makes more calls at once than sshd's 10 sessions per
    // connection (MaxSessions): bgd must queue them, not have them refused
    t.write(&t.config().set("replicas", 12));
    let (sshd_port, ssh) = start_sshd(&t);
    let host = format!("ssh://root@127.0.0.1:{}", sshd_port.port);
    let env = [
        ("DOCKER_HOST", host.as_str()),
        ("BGD_SSH_COMMAND", ssh.as_str()),
    ];
    let remote = |args: &[&str]| bgd_env(&t.dir, &env, args);

    let v1 = remote(&["deploy", "bgd-demo:v1"]);
    assert_eq!(v1.code, 0, "{v1:?}");
    assert_eq!(t.live_version(), "v1");
    // which machine it acts on, said first
    assert!(
        v1.stderr
            .starts_with(&format!("     Docker host {host} (from DOCKER_HOST)")),
        "{v1:?}"
    );
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
    // one ssh connection per command, every session within it
    assert!(!logs.contains("no more sessions"), "{logs}");
    assert_eq!(
        logs.matches("Accepted publickey").count(),
        4,
        "deploy, deploy, status, rollback: one connection each\n{logs}"
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
    t.write(&t.config());
    let claim = claim_port(); // held, so nothing else listens there meanwhile
    let closed = claim.port;
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

/// Certificates for a TLS Docker endpoint: a CA, the server's (127.0.0.1) and a client's, in
/// `dir` as DOCKER_CERT_PATH expects them (ca.pem, cert.pem, key.pem). Returns the server's
/// TLS config, which only accepts clients with a certificate from that CA.
fn tls_certs(dir: &std::path::Path) -> std::sync::Arc<tokio_rustls::rustls::ServerConfig> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        SanType,
    };
    use tokio_rustls::rustls;
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "bgd test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let signed = |purpose: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        p.subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        p.extended_key_usages = vec![purpose];
        (p.signed_by(&key, &ca_cert, &ca_key).unwrap(), key)
    };
    let (server, server_key) = signed(ExtendedKeyUsagePurpose::ServerAuth);
    let (client, client_key) = signed(ExtendedKeyUsagePurpose::ClientAuth);
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), client.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), client_key.serialize_pem()).unwrap();

    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_cert.der().clone()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        std::sync::Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![server.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into()),
        )
        .unwrap();
    std::sync::Arc::new(config)
}

/// A TLS endpoint in front of the daemon's unix socket, as `dockerd --tlsverify` offers one:
/// it carries each connection to the socket and closes TLS properly (close_notify).
fn start_tls_proxy(config: std::sync::Arc<tokio_rustls::rustls::ServerConfig>) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let socket = daemon_socket();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, socket) = (acceptor.clone(), socket.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return; // no or a foreign client certificate
                    };
                    let Ok(mut unix) = tokio::net::UnixStream::connect(&socket).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut unix).await;
                });
            }
        });
    });
    port
}

#[test]
fn deploys_and_rolls_back_through_a_tls_docker_host() {
    let t = TestApp::new("tls");
    t.write(&t.config());
    let certs = t.dir.join("certs");
    let port = start_tls_proxy(tls_certs(&certs));
    let host = format!("tcp://127.0.0.1:{port}");
    let certs_s = certs.display().to_string();
    let env = [
        ("DOCKER_HOST", host.as_str()),
        ("DOCKER_TLS_VERIFY", "1"),
        ("DOCKER_CERT_PATH", certs_s.as_str()),
    ];
    let remote = |args: &[&str]| bgd_env(&t.dir, &env, args);
    let v1 = remote(&["deploy", "bgd-demo:v1"]);
    assert_eq!(v1.code, 0, "{v1:?}");
    let v2 = remote(&["deploy", "bgd-demo:v2"]);
    assert_eq!(v2.code, 0, "{v2:?}");
    assert_eq!(t.live_version(), "v2");
    let rb = remote(&["rollback"]);
    assert_eq!(rb.code, 0, "{rb:?}");
    assert_eq!(t.live_version(), "v1");
    let st = remote(&["status", "--json"]).result();
    assert_eq!(st["idle"]["image"], "bgd-demo:v2", "{st}");

    // the endpoint refuses a client whose certificate another CA signed: exit 6
    let other = t.dir.join("other-certs");
    let _ = tls_certs(&other);
    std::fs::copy(certs.join("ca.pem"), other.join("ca.pem")).unwrap();
    let other_s = other.display().to_string();
    let r = bgd_env(
        &t.dir,
        &[
            ("DOCKER_HOST", host.as_str()),
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CERT_PATH", other_s.as_str()),
        ],
        &["status"],
    );
    assert_eq!(r.code, 6, "{r:?}");
    assert!(r.stderr.contains(&host), "{r:?}");
    // plain HTTP to a TLS endpoint: exit 6 too
    let r = bgd_env(&t.dir, &[("DOCKER_HOST", host.as_str())], &["status"]);
    assert_eq!(r.code, 6, "{r:?}");
}

/// `docker context create` as a user would run it, into the docker config directory `config`.
fn docker_context(config: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("docker")
        .arg("--config")
        .arg(config)
        .arg("context")
        .args(args)
        .output()
        .expect("docker context");
    assert!(out.status.success(), "docker context {args:?}: {out:?}");
}

/// Docker contexts, read from the docker CLI's own store as `docker context create` and
/// `docker context use` leave it: `DOCKER_CONTEXT`, the current context, `--context` over
/// DOCKER_HOST (with a warning), DOCKER_HOST over the current context; an ssh:// context and
/// a TLS tcp:// one with its certificates.
#[test]
fn docker_contexts_are_resolved_as_the_docker_cli_does() {
    let t = TestApp::new("ctx");
    t.write(&t.config());
    let (sshd_port, ssh) = start_sshd(&t);
    let certs = t.dir.join("certs");
    let tls_port = start_tls_proxy(tls_certs(&certs));
    let config = t.dir.join("docker-config");
    let c = |f: &str| certs.join(f).display().to_string();
    docker_context(
        &config,
        &[
            "create",
            "over-ssh",
            "--docker",
            &format!("host=ssh://root@127.0.0.1:{}", sshd_port.port),
        ],
    );
    docker_context(
        &config,
        &[
            "create",
            "over-tls",
            "--docker",
            &format!(
                "host=tcp://127.0.0.1:{tls_port},ca={},cert={},key={}",
                c("ca.pem"),
                c("cert.pem"),
                c("key.pem")
            ),
        ],
    );
    let config_s = config.display().to_string();
    let sshd_logins = || {
        let out = std::process::Command::new("docker")
            .args(["logs", &format!("{}-sshd", t.app)])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stderr)
            .matches("Accepted publickey")
            .count()
    };

    // DOCKER_CONTEXT names the ssh context: the deploy goes through ssh
    let before = sshd_logins();
    // (an empty variable is an unset one, for bgd as for the docker CLI)
    let env = [
        ("DOCKER_CONFIG", config_s.as_str()),
        ("DOCKER_HOST", ""),
        ("DOCKER_CONTEXT", "over-ssh"),
        ("BGD_SSH_COMMAND", ssh.as_str()),
    ];
    let d = bgd_env(&t.dir, &env, &["deploy", "bgd-demo:v1"]);
    assert_eq!(d.code, 0, "{d:?}");
    assert!(sshd_logins() > before, "through ssh");

    // the current context (`docker context use`): the TLS endpoint, its certificates
    docker_context(&config, &["use", "over-tls"]);
    let env = [
        ("DOCKER_CONFIG", config_s.as_str()),
        ("DOCKER_HOST", ""),
        ("DOCKER_CONTEXT", ""),
    ];
    let before = sshd_logins();
    let d = bgd_env(&t.dir, &env, &["deploy", "bgd-demo:v2"]);
    assert_eq!(d.code, 0, "{d:?}");
    assert_eq!(sshd_logins(), before, "not through ssh");
    assert_eq!(t.live_version(), "v2");

    // --context over DOCKER_HOST, with a warning
    let env = [
        ("DOCKER_CONFIG", config_s.as_str()),
        ("DOCKER_HOST", "tcp://127.0.0.1:1"),
        ("DOCKER_CONTEXT", ""),
        ("BGD_SSH_COMMAND", ssh.as_str()),
    ];
    let s = bgd_env(&t.dir, &env, &["--context", "over-ssh", "status"]);
    assert_eq!(s.code, 0, "{s:?}");
    assert!(
        s.stderr
            .contains("--context over-ssh overrides DOCKER_HOST"),
        "{s:?}"
    );
    // DOCKER_HOST over the current context (which would work): it is the one used
    let s = bgd_env(&t.dir, &env, &["status"]);
    assert_eq!(s.code, 6, "{s:?}");
    assert!(s.stderr.contains("tcp://127.0.0.1:1"), "{s:?}");
    assert!(
        s.stderr
            .contains("overrides the docker context \"over-tls\""),
        "{s:?}"
    );
    // a context that does not exist: a usage error naming it
    let s = bgd_env(&t.dir, &env, &["--context", "nope", "status"]);
    assert_eq!(s.code, 2, "{s:?}");
    assert!(
        s.stderr.contains("docker context \"nope\" does not exist"),
        "{s:?}"
    );
}

/// A network namespace joined to this machine by a veth pair: from inside, the only thing
/// reachable is this machine's end of the pair (where the test's sshd listens). Removed on
/// drop.
struct Netns {
    name: String,
    veth: String,
    /// this machine's address on the pair
    host_ip: String,
}

impl Netns {
    fn new(n: u16) -> Netns {
        let (a, b) = (n / 64 % 256, (n % 64) * 4);
        let name = format!("bgdns{n}");
        let veth = format!("bgdh{n}");
        let peer = format!("bgdn{n}");
        let host_ip = format!("10.213.{a}.{}", b + 1);
        let ns_ip = format!("10.213.{a}.{}", b + 2);
        let ip = |args: &[&str]| {
            let out = std::process::Command::new("ip")
                .args(args)
                .output()
                .expect("run ip");
            assert!(out.status.success(), "ip {args:?}: {out:?}");
        };
        let ns = Netns {
            name: name.clone(),
            veth: veth.clone(),
            host_ip: host_ip.clone(),
        };
        ip(&["netns", "add", &name]);
        ip(&["link", "add", &veth, "type", "veth", "peer", "name", &peer]);
        ip(&["link", "set", &peer, "netns", &name]);
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &veth]);
        ip(&["link", "set", &veth, "up"]);
        ip(&[
            "netns",
            "exec",
            &name,
            "ip",
            "addr",
            "add",
            &format!("{ns_ip}/30"),
            "dev",
            &peer,
        ]);
        ip(&["netns", "exec", &name, "ip", "link", "set", &peer, "up"]);
        ip(&["netns", "exec", &name, "ip", "link", "set", "lo", "up"]);
        ns
    }

    /// `bgd ARGS` inside the namespace, in `dir`, with `env`.
    fn bgd(&self, dir: &std::path::Path, env: &[(&str, &str)], args: &[&str]) -> Run {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &self.name, env!("CARGO_BIN_EXE_bgd")])
            .args(args)
            .current_dir(dir)
            .env_remove("BGD_CONFIG")
            .envs(env.iter().copied())
            .output()
            .expect("run bgd in the namespace");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.veth])
            .output();
    }
}

/// bgd where only the Docker host's ssh port is reachable (a network namespace), nginx
/// publishing on the Docker host's loopback only: every probe travels with the ssh
/// connection, and deploy, status, deploy --no-switch + switch and rollback all work; a
/// rollback under load drops nothing.
#[test]
fn probes_travel_with_the_ssh_connection() {
    let t = TestApp::new("via");
    t.write(&t.config());
    let ns = Netns::new(t.live_port - 20000);
    // the deploy key as docs/ci.md recommends: good for the Docker API and nginx's two ports
    // only (no shell, no other forward)
    let options = format!(
        "restrict,port-forwarding,command=\"docker system dial-stdio\",permitopen=\"127.0.0.1:{}\",permitopen=\"127.0.0.1:{}\" ",
        t.live_port, t.preview_port
    );
    let (sshd_port, ssh) = start_sshd_with(&t, &ns.host_ip, &options);
    let host = format!("ssh://root@{}:{}", ns.host_ip, sshd_port.port);
    let env = [
        ("DOCKER_HOST", host.as_str()),
        ("DOCKER_CONTEXT", ""),
        ("BGD_SSH_COMMAND", ssh.as_str()),
    ];
    let remote = |args: &[&str]| ns.bgd(&t.dir, &env, args);
    let d = remote(&["deploy", "bgd-demo:v1"]);
    assert_eq!(d.code, 0, "{d:?}");
    assert_eq!(t.live_version(), "v1");
    // ... and that key really is that narrow: no shell, no forward elsewhere
    let port = sshd_port.port.to_string();
    let target = format!("root@{}", ns.host_ip);
    let try_ssh = |extra: &[&str]| {
        std::process::Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .args(ssh.split_whitespace())
            .args(["-o", "BatchMode=yes", "-p", &port])
            .args(extra)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run ssh in the namespace")
    };
    let shell = try_ssh(&[&target, "echo", "shell-open"]);
    assert!(
        !String::from_utf8_lossy(&shell.stdout).contains("shell-open"),
        "{shell:?}"
    );
    // sshd's own port answers (with its banner) to anyone allowed to reach it
    let elsewhere = format!("{}:{port}", ns.host_ip);
    let forward = try_ssh(&["-W", &elsewhere, &target]);
    assert!(
        !String::from_utf8_lossy(&forward.stdout).contains("SSH-"),
        "{forward:?}"
    );
    assert!(!forward.status.success(), "{forward:?}");
    assert!(
        ["prohibited", "forwarding failed"]
            .iter()
            .any(|w| String::from_utf8_lossy(&forward.stderr).contains(w)),
        "{forward:?}"
    );
    let s = remote(&["status", "--json"]);
    assert_eq!(s.code, 0, "{s:?}");
    let st = s.result();
    assert_eq!(st["nginx"]["routes_to"], "blue", "{st}");
    assert_eq!(st["live"]["containers"][0]["health"], "healthy", "{st}");
    let held = remote(&["deploy", "--no-switch", "bgd-demo:v2"]);
    assert_eq!(held.code, 0, "{held:?}");
    let sw = remote(&["switch"]);
    assert_eq!(sw.code, 0, "{sw:?}");
    assert_eq!(t.live_version(), "v2");

    let load = Load::start(t.live_port, &t.dir);
    load.expect("green");
    load.expect("any");
    let rb = remote(&["--json", "rollback"]);
    assert_eq!(rb.code, 0, "{rb:?}");
    load.expect("blue");
    std::thread::sleep(Duration::from_millis(300));
    let summary = load.finish();
    assert_eq!(summary["failures"], 0, "{summary:#}");
    assert_eq!(t.live_version(), "v1");

    // lb.via: direct keeps probing from where bgd runs: from inside the namespace nothing
    // answers, so the deploy stops before the switch (nothing is reachable) and traffic stays
    let direct = t.config().set("lb.via", "direct");
    t.write(&direct);
    let d = remote(&["deploy", "bgd-demo:v3"]);
    assert_eq!(d.code, 3, "{d:?}");
    assert!(d.stderr.contains("cannot connect"), "{d:?}");
    assert_eq!(t.live_version(), "v1");
}
