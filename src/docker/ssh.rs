//! `DOCKER_HOST=ssh://[user@]host[:port]`, the way the docker CLI does it: every connection to
//! the Engine API is one `ssh [user@]host docker system dial-stdio` process whose stdin and
//! stdout carry the bytes. bgd listens on a private unix socket and hands each connection
//! bollard opens to a new ssh process, so bollard itself only ever sees a unix socket.
//!
//! ssh's own configuration applies (`~/.ssh/config`, the agent, known_hosts); `BGD_SSH_COMMAND`
//! replaces `ssh` and its options, like git's `GIT_SSH_COMMAND`. bgd adds `BatchMode=yes`: a
//! deploy must never stop at a password prompt. The remote host needs the docker CLI.
//!
//! bollard's own clients open a connection per API call, which over ssh means a remote
//! `docker system dial-stdio` per call (a process start on the host, each time). bgd gives
//! bollard a pooled HTTP/1.1 client instead (`pooled`): calls reuse idle connections, so a
//! command starts about as many ssh sessions as it makes calls at once.
//!
//! bgd's HTTP probes travel the same way (`Tunnel::socks`): a SOCKS5 proxy on this machine's
//! loopback, open only to bgd (a random per-run password) and only to nginx's listeners (the
//! host:port pairs of `lb.url` and `lb.preview_url`), whose every connection is `ssh -W`.
//!
//! All of it is multiplexed over one ssh connection (ControlMaster). sshd allows 10 sessions
//! per connection by default (`MaxSessions`) and refuses more; ssh then opens extra connections,
//! which sshd throttles (`MaxStartups`). So bgd holds at most `API_SESSIONS` + `PROBE_SESSIONS`
//! sessions at once: further calls wait for one, never fail for want of one.
//!
//! The processes die with bgd: when bgd exits, their stdin closes and ssh ends.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Engine API connections open at once over the ssh connection (each one ssh session).
const API_SESSIONS: usize = 6;
/// Probe connections (`ssh -W`) open at once; with `API_SESSIONS`, within sshd's default
/// `MaxSessions` of 10.
const PROBE_SESSIONS: usize = 3;
/// Longest a client may take to say what it wants from the SOCKS proxy.
const SOCKS_HANDSHAKE_LIMIT: Duration = Duration::from_secs(5);

/// Where `DOCKER_HOST=ssh://...` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

impl Target {
    /// How a user would run ssh to it: `ssh -p 2222 deploy@host`.
    pub fn ssh_line(&self) -> String {
        let port = self.port.map_or(String::new(), |p| format!("-p {p} "));
        let user = self
            .user
            .as_deref()
            .map_or(String::new(), |u| format!("{u}@"));
        format!("ssh {port}{user}{}", self.host)
    }
}

/// Parses `ssh://[user@]host[:port]`. Anything that ssh could read as an option, or that is
/// not a plain user, host or port, is refused.
pub fn parse(url: &str) -> Result<Target, String> {
    let bad = |why: &str| {
        format!("{url:?} is not an ssh:// Docker host ({why}); use ssh://[user@]host[:port]")
    };
    let rest = url.strip_prefix("ssh://").ok_or_else(|| bad("no ssh://"))?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') || rest.contains('?') || rest.contains('#') {
        return Err(bad("a path is not supported"));
    }
    let (user, hostport) = match rest.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    if let Some(u) = user {
        let ok = !u.is_empty()
            && !u.starts_with('-')
            && u.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !ok {
            return Err(bad("the user name"));
        }
    }
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| bad("an unclosed ["))?;
        (h, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    let host_ok = !host.is_empty()
        && !host.starts_with('-')
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
    if !host_ok {
        return Err(bad("the host name"));
    }
    let port = match port {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| bad("the port"))?,
        ),
    };
    Ok(Target {
        user: user.map(str::to_string),
        host: host.to_string(),
        port,
    })
}

/// What one ssh process carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Carry {
    /// Nothing: the connection itself (`-M -N`), which the others run through
    Master,
    /// The Engine API: `docker system dial-stdio` on the host
    Docker,
    /// A TCP connection from the host to `host:port` (`ssh -W`): nginx's listeners as the
    /// Docker host sees them
    Tcp(String, u16),
}

