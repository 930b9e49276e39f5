//! HTTP probes: one way to send a probe (`Prober::probe`, `Prober::probe_replica`), one typed
//! verdict of what came back, and one judge of a verdict against what was expected
//! (`Verdict::check`). Readiness, smoke probes, the compatibility gate, post-switch
//! verification, rollback and `status` all go through here, so they all check the same things
//! the same way: the status, the color nginx says served it, the replica it reached, the body.
//!
//! Every probe uses a fresh connection: a pooled one could reach an old nginx worker and see
//! the old routing.

pub mod session;
pub mod window;

use crate::model::{Color, Server};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Header that routes a request on the preview listener to one replica ("green-2").
pub const PROBE_REPLICA_HEADER: &str = "X-Bgd-Probe-Replica";
/// Largest body bgd reads from a probe response: the rest is not read, and the connection
/// is closed (a streaming endpoint must not hold memory, or the probe, for its whole length).
const MAX_BODY: usize = 64 * 1024;

/// One probe to send.
pub struct Request<'a> {
    pub method: &'a str,
    pub url: String,
    pub headers: Vec<(&'a str, &'a str)>,
    pub body: &'a str,
    pub timeout: Duration,
}

impl<'a> Request<'a> {
    pub fn get(url: String, timeout: Duration) -> Request<'a> {
        Request {
            method: "GET",
            url,
            headers: Vec::new(),
            body: "",
            timeout,
        }
    }
}

/// What an answer said, as nginx and the app sent it.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    /// lower-case names
    pub headers: Vec<(String, String)>,
    /// at most `MAX_BODY` bytes (64 KiB), lossily decoded
    pub body: String,
    /// Over HTTPS: the certificate the server presented (DER)
    pub peer_certificate: Option<Vec<u8>>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
    /// `X-Bgd-Color`: the color nginx says served the request.
    pub fn color(&self) -> Option<&str> {
        self.header("x-bgd-color")
    }
    /// `X-Bgd-Generation`: the config generation that served it.
    pub fn generation(&self) -> Option<u64> {
        self.header("x-bgd-generation")?.trim().parse().ok()
    }
    /// `X-Bgd-Upstream`: the address the preview listener sent it to.
    pub fn upstream(&self) -> Option<&str> {
        self.header("x-bgd-upstream")
    }
}

/// The typed verdict of one probe: the answer, or why there was none, and how long it took.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub answer: Result<Answer, String>,
    pub elapsed: Duration,
    /// There was no answer because the server closed or reset the connection as or after the
    /// request went out on it, before an answer's status line and headers came: never a
    /// timeout, a connection or TLS handshake that failed, an answer cut short in its body, or
    /// one bgd refused (another app's). On a kept-alive connection, what a client sends again
    /// on a new one.
    pub closed_unanswered: bool,
}

/// Why a probe has no answer: `Verdict`'s failure as `send` makes it.
struct NoAnswer {
    why: String,
    /// `Verdict::closed_unanswered`
    closed_unanswered: bool,
}

impl From<String> for NoAnswer {
    fn from(why: String) -> NoAnswer {
        NoAnswer {
            why,
            closed_unanswered: false,
        }
    }
}

impl Verdict {
    fn of(sent: Result<Answer, NoAnswer>, started: Instant) -> Verdict {
        let closed_unanswered = sent.as_ref().is_err_and(|e| e.closed_unanswered);
        Verdict {
            answer: sent.map_err(|e| e.why),
            elapsed: started.elapsed(),
            closed_unanswered,
        }
    }
}

/// What a probe must see to pass. Unset parts are not checked.
#[derive(Debug, Clone, Default)]
pub struct Expect<'a> {
    /// accepted statuses
    pub status: &'a [u16],
    /// `X-Bgd-Color` must name this color
    pub color: Option<Color>,
    /// `X-Bgd-Upstream`, when nginx sends it, must be this address
    pub upstream: Option<&'a str>,
    pub body_contains: Option<&'a str>,
    /// response headers, each value a substring match
    pub headers: Option<&'a BTreeMap<String, String>>,
}

