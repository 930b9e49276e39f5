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
//! The processes die with bgd: when bgd exits, their stdin closes and ssh ends.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};

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
    // One ssh connection carries them all: the first process becomes the master and the
    // others open sessions through it (`ControlPersist=no`: it ends with its last session).
    let control = format!("ControlPath={}", control.display());
    for opt in [
        "BatchMode=yes",
        "ConnectTimeout=8",
        "ControlMaster=auto",
        control.as_str(),
        "ControlPersist=no",
    ] {
        argv.push("-o".into());
        argv.push(opt.into());
    }
    argv.push("-T".into());
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
    /// The SOCKS proxy for probes, once started
    socks: Mutex<Option<(std::net::SocketAddr, tokio::task::JoinHandle<()>)>>,
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
        let errors = last_error.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (argv, errors) = (argv.clone(), errors.clone());
                tokio::spawn(async move {
                    if let Err(why) = carry(stream, &argv).await {
                        if let Ok(mut e) = errors.lock() {
                            *e = why;
                        }
                    }
                });
            }
        });
        Ok(Tunnel {
            dir,
            socket,
            accept,
            last_error,
            target: target.clone(),
            socks: Mutex::new(None),
        })
    }

    /// A SOCKS5 proxy on this machine's loopback whose every connection is `ssh -W host:port`
    /// through this tunnel's ssh connection: bgd's HTTP probes reach nginx's listeners as the
    /// Docker host sees them (its loopback included), with their own Host and TLS names.
    /// Started once, on first use.
    pub fn socks(&self) -> std::io::Result<std::net::SocketAddr> {
        let mut socks = self
            .socks
            .lock()
            .map_err(|_| std::io::Error::other("socks lock poisoned"))?;
        if let Some((addr, _)) = socks.as_ref() {
            return Ok(*addr);
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let ssh = std::env::var("BGD_SSH_COMMAND").ok();
        let (target, control) = (self.target.clone(), self.dir.join("ssh"));
        let errors = self.last_error.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (ssh, target, control, errors) =
                    (ssh.clone(), target.clone(), control.clone(), errors.clone());
                tokio::spawn(async move {
                    let Ok((host, port, stream)) = socks_handshake(stream).await else {
                        return;
                    };
                    let argv = command(ssh.as_deref(), &target, &control, &Carry::Tcp(host, port));
                    if let Err(why) = carry(stream, &argv).await {
                        if let Ok(mut e) = errors.lock() {
                            *e = why;
                        }
                    }
                });
            }
        });
        *socks = Some((addr, task));
        Ok(addr)
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
        if let Ok(mut socks) = self.socks.lock() {
            if let Some((_, task)) = socks.take() {
                task.abort();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Connects to the tunnel's socket: each connection is one ssh session.
#[derive(Clone)]
struct TunnelConnector {
    socket: Arc<PathBuf>,
}

type Connecting =
    Pin<Box<dyn Future<Output = std::io::Result<hyper_util::rt::TokioIo<UnixStream>>> + Send>>;

impl tower_service::Service<http::Uri> for TunnelConnector {
    type Response = hyper_util::rt::TokioIo<UnixStream>;
    type Error = std::io::Error;
    type Future = Connecting;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        let socket = self.socket.clone();
        Box::pin(async move {
            UnixStream::connect(&*socket)
                .await
                .map(hyper_util::rt::TokioIo::new)
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
    };
    let client = Arc::new(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(std::time::Duration::from_secs(60))
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

/// The server side of a SOCKS5 CONNECT without authentication (what reqwest's `socks5h://`
/// proxy speaks): the host (a name, resolved on the Docker host) and port asked for, and the
/// stream to carry once it is answered. Anything else, or a host ssh could take for an
/// option, is refused.
async fn socks_handshake(
    mut s: tokio::net::TcpStream,
) -> std::io::Result<(String, u16, tokio::net::TcpStream)> {
    use tokio::io::AsyncReadExt;
    let bad = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string());
    let mut head = [0u8; 2];
    s.read_exact(&mut head).await?;
    let mut methods = vec![0u8; head[1] as usize];
    s.read_exact(&mut methods).await?;
    if head[0] != 5 || !methods.contains(&0) {
        s.write_all(&[5, 0xff]).await?;
        return Err(bad("not SOCKS5 without authentication"));
    }
    s.write_all(&[5, 0]).await?;
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
    let host_ok = !host.is_empty()
        && !host.starts_with('-')
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
    if !host_ok || port == 0 {
        s.write_all(&[5, 2, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
        return Err(bad("a host or port bgd does not forward"));
    }
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
        let opts = "-o BatchMode=yes -o ConnectTimeout=8 -o ControlMaster=auto -o ControlPath=/tmp/b/ssh -o ControlPersist=no -T";
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
        let t = parse("ssh://host").unwrap();
        assert_eq!(
            command(Some("ssh -i /keys/id -F none"), &t, cm, &docker).join(" "),
            format!("ssh -i /keys/id -F none {opts} -- host docker system dial-stdio")
        );
        assert_eq!(command(Some("  "), &t, cm, &docker)[0], "ssh");
        assert_eq!(parse("ssh://u@h:2").unwrap().ssh_line(), "ssh -p 2 u@h");
    }
}