/// The command line of one connection: `ssh` (or `BGD_SSH_COMMAND`, split on whitespace),
/// bgd's options, the target, and what it carries.
pub fn command(ssh: Option<&str>, t: &Target, control: &Path, carry: &Carry) -> Vec<String> {
    let mut argv: Vec<String> = ssh
        .map(|s| s.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| vec!["ssh".to_string()]);
    // One ssh connection carries them all: the master holds it for the whole command (bgd
    // ends it) and every other process opens a session through it.
    let control = format!("ControlPath={}", control.display());
    let master = if *carry == Carry::Master {
        "ControlMaster=yes"
    } else {
        "ControlMaster=no"
    };
    for opt in [
        "BatchMode=yes",
        "ConnectTimeout=8",
        master,
        control.as_str(),
        "ControlPersist=no",
    ] {
        argv.push("-o".into());
        argv.push(opt.into());
    }
    argv.push(if *carry == Carry::Master { "-N" } else { "-T" }.into());
    if let Some(p) = t.port {
        argv.push("-p".into());
        argv.push(p.to_string());
    }
    if let Some(u) = &t.user {
        argv.push("-l".into());
        argv.push(u.clone());
    }
    if let Carry::Tcp(host, port) = carry {
        argv.push("-W".into());
        argv.push(if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        });
    }
    argv.push("--".into());
    argv.push(t.host.clone());
    if *carry == Carry::Docker {
        for a in ["docker", "system", "dial-stdio"] {
            argv.push(a.into());
        }
    }
    argv
}

/// The private socket and the task that serves it. Dropping it stops accepting and removes
/// the socket's directory.
pub struct Tunnel {
    dir: PathBuf,
    socket: PathBuf,
    accept: tokio::task::JoinHandle<()>,
    last_error: Arc<Mutex<String>>,
    target: Target,
    /// Engine API sessions (held by the pooled client's connections)
    api_sessions: Arc<Semaphore>,
    /// The ssh connection itself (its process ends when this task is aborted)
    master: tokio::task::JoinHandle<()>,
    /// Whether the master's control socket is up, or it is gone
    link: Arc<Link>,
    /// The SOCKS proxy for probes, once started: its URL (with its password) and task
    socks: Mutex<Option<(String, tokio::task::JoinHandle<()>)>>,
}