impl Verdict {
    /// Judges the verdict. `Err` says what was expected and what came back.
    pub fn check(&self, expect: &Expect) -> Result<&Answer, String> {
        let answer = self.answer.as_ref().map_err(Clone::clone)?;
        if let Some(color) = expect.color {
            if answer.color() != Some(color.as_str()) {
                return Err(format!(
                    "answered for color {:?}, not {color}",
                    answer.color().unwrap_or("none")
                ));
            }
        }
        if let (Some(want), Some(got)) = (expect.upstream, answer.upstream()) {
            if got != want {
                return Err(format!("reached {got}, not the replica at {want}"));
            }
        }
        if !expect.status.contains(&answer.status) {
            let want: Vec<String> = expect.status.iter().map(u16::to_string).collect();
            return Err(format!(
                "expected status {}, got {}{}",
                want.join(" or "),
                answer.status,
                snippet(&answer.body)
            ));
        }
        if let Some(needle) = expect.body_contains {
            if !answer.body.contains(needle) {
                return Err(format!(
                    "expected the body to contain {needle:?}{}",
                    snippet(&answer.body)
                ));
            }
        }
        for (name, want) in expect.headers.into_iter().flatten() {
            match answer.header(name) {
                Some(v) if v.contains(want.as_str()) => {}
                Some(v) => {
                    return Err(format!(
                        "expected header {name} to contain {want:?}, got {v:?}"
                    ))
                }
                None => return Err(format!("expected header {name}, it was absent")),
            }
        }
        Ok(answer)
    }
}

fn snippet(body: &str) -> String {
    let t = body.trim();
    if t.is_empty() {
        return String::new();
    }
    let cut: String = t.chars().take(200).collect();
    let more = if t.chars().count() > 200 { "..." } else { "" };
    format!(" (body: {cut:?}{more})")
}

/// How probes of an HTTPS listener are sent and verified.
#[derive(Clone, Default)]
pub struct TlsProbe {
    /// PEM roots verified against instead of the system's (`lb.tls.ca`)
    pub ca: Option<String>,
    /// Load the system's roots (an HTTPS `lb.url` without `lb.tls.ca`); reading them costs
    /// milliseconds every command, so only then
    pub system_roots: bool,
    /// (base URL, name): a request under the base goes to `https://name:port/...` (the name
    /// is the TLS server name and what the certificate is verified for), connected to the
    /// base's own address
    pub names: Vec<(String, String)>,
}

#[derive(Clone)]
pub struct Prober {
    client: reqwest::Client,
    /// A client that keeps one connection per host open between requests (the switch
    /// window's keep-alive checks), made on first use; every other probe uses a fresh
    /// connection
    kept_alive: Arc<std::sync::OnceLock<Result<reqwest::Client, String>>>,
    /// What both clients are made of (read once: roots, pinned addresses)
    settings: Arc<ClientSettings>,
    /// (base URL, TLS name), from `TlsProbe`
    tls_names: Vec<(String, String)>,
    /// (base URL, Host): a request under that URL carries that Host header, whatever the
    /// request says (nginx's servers answer by name when `lb.hosts` is set)
    hosts: Vec<(String, String)>,
    /// The app whose servers must answer: an answer naming another (`X-Bgd-App`, a shared
    /// nginx) is a failure, never evidence
    app: Option<String>,
}

/// How the probers' HTTP clients are made.
struct ClientSettings {
    socks: Option<String>,
    /// The system's roots (an HTTPS `lb.url` without `lb.tls.ca`)
    system_roots: bool,
    /// `lb.tls.ca`'s certificates, the only roots when given
    ca: Vec<reqwest::Certificate>,
    /// (TLS name, the addresses it is connected to)
    pins: Vec<(String, Vec<std::net::SocketAddr>)>,
}

