//! bgd-load: a load generator that never retries, for proving switches lossless.
//!
//! Clients (each a thread with its own connection):
//!   --keepalive N   keep-alive GETs as fast as the server answers
//!   --paced N       keep-alive GETs with --pace-ms between them (idle gaps are where a reload
//!                   closes connections under a client)
//!   --close N       one GET per connection, `Connection: close`
//!   --post N        keep-alive POSTs of a small body to --post-path, --post-pace-ms apart
//!                   (0 by default; e.g. the app server's idle timeout, to meet its closes)
//!
//! With --post-close, POST clients send `Connection: close` and open a fresh connection for
//! each request: their idle gaps (--post-pace-ms) are then felt only by nginx's pooled
//! connections to the app, not by the client's own connection to nginx (which a reload
//! closes when idle: a blind write on it is lost whatever the upstream).
//!
//! A failure is any connect error, reset, EOF before the full response, timeout, 5xx, or a
//! wrong color: with --expect-file, the file holds `any` or a color; a response to a request
//! sent after the file last changed must carry that color in X-Bgd-Color (or, with
//! --host NAME sends that Host header (a virtual host of a shared nginx) instead of the URL's.
//! --color-header NAME, in that header: e.g. the app's own version header, to see which
//! release really answered).
//!
//! Runs until --stop-file exists or --duration passes, then prints one JSON summary on stdout
//! (per client kind: requests, failures, and the p50/p99 latency of the answered requests).
//! Only loopback targets are accepted.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread;
use std::time::{Duration, Instant};

const IO_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_EXAMPLES: usize = 20;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    KeepAlive,
    Paced,
    Close,
    Post,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::KeepAlive => "keepalive",
            Kind::Paced => "paced",
            Kind::Close => "close",
            Kind::Post => "post",
        }
    }
}

struct Options {
    addr: SocketAddr,
    host: String,
    path: String,
    post_path: String,
    clients: Vec<(Kind, usize)>,
    pace: Duration,
    post_pace: Duration,
    post_close: bool,
    duration: Duration,
    stop_file: Option<PathBuf>,
    expect_file: Option<PathBuf>,
    /// lower-case name of the header that says who answered
    color_header: String,
}

#[derive(Default)]
struct Tally {
    requests: u64,
    failures: u64,
    kinds: BTreeMap<String, u64>,
    colors: BTreeMap<String, u64>,
    by_client: BTreeMap<String, (u64, u64)>,
    /// Each answered request's latency (µs, from sending it to reading the whole answer)
    latencies: BTreeMap<String, Vec<u32>>,
    examples: Vec<String>,
}

/// What the responses must show, and since when.
struct Expectation {
    color: String,
    since: Instant,
}

struct Shared {
    stop: AtomicBool,
    expect: RwLock<Expectation>,
    tally: Mutex<Tally>,
    started: Instant,
}

