//! bgd's demo and test app: a tiny HTTP/1.1 server with no dependencies, built as a static
//! binary so it runs in a `FROM scratch` image.
//!
//! Routes:
//!   GET  /            `demo-app version=<v> host=<container>`; header `X-App-Version`
//!   GET  /health      200 `ok` (or 500, see the switches)
//!   GET  /version     the version alone
//!   GET  /slow?ms=N   holds the request N ms, then answers like `/`
//!   GET  /stream?bytes=N&every_ms=M
//!                     200 with a body of N bytes (default 10 MiB), sent 64 KiB every M ms
//!                     (default 50): a health endpoint that streams
//!   POST /echo        answers with the number of bytes received
//!   GET  /drop        closes the connection without answering (what a crashing worker does:
//!                     nginx sees an upstream error)
//!   POST /login       starts a session: `Set-Cookie: sid=<id>` and `{"token":"<id>"}`
//!   GET  /me          200 when the request's `sid` cookie (or `X-Token` header) names a
//!                     session this app knows, 401 otherwise
//!
//! Switches (environment):
//!   PORT                      port to listen on (default 8080)
//!   DEMO_LISTEN_ADDR=IP       address to listen on (default 0.0.0.0; 127.0.0.1 is the mistake
//!                             of a server that only its own container can reach)
//!   DEMO_VERSION              the version it reports (the image sets it)
//!   DEMO_FAIL_HEALTH=1        /health answers 500
//!   DEMO_START_DELAY_MS=N     wait N ms before listening (slow start)
//!   DEMO_FAIL_AFTER_MS=N      N ms after start, /health and / answer 500
//!   DEMO_IDLE_TIMEOUT_MS=N    close idle keep-alive connections after N ms (default 75000)
//!   DEMO_ERROR_PERCENT=N      `/` answers 500 to N of every 100 requests, spread evenly
//!                             (a flaky release)
//!   DEMO_DELAY_MS=N           `/` and `POST /echo` wait N ms before answering (a slow
//!                             release: a canary judged on its p95 must see it on every
//!                             client's requests, not only on the GETs)
//!   DEMO_ECHO_VAR=A,B         print A=<its value> and B=... at start (tests that secrets in
//!                             logs are redacted by bgd)
//!
//! Sessions live in this process's memory (lost at a switch: another container does not know
//! them), or with `DEMO_SESSION_DIR=/dir` in files there (a volume both colors mount: a
//! stand-in for a shared session store).
//!
//! A stand-in for a shared database schema: `DEMO_SCHEMA_FILE` (e.g. /data/schema on a volume
//! both colors mount) holds a schema number. Each version works with schemas up to
//! `DEMO_SCHEMA_MAX` (default: its own number, v1 -> 1); past that, `/` answers 500.
//!
//! `demo-app scratch-db create|drop` stands in for making and dropping a scratch database
//! (see `scratch_db`).
//!
//! `demo-app migrate` is a stand-in migration: it prints what it does, writes
//! `DEMO_MIGRATE_SCHEMA` (if set) into `DEMO_SCHEMA_FILE`, and exits with `DEMO_MIGRATE_EXIT`
//! (default 0) after `DEMO_MIGRATE_MS` (default 100) ms.
//!
//! On SIGTERM it stops accepting, finishes the requests in flight, closes idle connections
//! and exits 0.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

static SHUTTING_DOWN: AtomicBool = AtomicBool::new(false);
/// Sessions kept in memory (without DEMO_SESSION_DIR)
static SESSIONS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

extern "C" fn on_sigterm(_: i32) {
    SHUTTING_DOWN.store(true, Ordering::SeqCst);
}

extern "C" {
    fn signal(signum: i32, handler: extern "C" fn(i32)) -> usize;
}

const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;

struct Settings {
    version: String,
    host: String,
    fail_health: bool,
    fail_after: Option<Duration>,
    idle_timeout: Duration,
    started: Instant,
    /// `/` answers 500 to this many of every 100 requests
    error_percent: usize,
    /// `/` waits this long
    delay: Option<Duration>,
}

/// Requests to `/` so far, for `DEMO_ERROR_PERCENT`
static ROOT_REQUESTS: AtomicUsize = AtomicUsize::new(0);