impl ClientSettings {
    /// A client on a fresh connection per request, or (`kept_alive`) one kept open.
    fn build(&self, kept_alive: bool) -> anyhow::Result<reqwest::Client> {
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .tls_info(true)
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(usize::from(kept_alive))
            .user_agent(concat!("bgd/", env!("CARGO_PKG_VERSION")));
        if let Some(url) = &self.socks {
            builder = builder.proxy(reqwest::Proxy::all(url)?);
        }
        if !self.system_roots {
            builder = builder.tls_built_in_root_certs(false);
        }
        for cert in &self.ca {
            builder = builder.add_root_certificate(cert.clone());
        }
        for (name, addrs) in &self.pins {
            builder = builder.resolve_to_addrs(name, addrs);
        }
        Ok(builder.build()?)
    }
}

/// Whether `url` is `base` or a path under it.
fn under(url: &str, base: &str) -> bool {
    let base = base.trim_end_matches('/');
    url.strip_prefix(base)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'))
}

impl Prober {
    /// A prober that connects directly, or through `socks` (the URL of bgd's SOCKS5 proxy over the ssh
    /// connection to the Docker host: names are resolved and connected to there).
    /// `hosts`: (base URL, Host header) for the listeners that answer by name.
    pub fn new(
        socks: Option<&str>,
        hosts: Vec<(String, String)>,
        app: Option<String>,
        tls: TlsProbe,
    ) -> anyhow::Result<Prober> {
        let mut ca = Vec::new();
        if let Some(pem) = &tls.ca {
            ca = reqwest::Certificate::from_pem_bundle(pem.as_bytes())?;
        }
        // directly, a TLS name is connected to its base's address; through the ssh proxy,
        // the proxy knows the name stands for that address
        let mut pins = Vec::new();
        if socks.is_none() {
            for (base, name) in &tls.names {
                let url = reqwest::Url::parse(base)?;
                let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
                    continue;
                };
                let host = host.trim_start_matches('[').trim_end_matches(']');
                // the name must reach this address, never what DNS says of it
                let addrs: Vec<std::net::SocketAddr> =
                    std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
                        .map(Iterator::collect)
                        .map_err(|e| anyhow::anyhow!("cannot resolve {host} (of {base}): {e}"))?;
                if addrs.is_empty() {
                    anyhow::bail!("{host} (of {base}) has no address");
                }
                pins.push((name.clone(), addrs));
            }
        }
        let settings = Arc::new(ClientSettings {
            socks: socks.map(str::to_string),
            system_roots: tls.system_roots && tls.ca.is_none(),
            ca,
            pins,
        });
        Ok(Prober {
            client: settings.build(false)?,
            kept_alive: Arc::new(std::sync::OnceLock::new()),
            settings,
            tls_names: tls.names,
            hosts,
            app,
        })
    }

    /// Sends one probe. Never fails: a transport failure is a verdict too.
    pub async fn probe(&self, req: &Request<'_>) -> Verdict {
        let started = Instant::now();
        Verdict::of(self.send(&self.client, req).await, started)
    }

    /// `probe` on a connection kept open from one such probe to the next (its client is made
    /// on first use: only a switch window needs it).
    pub async fn probe_kept_alive(&self, req: &Request<'_>) -> Verdict {
        let started = Instant::now();
        let client = self
            .kept_alive
            .get_or_init(|| self.settings.build(true).map_err(|e| format!("{e:#}")));
        let sent = match client {
            Ok(client) => self.send(client, req).await,
            Err(e) => Err(format!("cannot make an HTTP client: {e}").into()),
        };
        Verdict::of(sent, started)
    }

    /// `path` on one replica of `color`, through the preview listener at `preview_url`: the
    /// `X-Bgd-Probe-Replica` header routes it to exactly that replica, of either color.
    pub async fn probe_replica(
        &self,
        preview_url: &str,
        path: &str,
        (color, server): (Color, &Server),
        timeout: Duration,
    ) -> Verdict {
        let key = server.probe_key(color);
        let mut req = Request::get(format!("{preview_url}{path}"), timeout);
        req.headers.push((PROBE_REPLICA_HEADER, &key));
        self.probe(&req).await
    }

    async fn send(&self, client: &reqwest::Client, req: &Request<'_>) -> Result<Answer, NoAnswer> {
        let (url, timeout) = (req.url.as_str(), req.timeout);
        let method = reqwest::Method::from_bytes(req.method.as_bytes())
            .map_err(|_| format!("bad method {}", req.method))?;
        let named = self.hosts.iter().find(|(base, _)| under(url, base));
        let tls_name = self
            .tls_names
            .iter()
            .find(|(base, _)| under(url, base))
            .map(|(_, name)| name.as_str());
        let sent = match tls_name {
            Some(name) => with_host(url, name),
            None => url.to_string(),
        };
        // messages name the address probed and, over HTTPS, the name verified
        let shown = match tls_name {
            Some(name) => format!("{url} (verified as {name})"),
            None => url.to_string(),
        };
        let url = shown.as_str();
        let mut builder = client.request(method, &sent).timeout(timeout);
        for (k, v) in &req.headers {
            // with names, the name picks the app's server: bgd's wins
            if named.is_some() && k.eq_ignore_ascii_case("host") {
                continue;
            }
            builder = builder.header(*k, *v);
        }
        if let Some((_, host)) = named {
            builder = builder.header("Host", host.as_str());
        }
        if !req.body.is_empty() {
            builder = builder.body(req.body.to_string());
        }
        let mut resp = builder.send().await.map_err(|e| NoAnswer {
            why: describe(&e, url, timeout),
            closed_unanswered: closed_unanswered(&e),
        })?;
        let status = resp.status().as_u16();
        let peer_certificate = resp
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|t| t.peer_certificate())
            .map(<[u8]>::to_vec);
        let headers: Vec<(String, String)> = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        // Read at most MAX_BODY: a streaming endpoint must not hold memory for the whole timeout.
        let mut body = Vec::new();
        while body.len() < MAX_BODY {
            match resp.chunk().await.map_err(|e| describe(&e, url, timeout))? {
                Some(chunk) => body.extend_from_slice(&chunk),
                None => break,
            }
        }
        body.truncate(MAX_BODY);
        let answered_by = headers_get(&headers, "x-bgd-app");
        if let (Some(app), Some(other)) = (self.app.as_deref(), answered_by) {
            if other != app {
                return Err(format!(
                    "{url} was answered by the server of app {other}, not {app} (a shared nginx routes that name or port elsewhere)"
                )
                .into());
            }
        }
        Ok(Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
            peer_certificate,
        })
    }
}

