//! HTTPS on the live server (`lb.tls`), with certificates made here (a CA and leaves signed by
//! it, rcgen): nginx serves them with TLS and HTTP/2, plain HTTP redirects, HSTS goes over
//! HTTPS only, the key lands in the container with mode 0600 and is never printed; curl with
//! the CA sees 0 failures through a deploy and a rollback; a renewed certificate is applied
//! by `bgd tls reload` losslessly; an expired one, or a key of another certificate, is a
//! config error (exit 2) before anything changes; bgd's probes verify against `lb.tls.ca`.

mod common;

use common::*;
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

struct Ca {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

fn ca() -> Ca {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "bgd test CA");
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    Ca {
        cert: params.self_signed(&key).unwrap(),
        key,
    }
}

/// A leaf for `names`, valid from two days ago for `days` more days (negative: expired),
/// signed by `ca`: (certificate PEM, key PEM).
fn leaf(ca: &Ca, names: &[&str], days: i64) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, names[0]);
    let now = SystemTime::now();
    let day = Duration::from_secs(86_400);
    params.not_before = (now - day * 3).into();
    params.not_after = if days >= 0 {
        (now + day * days as u32 + Duration::from_secs(3600)).into()
    } else {
        (now - day * (-days) as u32).into()
    };
    let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn write_pair(dir: &Path, stem: &str, (cert, key): &(String, String)) {
    std::fs::create_dir_all(dir.join("certs")).unwrap();
    std::fs::write(dir.join(format!("certs/{stem}.pem")), cert).unwrap();
    std::fs::write(dir.join(format!("certs/{stem}.key")), key).unwrap();
}

/// The config: `host` on HTTPS at `tls_port` (plain HTTP redirects), the CA for bgd's probes.
fn tls_config(t: &TestApp, tls_port: u16, host: &str) -> Cfg {
    t.config()
        .set("lb.hosts", json!([host]))
        .set(
            "lb.publish",
            json!([
                format!("127.0.0.1:{}:80", t.live_port),
                format!("127.0.0.1:{}:8081", t.preview_port),
                format!("127.0.0.1:{tls_port}:443"),
            ]),
        )
        .unset("lb.url")
        .set(
            "lb.tls",
            json!({
                "certificate": "certs/shop.pem",
                "key": "certs/shop.key",
                "ca": "certs/ca.pem",
                "redirect_http": true,
                "hsts": true,
            }),
        )
}

/// One curl run: `urls` over one connection (keep-alive), each line "status http-version
/// app-version".
fn curl(dir: &Path, host: &str, port: u16, args: &[&str], urls: usize) -> Vec<String> {
    let url = format!("https://{host}:{port}/");
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "--max-time", "10"])
        .arg("--cacert")
        .arg(dir.join("certs/ca.pem"))
        .args(["--resolve", &format!("{host}:{port}:127.0.0.1")])
        .args([
            "-w",
            "%{http_code} %{http_version} %header{x-app-version} %{errormsg}\\n",
        ])
        .args(args);
    for _ in 0..urls {
        cmd.args(["-o", "/dev/null"]).arg(&url);
    }
    let out = cmd.output().expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines: Vec<String> = text.lines().map(|l| l.trim_end().to_string()).collect();
    // a run that died early answered fewer lines: each missing one is a failure
    while lines.len() < urls {
        lines.push(format!("000 failed: curl exit {:?}", out.status.code()));
    }
    lines
}

/// curl clients with the CA in a loop, over HTTP/1.1: two reusing their connection for five
/// requests a run (keep-alive), two opening one per request; nothing retries. (HTTP/2 is
/// not judged under load: at every reload nginx closes HTTP/2 connections with no request in
/// progress with GOAWAY, and curl 7.88 fails a request it sent as that came instead of
/// retrying it; docs/configuration.md, `lb.tls.http2`.)
struct CurlLoad {
    stop: Arc<AtomicBool>,
    lines: Arc<Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl CurlLoad {
    fn start(dir: &Path, host: &str, port: u16) -> CurlLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        for urls in [5, 5, 1, 1] {
            let (stop, lines, dir, host) = (
                stop.clone(),
                lines.clone(),
                dir.to_path_buf(),
                host.to_string(),
            );
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let got = curl(&dir, &host, port, &["--http1.1"], urls);
                    lines.lock().unwrap().extend(got);
                }
            }));
        }
        std::thread::sleep(Duration::from_millis(300));
        CurlLoad {
            stop,
            lines,
            threads,
        }
    }

    fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let lines = self.lines.lock().unwrap().clone();
        lines
    }
}