impl Settings {
    fn failing(&self) -> bool {
        self.fail_after.is_some_and(|d| self.started.elapsed() >= d)
    }

    /// The shared schema is newer than this version understands.
    fn schema_too_new(&self) -> Option<String> {
        let file = std::env::var("DEMO_SCHEMA_FILE").ok()?;
        let schema: u32 = std::fs::read_to_string(file).ok()?.trim().parse().ok()?;
        let max: u32 = std::env::var("DEMO_SCHEMA_MAX")
            .ok()
            .and_then(|v| v.parse().ok())
            .or_else(|| self.version.trim_start_matches('v').parse().ok())?;
        (schema > max)
            .then(|| format!("schema {schema} is newer than this version understands ({max})\n"))
    }
}

fn env_ms(name: &str) -> Option<Duration> {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_millis)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("scratch-db") {
        scratch_db(args.get(2).map(String::as_str));
    }
    if args.get(1).map(String::as_str) == Some("migrate") {
        migrate();
    }
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        signal(SIGTERM, on_sigterm);
        signal(SIGINT, on_sigterm);
    }
    let started = Instant::now();
    if let Ok(names) = std::env::var("DEMO_ECHO_VAR") {
        for name in names.split(',') {
            eprintln!("{name}={}", std::env::var(name).unwrap_or_default());
        }
    }
    if let Some(delay) = env_ms("DEMO_START_DELAY_MS") {
        eprintln!("demo-app: slow start, waiting {delay:?}");
        thread::sleep(delay);
    }
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".into());
    let addr = std::env::var("DEMO_LISTEN_ADDR").unwrap_or_else(|_| "0.0.0.0".into());
    let settings = Arc::new(Settings {
        version: std::env::var("DEMO_VERSION").unwrap_or_else(|_| "dev".into()),
        host: std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "unknown".into()),
        fail_health: std::env::var("DEMO_FAIL_HEALTH").is_ok_and(|v| v == "1"),
        fail_after: env_ms("DEMO_FAIL_AFTER_MS"),
        idle_timeout: env_ms("DEMO_IDLE_TIMEOUT_MS").unwrap_or(Duration::from_secs(75)),
        started,
        error_percent: std::env::var("DEMO_ERROR_PERCENT")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0),
        delay: env_ms("DEMO_DELAY_MS"),
    });
    let listener = match TcpListener::bind(format!("{addr}:{port}")) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("demo-app: cannot listen on port {port}: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = listener.set_nonblocking(true) {
        eprintln!("demo-app: {e}");
        std::process::exit(1);
    }
    eprintln!(
        "demo-app {} listening on :{port} (host {})",
        settings.version, settings.host
    );
    let in_flight = Arc::new(AtomicUsize::new(0));
    while !SHUTTING_DOWN.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let settings = Arc::clone(&settings);
                let in_flight = Arc::clone(&in_flight);
                thread::spawn(move || {
                    let _ = serve(stream, &settings, &in_flight);
                });
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(5))
            }
            Err(e) => eprintln!("demo-app: accept: {e}"),
        }
    }
    drop(listener);
    eprintln!("demo-app: SIGTERM, finishing requests in flight");
    let deadline = Instant::now() + Duration::from_secs(60);
    while in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    eprintln!("demo-app: stopped");
}

/// `demo-app scratch-db create|drop`: a stand-in for a scratch database, for a rehearsed
/// migration: `create` copies the schema file `DEMO_SCRATCH_SOURCE` to `DEMO_SCHEMA_FILE`,
/// `drop` removes `DEMO_SCHEMA_FILE`.
fn scratch_db(op: Option<&str>) -> ! {
    let target = std::env::var("DEMO_SCHEMA_FILE").unwrap_or_default();
    let result = match op {
        Some("create") => {
            let source = std::env::var("DEMO_SCRATCH_SOURCE").unwrap_or_default();
            std::fs::copy(&source, &target)
                .map(|_| format!("scratch-db: {source} copied to {target}"))
        }
        Some("drop") => {
            std::fs::remove_file(&target).map(|_| format!("scratch-db: {target} dropped"))
        }
        _ => {
            eprintln!("usage: demo-app scratch-db create|drop");
            std::process::exit(2);
        }
    };
    match result {
        Ok(said) => {
            println!("{said}");
            std::process::exit(0)
        }
        Err(e) => {
            eprintln!("scratch-db: {e}");
            std::process::exit(1)
        }
    }
}