/// `url` with its host replaced by `name` (the port kept).
fn with_host(url: &str, name: &str) -> String {
    let Ok(mut u) = reqwest::Url::parse(url) else {
        return url.to_string();
    };
    match u.set_host(Some(name)) {
        Ok(()) => u.to_string(),
        Err(_) => url.to_string(),
    }
}

fn headers_get<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn describe(e: &reqwest::Error, url: &str, timeout: Duration) -> String {
    if e.is_timeout() {
        format!("{url}: no answer within {:.1}s", timeout.as_secs_f64())
    } else if let Some(why) = tls_failure(e) {
        format!("{url}: TLS failed: {why} (is nginx's certificate valid for the name bgd checks, and issued by the system's roots or lb.tls.ca?)")
    } else if e.is_connect() {
        format!("{url}: cannot connect (is the listener published and reachable from here?)")
    } else {
        let mut msg = format!("{url}: {e}");
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            msg.push_str(&format!(": {s}"));
            source = s.source();
        }
        msg
    }
}

/// Whether a request (its `send`, before any answer) failed because the server ended a
/// connection that was made: closed it (hyper's "connection closed before message completed")
/// or reset it, as or after the request went out. A timeout is not that, nor a connection or
/// TLS handshake that failed (`is_connect`: no connection was made).
fn closed_unanswered(e: &reqwest::Error) -> bool {
    if !e.is_request() || e.is_timeout() || e.is_connect() {
        return false;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_incomplete_message)
        {
            return true;
        }
        if s.downcast_ref::<std::io::Error>()
            .is_some_and(|io| ended(io.kind()))
        {
            return true;
        }
        source = s.source();
    }
    false
}