impl Shared {
    fn record(
        &self,
        kind: Kind,
        outcome: Result<Option<String>, (&'static str, String)>,
        took: Duration,
    ) {
        let Ok(mut t) = self.tally.lock() else { return };
        t.requests += 1;
        if outcome.is_ok() {
            let us = took.as_micros().min(u32::MAX as u128) as u32;
            t.latencies.entry(kind.name().into()).or_default().push(us);
        }
        let entry = t.by_client.entry(kind.name().into()).or_default();
        entry.0 += 1;
        match outcome {
            Ok(color) => {
                *t.colors
                    .entry(color.unwrap_or_else(|| "none".into()))
                    .or_default() += 1;
            }
            Err((what, detail)) => {
                entry.1 += 1;
                t.failures += 1;
                *t.kinds.entry(what.into()).or_default() += 1;
                if t.examples.len() < MAX_EXAMPLES {
                    let at = self.started.elapsed().as_millis();
                    t.examples
                        .push(format!("{at}ms {}: {what}: {detail}", kind.name()));
                }
            }
        }
    }
}

fn usage(msg: &str) -> ! {
    eprintln!("bgd-load: {msg}");
    eprintln!(
        "usage: bgd-load --url http://127.0.0.1:PORT/PATH [--keepalive N] [--paced N] [--close N] [--post N]\n\
         \x20               [--pace-ms MS] [--post-path PATH] [--duration SECS] [--stop-file F] [--expect-file F]\n\
         \x20               [--post-pace-ms MS] [--post-close] [--color-header NAME] [--host NAME]"
    );
    std::process::exit(2);
}

fn parse_args() -> Options {
    let mut args = std::env::args().skip(1);
    let mut url = None;
    let mut clients = Vec::new();
    let mut pace = Duration::from_millis(10);
    let mut duration = Duration::from_secs(60);
    let mut stop_file = None;
    let mut expect_file = None;
    let mut post_path = "/echo".to_string();
    let mut post_pace = Duration::ZERO;
    let mut post_close = false;
    let mut color_header = "x-bgd-color".to_string();
    let mut host_header = None;
    while let Some(a) = args.next() {
        let mut val = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{a} needs a value")))
        };
        let num = |v: String| {
            v.parse::<u64>()
                .unwrap_or_else(|_| usage(&format!("{a}: not a number: {v}")))
        };
        match a.as_str() {
            "--url" => url = Some(val()),
            "--keepalive" => clients.push((Kind::KeepAlive, num(val()) as usize)),
            "--paced" => clients.push((Kind::Paced, num(val()) as usize)),
            "--close" => clients.push((Kind::Close, num(val()) as usize)),
            "--post" => clients.push((Kind::Post, num(val()) as usize)),
            "--pace-ms" => pace = Duration::from_millis(num(val())),
            "--duration" => duration = Duration::from_secs(num(val())),
            "--stop-file" => stop_file = Some(PathBuf::from(val())),
            "--expect-file" => expect_file = Some(PathBuf::from(val())),
            "--post-path" => post_path = val(),
            "--post-pace-ms" => post_pace = Duration::from_millis(num(val())),
            "--post-close" => {
                post_close = true;
                continue;
            }
            "--color-header" => color_header = val().to_ascii_lowercase(),
            "--host" => {
                let h = val();
                if h.is_empty()
                    || !h
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c))
                {
                    usage(&format!("--host: not a host name: {h}"));
                }
                host_header = Some(h);
            }
            "-h" | "--help" => usage("help"),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    let url = url.unwrap_or_else(|| usage("--url is required"));
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| usage("only http:// URLs"));
    let (hostport, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let addr: SocketAddr = hostport.parse().unwrap_or_else(|_| {
        usage("the URL needs an IP address and port, e.g. http://127.0.0.1:8000/")
    });
    if !addr.ip().is_loopback() {
        usage("load is only sent to loopback addresses");
    }
    if clients.iter().all(|(_, n)| *n == 0) {
        clients.push((Kind::KeepAlive, 1));
    }
    Options {
        addr,
        host: host_header.unwrap_or_else(|| hostport.to_string()),
        path,
        post_path,
        post_pace,
        post_close,
        clients,
        pace,
        duration,
        stop_file,
        expect_file,
        color_header,
    }
}

/// Reads one HTTP/1.1 response. Returns (status, the color header, server wants close).
fn read_response(
    reader: &mut BufReader<TcpStream>,
    color_header: &str,
) -> Result<(u16, Option<String>, bool), (&'static str, String)> {
    let io = |e: std::io::Error| -> (&'static str, String) {
        match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                ("timeout", e.to_string())
            }
            std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe => ("reset", e.to_string()),
            std::io::ErrorKind::UnexpectedEof => ("eof", e.to_string()),
            _ => ("io", e.to_string()),
        }
    };
    let mut line = String::new();
    if reader.read_line(&mut line).map_err(io)? == 0 {
        return Err(("eof", "connection closed before the response".into()));
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or(("bad-response", format!("status line {line:?}")))?;
    let mut length: Option<usize> = None;
    let mut chunked = false;
    let mut close = false;
    let mut color = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).map_err(io)? == 0 {
            return Err(("eof", "connection closed in the headers".into()));
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            match k.as_str() {
                "content-length" => length = v.parse().ok(),
                "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
                "connection" => close = v.eq_ignore_ascii_case("close"),
                k if k == color_header => color = Some(v.to_string()),
                _ => {}
            }
        }
    }
    if chunked {
        loop {
            let mut size = String::new();
            if reader.read_line(&mut size).map_err(io)? == 0 {
                return Err(("eof", "connection closed in a chunked body".into()));
            }
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| ("bad-response", format!("chunk size {size:?}")))?;
            let mut buf = vec![0u8; n + 2];
            reader.read_exact(&mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
        }
    } else if let Some(n) = length {
        let mut buf = vec![0u8; n];
        reader.read_exact(&mut buf).map_err(io)?;
    } else {
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).map_err(io)?;
        close = true;
    }
    Ok((status, color, close))
}

fn connect(addr: SocketAddr) -> Result<BufReader<TcpStream>, (&'static str, String)> {
    let s =
        TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(|e| ("connect", e.to_string()))?;
    s.set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| ("connect", e.to_string()))?;
    s.set_write_timeout(Some(IO_TIMEOUT))
        .map_err(|e| ("connect", e.to_string()))?;
    let _ = s.set_nodelay(true);
    Ok(BufReader::new(s))
}