fn migrate() -> ! {
    let ms = env_ms("DEMO_MIGRATE_MS").unwrap_or(Duration::from_millis(100));
    let code: i32 = std::env::var("DEMO_MIGRATE_EXIT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    println!("migrate: applying schema changes");
    thread::sleep(ms);
    if let (Ok(file), Ok(schema)) = (
        std::env::var("DEMO_SCHEMA_FILE"),
        std::env::var("DEMO_MIGRATE_SCHEMA"),
    ) {
        if code == 0 {
            if let Err(e) = std::fs::write(&file, &schema) {
                eprintln!("migrate: cannot write {file}: {e}");
                std::process::exit(1);
            }
            println!("migrate: schema is now {schema}");
        }
    }
    if code == 0 {
        println!("migrate: done");
    } else {
        eprintln!("migrate: failed with code {code}");
    }
    std::process::exit(code);
}

struct Request {
    method: String,
    target: String,
    close: bool,
    body_len: usize,
    /// the session id from the `sid` cookie or the `X-Token` header
    session: Option<String>,
}

/// Reads one request head and body. `Ok(None)` means the peer closed, the idle timeout ran
/// out, or shutdown began while the connection was idle.
fn read_request(reader: &mut BufReader<TcpStream>, s: &Settings) -> io::Result<Option<Request>> {
    let idle_since = Instant::now();
    let mut line = String::new();
    // Poll with a short read timeout so an idle connection notices shutdown quickly.
    loop {
        match reader.read_line(&mut line) {
            Ok(0) => return Ok(None),
            Ok(_) => break,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if !line.is_empty() {
                    continue;
                }
                if SHUTTING_DOWN.load(Ordering::SeqCst) || idle_since.elapsed() >= s.idle_timeout {
                    return Ok(None);
                }
            }
            Err(e) => return Err(e),
        }
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("/").to_string();
    let http10 = parts.next().is_some_and(|v| v == "HTTP/1.0");
    let mut close = http10;
    let mut body_len = 0usize;
    let mut session = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 {
            return Ok(None);
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "content-length" {
                body_len = v.parse().unwrap_or(0);
            } else if k == "connection" {
                close = v.eq_ignore_ascii_case("close");
            } else if k == "cookie" {
                session = v
                    .split(';')
                    .find_map(|c| c.trim().strip_prefix("sid="))
                    .map(str::to_string)
                    .or(session);
            } else if k == "x-token" {
                session = Some(v.to_string());
            }
        }
    }
    let mut body = vec![0u8; body_len];
    reader.read_exact(&mut body)?;
    Ok(Some(Request {
        method,
        target,
        close,
        body_len,
        session,
    }))
}

fn serve(stream: TcpStream, s: &Settings, in_flight: &AtomicUsize) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_millis(200)))?;
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    while let Some(req) = read_request(&mut reader, s)? {
        if req.target.starts_with("/stream") {
            return stream_body(&mut writer, &req, s);
        }
        if req.target == "/drop" {
            return Ok(());
        }
        in_flight.fetch_add(1, Ordering::SeqCst);
        let (status, body, extra) = match (req.method.as_str(), req.target.as_str()) {
            ("POST", "/login") => {
                let sid = new_session();
                (
                    "200 OK",
                    format!("{{\"token\":\"{sid}\"}}\n"),
                    format!("Set-Cookie: sid={sid}; Path=/; HttpOnly\r\n"),
                )
            }
            ("GET" | "HEAD", "/me") => {
                match req.session.as_deref().filter(|sid| known_session(sid)) {
                    Some(_) => ("200 OK", "logged in\n".to_string(), String::new()),
                    None => (
                        "401 Unauthorized",
                        "no such session\n".to_string(),
                        String::new(),
                    ),
                }
            }
            _ => {
                let (status, body) = respond(&req, s);
                (status, body, String::new())
            }
        };
        let close = req.close || SHUTTING_DOWN.load(Ordering::SeqCst);
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nX-App-Version: {}\r\nX-App-Host: {}\r\n{extra}Connection: {}\r\n\r\n",
            body.len(),
            s.version,
            s.host,
            if close { "close" } else { "keep-alive" }
        );
        let result = writer
            .write_all(head.as_bytes())
            .and_then(|_| writer.write_all(body.as_bytes()))
            .and_then(|_| writer.flush());
        in_flight.fetch_sub(1, Ordering::SeqCst);
        result?;
        if close {
            break;
        }
    }
    Ok(())
}