/// An I/O error that says the peer ended the connection (a reset, a write to a closed one, or
/// over TLS a close without its closing message).
fn ended(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    matches!(
        kind,
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
    )
}

/// What a TLS failure said (a certificate that does not verify, a failed handshake), when
/// that is why the request failed.
fn tls_failure(e: &reqwest::Error) -> Option<String> {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        let lower = text.to_ascii_lowercase();
        if lower.contains("certificate") || lower.contains("handshake") || lower.contains("tls") {
            return Some(text);
        }
        source = s.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body of 10 MiB, streamed: the probe keeps 64 KiB and closes the connection, so the
    /// server's writes fail long before it has sent it all.
    #[test]
    fn a_url_is_under_its_listeners_base_only() {
        assert!(under("http://127.0.0.1:8000", "http://127.0.0.1:8000"));
        assert!(under(
            "http://127.0.0.1:8000/health",
            "http://127.0.0.1:8000/"
        ));
        assert!(under("http://127.0.0.1:8000?x=1", "http://127.0.0.1:8000"));
        // another port that starts with the same digits is another listener
        assert!(!under("http://127.0.0.1:80001/", "http://127.0.0.1:8000"));
        assert!(!under("http://127.0.0.1:8001/", "http://127.0.0.1:8000"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_at_most_64_kib_and_closes() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let total = 10usize << 20;
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {total}\r\n\r\n");
            s.write_all(head.as_bytes()).unwrap();
            let chunk = vec![b'x'; 16 << 10];
            let mut sent = 0;
            while sent < total && s.write_all(&chunk).is_ok() {
                sent += chunk.len();
                std::thread::sleep(Duration::from_millis(2));
            }
            sent
        });
        let prober = Prober::new(None, Vec::new(), None, TlsProbe::default()).unwrap();
        let url = format!("http://127.0.0.1:{port}/");
        let verdict = prober
            .probe(&Request::get(url, Duration::from_secs(60)))
            .await;
        let answer = verdict.answer.expect("an answer");
        assert_eq!(answer.body.len(), MAX_BODY);
        // joined off the runtime, which must stay free to drop the connection
        let sent = tokio::task::spawn_blocking(move || server.join().unwrap())
            .await
            .unwrap();
        assert!(sent < 10 << 20, "the server sent it all: {sent} bytes");
    }

    fn verdict(status: u16, body: &str, headers: &[(&str, &str)]) -> Verdict {
        Verdict {
            answer: Ok(Answer {
                status,
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
                    .collect(),
                body: body.into(),
                peer_certificate: None,
            }),
            elapsed: Duration::from_millis(3),
            closed_unanswered: false,
        }
    }

    #[test]
    fn judges_status_body_headers() {
        let ok = verdict(
            200,
            "version=v2",
            &[("Content-Type", "text/plain; charset=utf-8")],
        );
        let headers: BTreeMap<String, String> =
            [("content-type".to_string(), "text/plain".to_string())].into();
        let expect = Expect {
            status: &[200],
            body_contains: Some("v2"),
            headers: Some(&headers),
            ..Default::default()
        };
        assert!(ok.check(&expect).is_ok());
        let bad = verdict(502, "bad gateway", &[]);
        let e = bad
            .check(&Expect {
                status: &[200, 204],
                ..Default::default()
            })
            .unwrap_err();
        assert!(
            e.contains("200 or 204") && e.contains("502") && e.contains("bad gateway"),
            "{e}"
        );
        let e = ok
            .check(&Expect {
                status: &[200],
                body_contains: Some("v3"),
                ..Default::default()
            })
            .unwrap_err();
        assert!(e.contains("\"v3\"") && e.contains("version=v2"), "{e}");
    }

    #[test]
    fn judges_color_and_upstream_before_status() {
        let from_blue = verdict(
            200,
            "ok",
            &[("X-Bgd-Color", "blue"), ("X-Bgd-Upstream", "10.0.0.3:8080")],
        );
        let e = from_blue
            .check(&Expect {
                status: &[200],
                color: Some(Color::Green),
                ..Default::default()
            })
            .unwrap_err();
        assert_eq!(e, "answered for color \"blue\", not green");
        let e = from_blue
            .check(&Expect {
                status: &[200],
                color: Some(Color::Blue),
                upstream: Some("10.0.0.9:8080"),
                ..Default::default()
            })
            .unwrap_err();
        assert!(
            e.contains("10.0.0.3:8080") && e.contains("10.0.0.9:8080"),
            "{e}"
        );
        // a template that does not send X-Bgd-Upstream is not judged on it
        let plain = verdict(200, "ok", &[("X-Bgd-Color", "blue")]);
        assert!(plain
            .check(&Expect {
                status: &[200],
                color: Some(Color::Blue),
                upstream: Some("10.0.0.9:8080"),
                ..Default::default()
            })
            .is_ok());
        let none = Verdict {
            answer: Err("cannot connect".into()),
            elapsed: Duration::ZERO,
            closed_unanswered: false,
        };
        assert_eq!(
            none.check(&Expect::default()).unwrap_err(),
            "cannot connect"
        );
    }

    /// What the server does with the second request on a kept-alive connection.
    #[derive(Clone, Copy)]
    enum Second {
        Close,
        Reset,
        Silent,
        CutBody,
        OtherApp,
    }

    /// The verdict of a second probe on a kept-alive connection whose first was answered.
    async fn second_on_kept_connection(second: Second) -> Verdict {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await
                .unwrap();
            let _ = s.read(&mut buf).await;
            let answer: &[u8] = match second {
                Second::Close => b"",
                Second::Reset => {
                    s.set_zero_linger().unwrap();
                    b""
                }
                Second::Silent => {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    b""
                }
                Second::CutBody => b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort",
                Second::OtherApp => {
                    b"HTTP/1.1 200 OK\r\nx-bgd-app: blog\r\ncontent-length: 0\r\n\r\n"
                }
            };
            let _ = s.write_all(answer).await;
            // dropped: closed, or reset with no linger
        });
        let prober =
            Prober::new(None, Vec::new(), Some("shop".into()), TlsProbe::default()).unwrap();
        let req = Request::get(format!("http://{addr}/health"), Duration::from_millis(500));
        let first = prober.probe_kept_alive(&req).await;
        assert!(
            first.answer.is_ok() && !first.closed_unanswered,
            "{first:?}"
        );
        let verdict = prober.probe_kept_alive(&req).await;
        server.abort();
        verdict
    }

    /// Only a connection the server closed or reset before answering is "closed unanswered":
    /// a timeout, an answer cut short, another app's answer or a refused connect is not.
    #[tokio::test]
    async fn tells_a_connection_closed_unanswered_from_other_failures() {
        for (second, closed) in [
            (Second::Close, true),
            (Second::Reset, true),
            (Second::Silent, false),
            (Second::CutBody, false),
            (Second::OtherApp, false),
        ] {
            let v = second_on_kept_connection(second).await;
            assert!(v.answer.is_err(), "{v:?}");
            assert_eq!(v.closed_unanswered, closed, "{v:?}");
        }
        // nothing listens there any more: no connection was made
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let prober = Prober::new(None, Vec::new(), None, TlsProbe::default()).unwrap();
        let v = prober
            .probe_kept_alive(&Request::get(
                format!("http://127.0.0.1:{port}/"),
                Duration::from_millis(500),
            ))
            .await;
        assert!(v.answer.is_err() && !v.closed_unanswered, "{v:?}");
    }

    #[test]
    fn reads_bgd_headers() {
        let v = verdict(
            200,
            "",
            &[("X-Bgd-Color", "green"), ("X-Bgd-Generation", "12")],
        );
        let a = v.answer.unwrap();
        assert_eq!(a.color(), Some("green"));
        assert_eq!(a.generation(), Some(12));
    }
}