/// Accepts until the listener is dropped; a failed accept (too many open files, an aborted
/// connection) is waited out, not the end of the tunnel.
async fn accept_forever<L, F, Fut, S>(accept: L, mut handle: F)
where
    L: Fn() -> Fut,
    Fut: Future<Output = std::io::Result<S>>,
    F: FnMut(S),
{
    loop {
        match accept().await {
            Ok(stream) => handle(stream),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

impl Tunnel {
    /// Starts listening; nothing connects to the remote host until bollard connects here.
    pub fn open(target: &Target) -> std::io::Result<Tunnel> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!("bgd-ssh-{}-{nanos:x}", std::process::id()));
        std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
            .create(&dir)?;
        let socket = dir.join("docker.sock");
        let argv = command(
            std::env::var("BGD_SSH_COMMAND").ok().as_deref(),
            target,
            &dir.join("ssh"),
            &Carry::Docker,
        );
        let listener = match UnixListener::bind(&socket) {
            Ok(l) => l,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let last_error: Arc<Mutex<String>> = Arc::default();
        let link = Arc::new(Link {
            control: dir.join("ssh"),
            gone: std::sync::atomic::AtomicBool::new(false),
        });
        let master_argv = command(
            std::env::var("BGD_SSH_COMMAND").ok().as_deref(),
            target,
            &dir.join("ssh"),
            &Carry::Master,
        );
        let master = tokio::spawn(hold_master(master_argv, link.clone(), last_error.clone()));
        let errors = last_error.clone();
        let ready = link.clone();
        let accept = tokio::spawn(async move {
            let listener = Arc::new(listener);
            accept_forever(
                || {
                    let l = listener.clone();
                    async move { l.accept().await.map(|(s, _)| s) }
                },
                |stream| {
                    let (argv, errors, ready) = (argv.clone(), errors.clone(), ready.clone());
                    tokio::spawn(async move {
                        if !ready.up().await {
                            return; // the master said why
                        }
                        if let Err(why) = carry(stream, &argv).await {
                            if let Ok(mut e) = errors.lock() {
                                *e = why;
                            }
                        }
                    });
                },
            )
            .await
        });
        Ok(Tunnel {
            dir,
            socket,
            accept,
            last_error,
            target: target.clone(),
            api_sessions: Arc::new(Semaphore::new(API_SESSIONS)),
            master,
            link,
            socks: Mutex::new(None),
        })
    }

    /// A SOCKS5 proxy on this machine's loopback whose every connection is `ssh -W host:port`
    /// through this tunnel's ssh connection: bgd's HTTP probes reach nginx's listeners as the
    /// Docker host sees them (its loopback included), with their own Host and TLS names.
    /// Only bgd can use it (a random password, in the returned `socks5h://` URL) and only
    /// for `allowed` (host, port, the host dialled for it) triples: a TLS name stands for
    /// the address its listener is reached at. Started once, on first use; the URL is a
    /// secret.
    pub fn socks(&self, allowed: &[(String, u16, String)]) -> std::io::Result<String> {
        let mut socks = self
            .socks
            .lock()
            .map_err(|_| std::io::Error::other("socks lock poisoned"))?;
        if let Some((url, _)) = socks.as_ref() {
            return Ok(url.clone());
        }
        let password = random_token()?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let listener = Arc::new(tokio::net::TcpListener::from_std(listener)?);
        let ssh = std::env::var("BGD_SSH_COMMAND").ok();
        let (target, control) = (self.target.clone(), self.dir.join("ssh"));
        let rules = Arc::new(SocksRules {
            password: password.clone(),
            allowed: allowed
                .iter()
                .map(|(h, p, d)| (h.to_ascii_lowercase(), *p, d.clone()))
                .collect(),
        });
        let sessions = Arc::new(Semaphore::new(PROBE_SESSIONS));
        let link = self.link.clone();
        let task = tokio::spawn(async move {
            accept_forever(
                || {
                    let l = listener.clone();
                    async move { l.accept().await.map(|(s, _)| s) }
                },
                |stream| {
                    let (ssh, target, control) = (ssh.clone(), target.clone(), control.clone());
                    let (rules, sessions, link) = (rules.clone(), sessions.clone(), link.clone());
                    tokio::spawn(async move {
                        let Ok(_session) = sessions.acquire_owned().await else {
                            return;
                        };
                        if !link.up().await {
                            return;
                        }
                        let asked = tokio::time::timeout(
                            SOCKS_HANDSHAKE_LIMIT,
                            socks_handshake(stream, &rules),
                        );
                        let Ok(Ok((host, port, stream))) = asked.await else {
                            return;
                        };
                        let argv =
                            command(ssh.as_deref(), &target, &control, &Carry::Tcp(host, port));
                        // a failed probe connection is the probe's to report
                        let _ = carry(stream, &argv).await;
                    });
                },
            )
            .await
        });
        let url = format!("socks5h://bgd:{password}@{addr}");
        *socks = Some((url.clone(), task));
        Ok(url)
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// What the last failed ssh said (its stderr), if one failed.
    pub fn last_error(&self) -> String {
        self.last_error
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default()
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.accept.abort();
        self.master.abort();
        if let Ok(mut socks) = self.socks.lock() {
            if let Some((_, task)) = socks.take() {
                task.abort();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The master connection as the sessions see it.
struct Link {
    /// Its control socket: up once ssh has connected and authenticated
    control: PathBuf,
    /// Set when the master process ended (it failed to connect, or the link dropped)
    gone: std::sync::atomic::AtomicBool,
}

impl Link {
    /// Waits until the master's control socket is up (true), or the master is gone (false).
    async fn up(&self) -> bool {
        loop {
            if self.gone.load(std::sync::atomic::Ordering::SeqCst) {
                return false;
            }
            if self.control.exists() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Runs the master (`ssh -M -N`) until it ends or this task is aborted (which kills it);
/// what it said when it failed goes to `errors`.
async fn hold_master(argv: Vec<String>, link: Arc<Link>, errors: Arc<Mutex<String>>) {
    let said = match tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Err(e) => format!("cannot run {}: {e}", argv[0]),
        Ok(child) => match child.wait_with_output().await {
            Ok(out) if out.status.success() => String::new(),
            Ok(out) => {
                let text = String::from_utf8_lossy(&out.stderr).trim().to_string();
                if text.is_empty() {
                    format!("ssh exited with {}", out.status)
                } else {
                    text
                }
            }
            Err(e) => format!("waiting for ssh: {e}"),
        },
    };
    if !said.is_empty() {
        if let Ok(mut e) = errors.lock() {
            *e = said;
        }
    }
    link.gone.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// 32 hex digits from the system's random source.
fn random_token() -> std::io::Result<String> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| std::io::Error::other("no random numbers from the system"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Who may use the SOCKS proxy, and for what.
struct SocksRules {
    password: String,
    /// (host asked for, in lower case; port; host dialled)
    allowed: Vec<(String, u16, String)>,
}

/// Whether two byte strings are equal, in time that does not depend on where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A connection of the pooled client, holding one of the API sessions while it is open.
struct SessionStream {
    stream: UnixStream,
    _session: OwnedSemaphorePermit,
}

impl tokio::io::AsyncRead for SessionStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for SessionStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl hyper_util::client::legacy::connect::Connection for SessionStream {
    fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
        hyper_util::client::legacy::connect::Connected::new()
    }
}

/// Connects to the tunnel's socket: each connection is one ssh session, and waits for one of
/// the `API_SESSIONS` (a request meanwhile takes a connection another call gives back).
#[derive(Clone)]
struct TunnelConnector {
    socket: Arc<PathBuf>,
    sessions: Arc<Semaphore>,
}

type Connecting =
    Pin<Box<dyn Future<Output = std::io::Result<hyper_util::rt::TokioIo<SessionStream>>> + Send>>;

impl tower_service::Service<http::Uri> for TunnelConnector {
    type Response = hyper_util::rt::TokioIo<SessionStream>;
    type Error = std::io::Error;
    type Future = Connecting;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        let (socket, sessions) = (self.socket.clone(), self.sessions.clone());
        Box::pin(async move {
            let session = sessions
                .acquire_owned()
                .await
                .map_err(|_| std::io::Error::other("the ssh tunnel is closed"))?;
            let stream = UnixStream::connect(&*socket).await?;
            Ok(hyper_util::rt::TokioIo::new(SessionStream {
                stream,
                _session: session,
            }))
        })
    }
}

/// A bollard client over the tunnel whose connections are kept and reused (HTTP/1.1
/// keep-alive; an upgraded connection, an exec's, is not): one ssh session serves many calls.
pub fn pooled(
    tunnel: &Tunnel,
    timeout: std::time::Duration,
) -> Result<bollard::Docker, bollard::errors::Error> {
    let connector = TunnelConnector {
        socket: Arc::new(tunnel.socket().to_path_buf()),
        sessions: tunnel.api_sessions.clone(),
    };
    let client = Arc::new(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(std::time::Duration::from_secs(60))
            .pool_max_idle_per_host(API_SESSIONS)
            .build(connector),
    );
    bollard::Docker::connect_with_custom_transport(
        move |req: bollard::BollardRequest| {
            let client = client.clone();
            async move {
                client
                    .request(req)
                    .await
                    .map_err(bollard::errors::Error::from)
            }
        },
        // the host part is not dialled: every connection goes to the tunnel
        Some("http://docker"),
        timeout.as_secs(),
        bollard::API_DEFAULT_VERSION,
    )
}

/// The server side of a SOCKS5 CONNECT with username/password authentication (RFC 1929;
/// what reqwest's `socks5h://user:password@` proxy speaks): the password must be bgd's, and
/// the host (a name, resolved on the Docker host) and port one of the allowed pairs. Returns
/// them and the stream to carry once answered; anything else is refused.
async fn socks_handshake(
    mut s: tokio::net::TcpStream,
    rules: &SocksRules,
) -> std::io::Result<(String, u16, tokio::net::TcpStream)> {
    use tokio::io::AsyncReadExt;
    let bad = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string());
    let mut head = [0u8; 2];
    s.read_exact(&mut head).await?;
    let mut methods = vec![0u8; head[1] as usize];
    s.read_exact(&mut methods).await?;
    if head[0] != 5 || !methods.contains(&2) {
        s.write_all(&[5, 0xff]).await?;
        return Err(bad("not SOCKS5 with a password"));
    }
    s.write_all(&[5, 2]).await?;
    // RFC 1929: VER=1, ULEN, UNAME, PLEN, PASSWD
    let mut ver_len = [0u8; 2];
    s.read_exact(&mut ver_len).await?;
    let mut user = vec![0u8; ver_len[1] as usize];
    s.read_exact(&mut user).await?;
    let mut plen = [0u8; 1];
    s.read_exact(&mut plen).await?;
    let mut password = vec![0u8; plen[0] as usize];
    s.read_exact(&mut password).await?;
    if ver_len[0] != 1 || !same_secret(&password, rules.password.as_bytes()) {
        s.write_all(&[1, 1]).await?;
        return Err(bad("a wrong password"));
    }
    s.write_all(&[1, 0]).await?;
    let mut req = [0u8; 4];
    s.read_exact(&mut req).await?;
    if req[0] != 5 || req[1] != 1 {
        s.write_all(&[5, 7, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
        return Err(bad("only CONNECT"));
    }
    let host = match req[3] {
        1 => {
            let mut ip = [0u8; 4];
            s.read_exact(&mut ip).await?;
            std::net::Ipv4Addr::from(ip).to_string()
        }
        3 => {
            let mut len = [0u8; 1];
            s.read_exact(&mut len).await?;
            let mut name = vec![0u8; len[0] as usize];
            s.read_exact(&mut name).await?;
            String::from_utf8(name).map_err(|_| bad("a host name that is not text"))?
        }
        4 => {
            let mut ip = [0u8; 16];
            s.read_exact(&mut ip).await?;
            std::net::Ipv6Addr::from(ip).to_string()
        }
        _ => return Err(bad("an address type SOCKS5 does not have")),
    };
    let mut port = [0u8; 2];
    s.read_exact(&mut port).await?;
    let port = u16::from_be_bytes(port);
    let host = host.to_ascii_lowercase();
    // only nginx's listeners; the character check stays as a second guard for ssh's argv
    let host_ok = !host.starts_with('-')
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
        && rules
            .allowed
            .iter()
            .any(|(h, p, _)| *h == host && *p == port);
    let dial = rules
        .allowed
        .iter()
        .find(|(h, p, _)| *h == host && *p == port)
        .map(|(_, _, d)| d.clone());
    let Some(host) = dial.filter(|_| host_ok) else {
        s.write_all(&[5, 2, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
        return Err(bad("a host or port bgd does not forward"));
    };
    // answered before ssh connects: a failure shows as the connection closing
    s.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
    Ok((host, port, s))
}

/// Carries one connection through one ssh process. `Err` is what ssh said when it failed.
async fn carry<S>(stream: S, argv: &[String]) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let mut child = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", argv[0]))?;
    let (Some(mut to_ssh), Some(mut from_ssh), Some(mut ssh_err)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err("ssh started without its pipes".into());
    };
    let said = tokio::spawn(async move {
        let mut text = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut ssh_err, &mut text).await;
        String::from_utf8_lossy(&text).trim().to_string()
    });
    let (mut from_client, mut to_client) = tokio::io::split(stream);
    let up = async {
        let _ = tokio::io::copy(&mut from_client, &mut to_ssh).await;
        // the client is done sending: ssh passes the end on
        let _ = to_ssh.shutdown().await;
        drop(to_ssh);
    };
    let down = async {
        let _ = tokio::io::copy(&mut from_ssh, &mut to_client).await;
        let _ = to_client.shutdown().await;
    };
    tokio::join!(up, down);
    let status = child.wait().await;
    let said = said.await.unwrap_or_default();
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(if said.is_empty() {
            format!("ssh exited with {s}")
        } else {
            said
        }),
        Err(e) => Err(format!("waiting for ssh: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_docker_accepts() {
        assert_eq!(
            parse("ssh://deploy@build-1.example.com:2222"),
            Ok(Target {
                user: Some("deploy".into()),
                host: "build-1.example.com".into(),
                port: Some(2222)
            })
        );
        assert_eq!(
            parse("ssh://host"),
            Ok(Target {
                user: None,
                host: "host".into(),
                port: None
            })
        );
        assert_eq!(parse("ssh://root@[::1]:22").unwrap().host, "::1");
        for bad in [
            "ssh://",
            "ssh://-oProxyCommand=evil",
            "ssh://-l@host",
            "ssh://host:0",
            "ssh://host:ssh",
            "ssh://host/var/run/docker.sock",
            "ssh://us er@host",
            "ssh://host;reboot",
            "tcp://host",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn command_line() {
        let t = parse("ssh://deploy@host:2222").unwrap();
        let cm = Path::new("/tmp/b/ssh");
        let opts = "-o BatchMode=yes -o ConnectTimeout=8 -o ControlMaster=no -o ControlPath=/tmp/b/ssh -o ControlPersist=no -T";
        let docker = Carry::Docker;
        assert_eq!(
            command(None, &t, cm, &docker).join(" "),
            format!("ssh {opts} -p 2222 -l deploy -- host docker system dial-stdio")
        );
        assert_eq!(
            command(None, &t, cm, &Carry::Tcp("127.0.0.1".into(), 8000)).join(" "),
            format!("ssh {opts} -p 2222 -l deploy -W 127.0.0.1:8000 -- host")
        );
        assert_eq!(
            command(None, &t, cm, &Carry::Tcp("::1".into(), 80)).join(" "),
            format!("ssh {opts} -p 2222 -l deploy -W [::1]:80 -- host")
        );
        assert_eq!(
            command(None, &t, cm, &Carry::Master).join(" "),
            "ssh -o BatchMode=yes -o ConnectTimeout=8 -o ControlMaster=yes -o ControlPath=/tmp/b/ssh -o ControlPersist=no -N -p 2222 -l deploy -- host"
        );
        let t = parse("ssh://host").unwrap();
        assert_eq!(
            command(Some("ssh -i /keys/id -F none"), &t, cm, &docker).join(" "),
            format!("ssh -i /keys/id -F none {opts} -- host docker system dial-stdio")
        );
        assert_eq!(command(Some("  "), &t, cm, &docker)[0], "ssh");
        assert_eq!(parse("ssh://u@h:2").unwrap().ssh_line(), "ssh -p 2 u@h");
    }

    /// Runs a client's bytes against the proxy's handshake; what the proxy decided and
    /// what it answered.
    async fn socks_with(client: Vec<u8>) -> (Result<(String, u16), String>, Vec<u8>) {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let rules = SocksRules {
            password: "s3cret-token".into(),
            allowed: vec![
                ("127.0.0.1".into(), 8000, "127.0.0.1".into()),
                ("web.internal".into(), 80, "web.internal".into()),
                ("shop.example.com".into(), 8443, "127.0.0.1".into()),
            ],
        };
        let server = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            socks_handshake(s, &rules)
                .await
                .map(|(h, p, _)| (h, p))
                .map_err(|e| e.to_string())
        });
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.write_all(&client).await.unwrap();
        let decided = server.await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_millis(200), c.read_to_end(&mut answer)).await;
        (decided, answer)
    }

    fn hello(password: &str, atyp_addr: &[u8], port: u16) -> Vec<u8> {
        let mut b = vec![5, 1, 2, 1, 3];
        b.extend(b"bgd");
        b.push(password.len() as u8);
        b.extend(password.as_bytes());
        b.extend([5, 1, 0]);
        b.extend(atyp_addr);
        b.extend(port.to_be_bytes());
        b
    }

    #[tokio::test]
    async fn the_probe_proxy_serves_bgd_alone_and_only_nginxs_listeners() {
        let ip = [1, 127, 0, 0, 1];
        let (ok, answer) = socks_with(hello("s3cret-token", &ip, 8000)).await;
        assert_eq!(ok, Ok(("127.0.0.1".to_string(), 8000)));
        assert_eq!(answer, vec![5, 2, 1, 0, 5, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        let mut name = vec![3, 12];
        name.extend(b"WEB.internal");
        assert_eq!(
            socks_with(hello("s3cret-token", &name, 80)).await.0,
            Ok(("web.internal".to_string(), 80))
        );
        // a TLS name stands for its listener's address
        let mut tls = vec![3, 16];
        tls.extend(b"shop.example.com");
        assert_eq!(
            socks_with(hello("s3cret-token", &tls, 8443)).await.0,
            Ok(("127.0.0.1".to_string(), 8443))
        );
        assert!(socks_with(hello("s3cret-token", &tls, 8000))
            .await
            .0
            .is_err());
        // a wrong password, another port, another host, no password at all
        let (wrong, answer) = socks_with(hello("s3cret-tokeN", &ip, 8000)).await;
        assert!(wrong.is_err());
        assert_eq!(answer, vec![5, 2, 1, 1]);
        assert!(socks_with(hello("s3cret-token", &ip, 22)).await.0.is_err());
        let other = [1, 169, 254, 169, 254];
        assert!(socks_with(hello("s3cret-token", &other, 80))
            .await
            .0
            .is_err());
        let mut dash = vec![3, 4];
        dash.extend(b"-oPx");
        assert!(socks_with(hello("s3cret-token", &dash, 80))
            .await
            .0
            .is_err());
        let (none, answer) = socks_with(vec![5, 1, 0]).await;
        assert!(none.is_err());
        assert_eq!(answer, vec![5, 0xff]);
        assert!(
            same_secret(b"abc", b"abc")
                && !same_secret(b"abc", b"abd")
                && !same_secret(b"ab", b"abc")
        );
    }
}