/// A new session: in DEMO_SESSION_DIR when set (shared), else in this process's memory.
fn new_session() -> String {
    let mut bytes = [0u8; 16];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_err()
    {
        let t = Instant::now().elapsed().as_nanos() ^ u128::from(std::process::id());
        bytes.copy_from_slice(&t.to_le_bytes());
    }
    let sid: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    match std::env::var("DEMO_SESSION_DIR") {
        Ok(dir) => {
            let _ = std::fs::write(format!("{dir}/{sid}"), b"");
        }
        Err(_) => {
            if let Ok(mut all) = SESSIONS.lock() {
                all.push(sid.clone());
            }
        }
    }
    sid
}

fn known_session(sid: &str) -> bool {
    if !sid.chars().all(|c| c.is_ascii_hexdigit()) || sid.is_empty() {
        return false;
    }
    match std::env::var("DEMO_SESSION_DIR") {
        Ok(dir) => std::path::Path::new(&format!("{dir}/{sid}")).exists(),
        Err(_) => SESSIONS
            .lock()
            .is_ok_and(|all| all.iter().any(|s| s == sid)),
    }
}

/// `/stream`: a long body sent slowly, then the connection closes. Stops when the client
/// goes away.
fn stream_body(writer: &mut TcpStream, req: &Request, s: &Settings) -> io::Result<()> {
    let query = req.target.split_once('?').map_or("", |(_, q)| q);
    let param = |name: &str, default: u64| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(default)
    };
    let (total, every) = (param("bytes", 10 << 20), param("every_ms", 50));
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {total}\r\nX-App-Version: {}\r\nConnection: close\r\n\r\n",
        s.version
    );
    writer.write_all(head.as_bytes())?;
    let chunk = vec![b'x'; 64 << 10];
    let mut sent = 0u64;
    while sent < total {
        let n = chunk.len().min((total - sent) as usize);
        writer.write_all(&chunk[..n])?;
        sent += n as u64;
        thread::sleep(Duration::from_millis(every));
    }
    writer.flush()
}

fn respond(req: &Request, s: &Settings) -> (&'static str, String) {
    let (path, query) = req.target.split_once('?').unwrap_or((&req.target, ""));
    let hello = || format!("demo-app version={} host={}\n", s.version, s.host);
    match (req.method.as_str(), path) {
        ("GET" | "HEAD", "/health") => {
            if s.fail_health || s.failing() {
                ("500 Internal Server Error", "unhealthy\n".into())
            } else {
                ("200 OK", "ok\n".into())
            }
        }
        ("GET" | "HEAD", "/version") => ("200 OK", format!("{}\n", s.version)),
        ("GET" | "HEAD", "/slow") => {
            let ms = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("ms="))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(1000);
            thread::sleep(Duration::from_millis(ms));
            ("200 OK", hello())
        }
        ("POST", "/echo") => {
            if let Some(delay) = s.delay {
                thread::sleep(delay);
            }
            ("200 OK", format!("received {} bytes\n", req.body_len))
        }
        ("GET" | "HEAD", "/") => {
            if let Some(delay) = s.delay {
                thread::sleep(delay);
            }
            let n = ROOT_REQUESTS.fetch_add(1, Ordering::SeqCst);
            if (n + 1) * s.error_percent / 100 != n * s.error_percent / 100 {
                ("500 Internal Server Error", "flaky\n".into())
            } else if s.failing() {
                ("500 Internal Server Error", "failing\n".into())
            } else if let Some(why) = s.schema_too_new() {
                ("500 Internal Server Error", why)
            } else {
                ("200 OK", hello())
            }
        }
        _ => ("404 Not Found", "not found\n".into()),
    }
}