/// Every line of a curl load is a 200 over HTTP/1.1 starting with `ok` (e.g. "200 1.1 v").
fn all_answered(lines: &[String], ok: &str) {
    let failed: Vec<&String> = lines.iter().filter(|l| !l.starts_with(ok)).collect();
    assert!(
        failed.is_empty(),
        "{} of {} failed: {:?}",
        failed.len(),
        lines.len(),
        &failed[..failed.len().min(20)]
    );
}

fn served_sha(t: &TestApp) -> String {
    let st = t.bgd(&["--json", "status"]);
    assert_eq!(st.code, 0, "{st:?}");
    st.result()["tls"]["served"]["sha256"]
        .as_str()
        .unwrap_or("none")
        .to_string()
}

fn sha256_of_pem(pem: &str) -> String {
    let der = rustls_pemfile::certs(&mut pem.as_bytes())
        .next()
        .unwrap()
        .unwrap();
    let out = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(der.as_ref())?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn https_through_a_deploy_a_rollback_and_a_renewal_with_zero_failures() {
    let tls_port = claim_port();
    let t = TestApp::new("tls");
    let port = tls_port.port;
    let ca = ca();
    std::fs::create_dir_all(t.dir.join("certs")).unwrap();
    std::fs::write(t.dir.join("certs/ca.pem"), ca.cert.pem()).unwrap();
    let first = leaf(&ca, &["shop.test"], 60);
    write_pair(&t.dir, "shop", &first);
    t.write(&tls_config(&t, port, "shop.test"));

    let d = t.bgd(&["-v", "deploy", "bgd-demo:v1"]);
    assert_eq!(d.code, 0, "{d:?}");
    assert!(
        !d.stdout.contains("PRIVATE KEY") && !d.stderr.contains("PRIVATE KEY"),
        "the key was printed: {d:?}"
    );
    // HTTPS with HTTP/2, HSTS; the app sees the request
    let got = curl(&t.dir, "shop.test", port, &[], 1);
    assert_eq!(got, ["200 2 v1"], "{got:?}");
    let head = Command::new("curl")
        .args(["-s", "-D", "-", "-o", "/dev/null", "--cacert"])
        .arg(t.dir.join("certs/ca.pem"))
        .args(["--resolve", &format!("shop.test:{port}:127.0.0.1")])
        .arg(format!("https://shop.test:{port}/x?y=1"))
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&head.stdout).to_ascii_lowercase();
    assert!(
        head.contains("strict-transport-security: max-age=31536000"),
        "{head}"
    );
    // plain HTTP: a 308 to the HTTPS port, and no HSTS over it
    let plain = http_get_host(t.live_port, "/x?y=1", "shop.test").unwrap();
    assert_eq!(plain.status, 308, "{plain:?}");
    assert_eq!(
        plain.header("Location"),
        Some(format!("https://shop.test:{port}/x?y=1").as_str())
    );
    assert_eq!(plain.header("Strict-Transport-Security"), None);
    // the key in the container: root's, 0600, under bgd's directory
    let modes = t.lb_sh(&format!(
        "stat -c '%a %U %n' /etc/nginx/bgd/{}/tls/*",
        t.app
    ));
    let key_line = modes.lines().find(|l| l.ends_with(".key")).unwrap_or("");
    assert!(key_line.starts_with("600 root "), "{modes}");
    assert_eq!(modes.lines().count(), 2, "{modes}");

    // a deploy and a rollback under HTTPS load: 0 failures
    let load = CurlLoad::start(&t.dir, "shop.test", port);
    let d = t.bgd(&["deploy", "bgd-demo:v2"]);
    assert_eq!(d.code, 0, "{d:?}");
    let r = t.bgd(&["rollback"]);
    assert_eq!(r.code, 0, "{r:?}");
    let lines = load.finish();
    all_answered(&lines, "200 1.1 v");
    assert!(lines.len() > 100, "only {} requests", lines.len());
    assert!(lines.iter().any(|l| l.ends_with(" v2")), "never saw v2");

    // status: subject and expiry
    let st = t.bgd(&["--json", "status"]);
    assert_eq!(st.code, 0, "{st:?}");
    let served = &st.result()["tls"]["served"];
    assert_eq!(served["subject"], "CN=shop.test", "{served}");
    assert!(
        (59..=60).contains(&served["days_left"].as_i64().unwrap()),
        "{served}"
    );
    let human = t.bgd(&["status"]);
    assert!(
        human
            .stdout
            .contains("tls       port 443: CN=shop.test, expires"),
        "{human:?}"
    );

    // a renewed certificate (10 days: warned about) is applied by `tls reload` under load
    let renewed = leaf(&ca, &["shop.test"], 10);
    write_pair(&t.dir, "shop", &renewed);
    let st = t.bgd(&["status"]);
    assert!(
        st.stdout
            .contains("does not serve the certificate bgd.yaml names yet"),
        "{st:?}"
    );
    let load = CurlLoad::start(&t.dir, "shop.test", port);
    let reload = t.bgd(&["--json", "tls", "reload"]);
    let lines = load.finish();
    assert_eq!(reload.code, 0, "{reload:?}");
    assert_eq!(reload.result()["changed"], true, "{reload:?}");
    assert!(
        reload.stderr.contains("expires in 10 days")
            || reload.stdout.contains("expires in 10 days"),
        "{reload:?}"
    );
    all_answered(&lines, "200 1.1 v");
    assert_eq!(served_sha(&t), sha256_of_pem(&renewed.0));
    // the old certificate's files are gone from the container
    let files = docker(&[
        "exec",
        &t.lb(),
        "ls",
        &format!("/etc/nginx/bgd/{}/tls", t.app),
    ]);
    assert_eq!(files.lines().count(), 2, "{files}");
    let h = t.bgd(&["--json", "history"]);
    assert!(h.stdout.contains("tls reload"), "{h:?}");

    // an expired certificate: exit 2 before anything changes
    let generation = t.bgd(&["--json", "status"]).result()["nginx"]["generation"].clone();
    write_pair(&t.dir, "shop", &leaf(&ca, &["shop.test"], -1));
    for args in [vec!["deploy", "bgd-demo:v3"], vec!["tls", "reload"]] {
        let r = t.bgd(&args);
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        assert!(r.stderr.contains("expired on"), "{r:?}");
    }
    assert_eq!(
        t.bgd(&["--json", "status"]).result()["nginx"]["generation"],
        generation
    );
    assert_eq!(served_sha(&t), sha256_of_pem(&renewed.0));
    // a key of another certificate: exit 2 from the config alone
    let other = leaf(&ca, &["shop.test"], 30);
    std::fs::write(t.dir.join("certs/shop.pem"), &renewed.0).unwrap();
    std::fs::write(t.dir.join("certs/shop.key"), &other.1).unwrap();
    let v = t.bgd(&["validate"]);
    assert_eq!(v.code, 2, "{v:?}");
    assert!(
        v.stderr.contains("does not belong to the certificate"),
        "{v:?}"
    );
    assert!(!v.stderr.contains("PRIVATE KEY"), "{v:?}");
    // looking still works (a machine without the right key can see what is live); changing
    // anything does not
    let st = t.bgd(&["status"]);
    assert_eq!(st.code, 0, "{st:?}");
    assert!(st.stderr.contains("refuses until it is fixed"), "{st:?}");
    let r = t.bgd(&["rollback"]);
    assert_eq!(r.code, 2, "{r:?}");
    // a certificate file holding the key too: refused (it would be uploaded readable by all)
    std::fs::write(
        t.dir.join("certs/shop.pem"),
        format!("{}{}", renewed.0, renewed.1),
    )
    .unwrap();
    let v = t.bgd(&["validate"]);
    assert_eq!(v.code, 2, "{v:?}");
    assert!(v.stderr.contains("holds a private key"), "{v:?}");
    write_pair(&t.dir, "shop", &renewed);

    // bgd's probes verify: without lb.tls.ca the test CA is not trusted, and status says so
    t.write(&tls_config(&t, port, "shop.test").unset("lb.tls.ca"));
    let st = t.bgd(&["status"]);
    assert!(
        st.stdout.contains("TLS failed") || st.stderr.contains("TLS failed"),
        "{st:?}"
    );
    assert!(
        st.stdout.contains("UnknownIssuer") || st.stderr.contains("UnknownIssuer"),
        "{st:?}"
    );

    // files already in the container, as certbot lays them out (live/ links to archive/)
    t.write(&tls_config(&t, port, "shop.test"));
    let put = |name: &str, pair: &(String, String)| {
        write_pair(&t.dir, name, pair);
        docker(&[
            "exec",
            &t.lb(),
            "mkdir",
            "-p",
            "/etc/nginx/certs/archive",
            "/etc/nginx/certs/live",
        ]);
        for ext in ["pem", "key"] {
            let from = t.dir.join(format!("certs/{name}.{ext}"));
            docker(&[
                "cp",
                from.to_str().unwrap(),
                &format!("{}:/etc/nginx/certs/archive/{name}.{ext}", t.lb()),
            ]);
            docker(&[
                "exec",
                &t.lb(),
                "busybox",
                "ln",
                "-sfn",
                &format!("../archive/{name}.{ext}"),
                &format!("/etc/nginx/certs/live/shop.{ext}"),
            ]);
        }
    };
    let inside = leaf(&ca, &["shop.test"], 90);
    put("inside1", &inside);
    t.write(&tls_config(&t, port, "shop.test").set(
        "lb.tls",
        json!({
            "certificate_path": "/etc/nginx/certs/live/shop.pem",
            "key_path": "/etc/nginx/certs/live/shop.key",
            "ca": "certs/ca.pem",
            "http2": false,
        }),
    ));
    let reload = t.bgd(&["tls", "reload"]);
    assert_eq!(reload.code, 0, "{reload:?}");
    assert_eq!(served_sha(&t), sha256_of_pem(&inside.0));
    // renewed in place: status sees nginx still presenting the old one, until `tls reload`
    let inside2 = leaf(&ca, &["shop.test"], 80);
    put("inside2", &inside2);
    let st = t.bgd(&["status"]);
    assert!(
        st.stdout
            .contains("does not serve the certificate bgd.yaml names yet"),
        "{st:?}"
    );
    let reload = t.bgd(&["--json", "tls", "reload"]);
    assert_eq!(reload.code, 0, "{reload:?}");
    assert_eq!(reload.result()["changed"], true, "{reload:?}");
    assert_eq!(
        reload.result()["before"]["sha256"].as_str(),
        Some(sha256_of_pem(&inside.0).as_str())
    );
    assert_eq!(served_sha(&t), sha256_of_pem(&inside2.0));
    // http2: false: HTTP/1.1 alone
    assert_eq!(curl(&t.dir, "shop.test", port, &[], 1), ["200 1.1 v1"]);
    // bgd's uploaded files went with the switch to the container's own
    let files = t.lb_sh(&format!("ls /etc/nginx/bgd/{}/tls | wc -l", t.app));
    assert_eq!(files.trim(), "0");
    // without redirect_http, plain HTTP serves the app too
    let plain = http_get_host(t.live_port, "/", "shop.test").unwrap();
    assert_eq!(plain.status, 200, "{plain:?}");
    // a missing file in the container: exit 2, nothing changed
    t.write(&tls_config(&t, port, "shop.test").set(
        "lb.tls",
        json!({
            "certificate_path": "/etc/nginx/certs/missing.pem",
            "key_path": "/etc/nginx/certs/live/shop.key",
        }),
    ));
    let r = t.bgd(&["tls", "reload"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr
            .contains("is not a file bgd can read in the nginx container"),
        "{r:?}"
    );
}

/// Two apps behind one nginx on one HTTPS port, each with its own certificate (chosen by
/// SNI); an app without TLS cannot take the HTTPS port in plain HTTP.
#[test]
fn apps_sharing_an_https_port_each_serve_their_own_certificate() {
    let tls_port = claim_port();
    let b = TestApp::new("tlb");
    let a = TestApp::new("tla");
    let port = tls_port.port;
    let ca = ca();
    for (t, host) in [(&a, "a.test"), (&b, "b.test")] {
        std::fs::create_dir_all(t.dir.join("certs")).unwrap();
        std::fs::write(t.dir.join("certs/ca.pem"), ca.cert.pem()).unwrap();
        write_pair(&t.dir, "shop", &leaf(&ca, &[host], 30));
    }
    let shared = |t: &TestApp, host: &str| {
        tls_config(&a, port, host)
            .set("app", t.app.clone())
            .set("network", format!("{}-net", t.app))
            .set("lb.container", a.lb())
    };
    a.write(&shared(&a, "a.test"));
    b.write(&shared(&b, "b.test"));
    assert_eq!(a.bgd(&["deploy", "bgd-demo:v1"]).code, 0);
    let d = b.bgd(&["deploy", "bgd-demo:v2"]);
    assert_eq!(d.code, 0, "{d:?}");
    assert_eq!(curl(&a.dir, "a.test", port, &[], 1), ["200 2 v1"]);
    assert_eq!(curl(&b.dir, "b.test", port, &[], 1), ["200 2 v2"]);
    // curl verified each name: a.test's certificate names a.test alone, so b.test was given
    // its own (nginx picks it by SNI)
    // a's rollback under load on b: 0 failures for b
    let load = CurlLoad::start(&b.dir, "b.test", port);
    assert_eq!(a.bgd(&["deploy", "bgd-demo:v3"]).code, 0);
    assert_eq!(a.bgd(&["rollback"]).code, 0);
    let lines = load.finish();
    all_answered(&lines, "200 1.1 v2");
    // a third app serving the HTTPS port in plain HTTP is refused before anything changes
    let c = TestApp::new("tlc");
    c.write(
        &c.config()
            .set("lb.container", a.lb())
            .set("lb.hosts", json!(["c.test"]))
            .set("lb.listen", 443)
            .set("lb.url", format!("http://127.0.0.1:{port}")),
    );
    let r = c.bgd(&["deploy", "bgd-demo:v1"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr
            .contains("in plain HTTP, where this app serves TLS")
            || r.stderr
                .contains("with TLS, where this app serves plain HTTP"),
        "{r:?}"
    );
}