fn client(kind: Kind, o: Arc<Options>, shared: Arc<Shared>) {
    let mut conn: Option<BufReader<TcpStream>> = None;
    let body = "x".repeat(512);
    while !shared.stop.load(Ordering::Relaxed) {
        let sent_at = Instant::now();
        let request = match kind {
            Kind::Post => format!(
                "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n{body}",
                o.post_path,
                o.host,
                body.len(),
                if o.post_close { "Connection: close\r\n" } else { "" }
            ),
            Kind::Close => format!("GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", o.path, o.host),
            _ => format!("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n", o.path, o.host),
        };
        let outcome = (|| {
            if conn.is_none() {
                conn = Some(connect(o.addr)?);
            }
            let reader = conn.as_mut().ok_or(("io", "no connection".to_string()))?;
            reader
                .get_mut()
                .write_all(request.as_bytes())
                .map_err(|e| ("reset", format!("write: {e}")))?;
            read_response(reader, &o.color_header)
        })();
        let result = match outcome {
            Ok((status, color, close)) => {
                if close || kind == Kind::Close || (kind == Kind::Post && o.post_close) {
                    conn = None;
                }
                if status >= 500 {
                    Err((
                        "status-5xx",
                        format!("status {status} from {}", color.as_deref().unwrap_or("?")),
                    ))
                } else {
                    let expect = shared.expect.read().ok().and_then(|e| {
                        (e.color != "any" && sent_at >= e.since).then(|| e.color.clone())
                    });
                    match (expect, &color) {
                        (Some(want), got) if got.as_deref() != Some(want.as_str()) => Err((
                            "wrong-color",
                            format!("expected {want}, got {}", got.as_deref().unwrap_or("none")),
                        )),
                        _ => Ok(color),
                    }
                }
            }
            Err(e) => {
                conn = None;
                Err(e)
            }
        };
        let failed = result.is_err();
        shared.record(kind, result, sent_at.elapsed());
        if failed && conn.is_none() {
            // do not spin on a refused port
            thread::sleep(Duration::from_millis(5));
        }
        if kind == Kind::Paced {
            thread::sleep(o.pace);
        }
        if kind == Kind::Post && !o.post_pace.is_zero() {
            thread::sleep(o.post_pace);
        }
    }
}

fn main() {
    let o = Arc::new(parse_args());
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        expect: RwLock::new(Expectation {
            color: "any".into(),
            since: Instant::now(),
        }),
        tally: Mutex::new(Tally::default()),
        started: Instant::now(),
    });
    let mut handles = Vec::new();
    for (kind, n) in o.clients.clone() {
        for _ in 0..n {
            let (o, shared) = (Arc::clone(&o), Arc::clone(&shared));
            handles.push(thread::spawn(move || client(kind, o, shared)));
        }
    }
    // The monitor: the expectation file and the stop conditions.
    let deadline = Instant::now() + o.duration;
    let mut last_expect = String::from("any");
    loop {
        if Instant::now() >= deadline || o.stop_file.as_ref().is_some_and(|f| f.exists()) {
            break;
        }
        if let Some(f) = &o.expect_file {
            if let Ok(text) = std::fs::read_to_string(f) {
                let want = text.trim().to_string();
                if !want.is_empty() && want != last_expect {
                    if let Ok(mut e) = shared.expect.write() {
                        *e = Expectation {
                            color: want.clone(),
                            since: Instant::now(),
                        };
                    }
                    last_expect = want;
                }
            }
        }
        thread::sleep(Duration::from_millis(2));
    }
    shared.stop.store(true, Ordering::SeqCst);
    for h in handles {
        let _ = h.join();
    }
    let elapsed = shared.started.elapsed();
    let t = match shared.tally.lock() {
        Ok(t) => t,
        Err(p) => p.into_inner(),
    };
    let kinds: Vec<String> = t
        .kinds
        .iter()
        .map(|(k, v)| format!("\"{k}\":{v}"))
        .collect();
    let colors: Vec<String> = t
        .colors
        .iter()
        .map(|(k, v)| format!("{}:{v}", json_str(k)))
        .collect();
    let clients: Vec<String> = t
        .by_client
        .iter()
        .map(|(k, (r, f))| {
            let mut l = t.latencies.get(k).cloned().unwrap_or_default();
            l.sort_unstable();
            let pct = |p: usize| {
                if l.is_empty() {
                    "null".to_string()
                } else {
                    let rank = (l.len() * p).div_ceil(100).max(1);
                    format!("{:.3}", f64::from(l[rank - 1]) / 1000.0)
                }
            };
            format!(
                "\"{k}\":{{\"requests\":{r},\"failures\":{f},\"p50_ms\":{},\"p99_ms\":{}}}",
                pct(50),
                pct(99)
            )
        })
        .collect();
    let examples: Vec<String> = t.examples.iter().map(|e| json_str(e)).collect();
    println!(
        "{{\"requests\":{},\"failures\":{},\"failure_kinds\":{{{}}},\"colors\":{{{}}},\"clients\":{{{}}},\"duration_ms\":{},\"examples\":[{}]}}",
        t.requests,
        t.failures,
        kinds.join(","),
        colors.join(","),
        clients.join(","),
        elapsed.as_millis(),
        examples.join(",")
    );
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
