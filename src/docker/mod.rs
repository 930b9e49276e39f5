//! The only module that imports bollard. bgd's own types go in and out (`types`); every
//! failure becomes an environment error (exit 6) that names the operation and the object, and
//! every call runs under one time limit (`Docker::call_within`) so a hung daemon cannot hang
//! bgd, and says so in one way.
//!
//! containers.rs: create, start, stop, remove, inspect, list, networks, logs, one-off runs
//! files.rs:      exec, and files in and out of a container (the archive API)
//! images.rs:     image inspection and pulls (progress, failures said per registry)
//! auth.rs:       the registry login the docker CLI would send (config.json, helpers)
//! endpoint.rs:   where the daemon is: --context, DOCKER_HOST, contexts, the local socket
//! ssh.rs:        `ssh://` connections: the Engine API and probes over one ssh connection

pub mod auth;
mod containers;
pub mod endpoint;
mod files;
mod images;
mod ssh;
mod types;

pub use endpoint::Endpoint;
pub use files::Reply;
pub use images::PullProgress;
pub use types::{ContainerInfo, ContainerSpec, ExecOutput, ImageDefaults, RunSettings};

use crate::error;
use anyhow::Result;
use std::future::Future;
use std::time::Duration;

/// How long one ordinary API call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Connecting and negotiating the API version.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Docker {
    api: bollard::Docker,
    /// Where the daemon is, for messages.
    host: String,
    /// With `ssh://`: the local socket whose connections ssh carries (kept open while used)
    tunnel: Option<std::sync::Arc<ssh::Tunnel>>,
    /// The docker CLI's config directory where bgd runs, for registry credentials
    config_dir: Option<std::path::PathBuf>,
    /// tcp:// without TLS to another machine: what bgd sends can be read on the way
    in_clear: bool,
    /// Engine API requests made so far (the version negotiation included), for `-v`
    calls: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

fn describe(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError {
            status_code,
            message,
        } => format!("{message} (HTTP {status_code})"),
        other => other.to_string(),
    }
}

/// The API version the daemon at unix socket `path` speaks, from the `Api-Version` header of
/// its `/_ping` answer, or bollard's own when that is newer; `None` when the ping fails or
/// does not say (then bollard negotiates through `/version`).
async fn ping_api_version(path: &str) -> Option<bollard::ClientVersion> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const PING_TIMEOUT: Duration = Duration::from_secs(1);
    let ping = async {
        let mut socket = tokio::net::UnixStream::connect(path).await.ok()?;
        socket
            .write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        // the head is all it takes (a proxy in front may keep the connection open)
        let mut answer = Vec::new();
        let mut chunk = [0u8; 4096];
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.len() < 16 * 1024 {
            match socket.read(&mut chunk).await.ok()? {
                0 => break,
                n => answer.extend_from_slice(&chunk[..n]),
            }
        }
        Some(answer)
    };
    // a daemon that does not answer this at once gets the usual negotiation (and its limit)
    let answer = tokio::time::timeout(PING_TIMEOUT, ping).await.ok()??;
    let version = api_version_of(&String::from_utf8_lossy(&answer))?;
    let newest = bollard::API_DEFAULT_VERSION;
    let ours = (newest.major_version, newest.minor_version);
    Some(if (version.major_version, version.minor_version) < ours {
        version
    } else {
        *newest
    })
}

/// The `Api-Version` of an HTTP answer's head (`1.41`), if it is a 200 that says one.
fn api_version_of(answer: &str) -> Option<bollard::ClientVersion> {
    // a head cut short (the connection ended in it) says nothing
    let (head, _) = answer.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next()?;
    if status.split_whitespace().nth(1) != Some("200") {
        return None;
    }
    let value = lines.find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("api-version")
            .then(|| value.trim())
    })?;
    let (major, minor) = value.split_once('.')?;
    Some(bollard::ClientVersion {
        major_version: major.parse().ok()?,
        minor_version: minor.parse().ok()?,
    })
}

/// A `tcp://` or `http://` host that is not this machine's loopback.
fn in_clear(host: &str) -> bool {
    let Some(name) = host
        .strip_prefix("tcp://")
        .or_else(|| host.strip_prefix("http://"))
        .and_then(host_part)
    else {
        return false;
    };
    !(name == "localhost" || name == "::1" || name.starts_with("127."))
}

/// The host of `host[:port][/...]` (`[v6]` without its brackets), if there is one.
fn host_part(rest: &str) -> Option<&str> {
    let authority = rest.split('/').next()?;
    match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next(),
        None => authority
            .rsplit_once(':')
            .map_or(Some(authority), |(h, _)| Some(h)),
    }
    .filter(|h| !h.is_empty())
}

fn status_of(e: &bollard::errors::Error) -> Option<u16> {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

fn is_not_found(e: &bollard::errors::Error) -> bool {
    status_of(e) == Some(404)
}

fn is_conflict(e: &bollard::errors::Error) -> bool {
    status_of(e) == Some(409)
}

impl Docker {
    /// Connects to `endpoint` (see `endpoint::resolve`: `--context`, `DOCKER_HOST`, the
    /// current context or the local socket; unix://, tcp:// with or without TLS, ssh://),
    /// then agrees on an API version the daemon speaks (Engine 20.10 and newer).
    pub async fn connect(endpoint: &Endpoint) -> Result<Docker> {
        let host = endpoint.host.clone();
        let source = &endpoint.source;
        let unreachable = |why: String| {
            error::environment(format!(
                "cannot reach the Docker daemon at {host} (from {source}): {why}. Is it running, and is that the right daemon?"
            ))
        };
        let tunnel = if host.starts_with("ssh://") {
            let target = ssh::parse(&host).map_err(error::config)?;
            let tunnel = ssh::Tunnel::open(&target)
                .map_err(|e| unreachable(format!("cannot make a local socket for ssh: {e}")))?;
            Some((std::sync::Arc::new(tunnel), target))
        } else {
            None
        };
        let mut pinged = None;
        let api = match &tunnel {
            Some((t, _)) => ssh::pooled(t, CALL_TIMEOUT),
            None => match (&endpoint.tls, host.split_once("://")) {
                (Some(tls), Some(("tcp" | "https", _))) => bollard::Docker::connect_with_ssl(
                    &host,
                    &tls.key,
                    &tls.cert,
                    &tls.ca,
                    CALL_TIMEOUT.as_secs(),
                    bollard::API_DEFAULT_VERSION,
                ),
                (None, Some(("tcp" | "http", _))) => bollard::Docker::connect_with_http(
                    &host,
                    CALL_TIMEOUT.as_secs(),
                    bollard::API_DEFAULT_VERSION,
                ),
                (_, Some(("unix", path))) => {
                    // the daemon's API version from `/_ping` (well under a millisecond; the
                    // `/version` that bollard's negotiation asks takes ~10 ms: the daemon runs
                    // runc and docker-init to say their versions), or negotiated below
                    pinged = ping_api_version(path).await;
                    let version = pinged.as_ref().unwrap_or(bollard::API_DEFAULT_VERSION);
                    bollard::Docker::connect_with_unix(path, CALL_TIMEOUT.as_secs(), version)
                }
                _ => {
                    return Err(error::config(format!(
                        "{host:?} (from {source}) is not a Docker host bgd can reach: use unix://, tcp:// (TLS with DOCKER_TLS_VERIFY or a context's certificates) or ssh://"
                    )))
                }
            },
        }
        .map_err(|e| unreachable(describe(&e)))?
        .with_timeout(CALL_TIMEOUT);
        let connected = |api| Docker {
            api,
            host: host.clone(),
            tunnel: tunnel.as_ref().map(|(t, _)| t.clone()),
            config_dir: None,
            in_clear: endpoint.tls.is_none() && in_clear(&endpoint.host),
            // the version's request (a ping, or /version)
            calls: std::sync::Arc::new(std::sync::atomic::AtomicU64::new(1)),
        };
        if pinged.is_some() {
            return Ok(connected(api));
        }
        let why = match tokio::time::timeout(CONNECT_TIMEOUT, api.negotiate_version()).await {
            Ok(Ok(api)) => {
                let docker = connected(api);
                if host.starts_with("unix://") {
                    // the ping that did not say, before /version
                    docker
                        .calls
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                return Ok(docker);
            }
            Ok(Err(e)) => describe(&e),
            Err(_) => format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
        };
        match &tunnel {
            Some((t, target)) => Err(error::environment(format!(
                "cannot reach the Docker daemon at {host} over ssh: {}. Check that `{} docker version` works from here (BGD_SSH_COMMAND sets ssh and its options)",
                ssh_error(t).await.unwrap_or(why),
                target.ssh_line()
            ))),
            None => Err(unreachable(why)),
        }
    }

    /// How many Engine API requests this connection made (each call bgd makes is one
    /// request; an exec is three: create, start, inspect).
    pub fn calls(&self) -> u64 {
        self.calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Registry credentials come from the docker CLI's config in `dir` (see `auth`).
    pub fn with_config_dir(mut self, dir: Option<std::path::PathBuf>) -> Docker {
        self.config_dir = dir;
        self
    }

    /// The credentials the docker CLI would send to pull `image` (read where bgd runs).
    pub async fn login_for(&self, image: &str) -> auth::Lookup {
        auth::lookup(self.config_dir.as_deref(), image).await
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// With an ssh:// daemon: the URL (a secret: it holds the proxy's password) of the local
    /// SOCKS5 proxy whose connections ssh carries to the Docker host, for the `allowed`
    /// (host, port, host dialled) triples only (started on first use); otherwise None.
    pub fn ssh_proxy(&self, allowed: &[(String, u16, String)]) -> Result<Option<String>> {
        match &self.tunnel {
            None => Ok(None),
            Some(t) => t.socks(allowed).map(Some).map_err(|e| {
                error::environment(format!(
                    "cannot start the local proxy for probes over ssh to {}: {e}",
                    self.host
                ))
            }),
        }
    }

    /// Whether the API connection is unencrypted over a network (tcp:// without TLS to
    /// another machine): a registry login sent with a pull could be read on the way.
    pub fn sends_in_clear(&self) -> bool {
        self.in_clear
    }

    /// With a tcp:// daemon: its host name (where nginx's published ports are too).
    pub fn tcp_host(&self) -> Option<&str> {
        host_part(self.host.strip_prefix("tcp://")?)
    }

    /// The one time limit every Docker operation runs under: past `limit`, an environment
    /// error naming `what`. The daemon's own answer is left to the caller.
    async fn call_within<T>(
        &self,
        what: &dyn Fn() -> String,
        limit: Duration,
        fut: impl Future<Output = Result<T, bollard::errors::Error>>,
    ) -> Result<Result<T, bollard::errors::Error>> {
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tokio::time::timeout(limit, fut).await.map_err(|_| {
            error::environment(format!(
                "{}: did not finish within {} (Docker daemon at {})",
                what(),
                crate::output::fmt_duration(limit),
                self.host
            ))
        })
    }

    /// One API call under the call limit; any failure is an environment error naming `what`.
    async fn call<T>(
        &self,
        what: impl Fn() -> String,
        fut: impl Future<Output = Result<T, bollard::errors::Error>>,
    ) -> Result<T> {
        self.call_within(&what, CALL_TIMEOUT, fut)
            .await?
            .map_err(|e| error::environment(format!("{}: {}", what(), describe(&e))))
    }

    /// Like `call`, but a 404 is `None`.
    async fn call_opt<T>(
        &self,
        what: impl Fn() -> String,
        fut: impl Future<Output = Result<T, bollard::errors::Error>>,
    ) -> Result<Option<T>> {
        match self.call_within(&what, CALL_TIMEOUT, fut).await? {
            Ok(v) => Ok(Some(v)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(error::environment(format!("{}: {}", what(), describe(&e)))),
        }
    }
}

/// What ssh said when the connection failed; it may take a moment to exit and say it.
async fn ssh_error(t: &ssh::Tunnel) -> Option<String> {
    for _ in 0..20 {
        let said = t.last_error();
        if !said.is_empty() {
            return Some(format!("ssh said: {}", said.trim_end_matches('.')));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn plain_tcp_to_another_machine_is_in_clear() {
        assert!(super::in_clear("tcp://docker-1.example.com:2375"));
        assert!(super::in_clear("tcp://10.0.0.5:2375"));
        assert!(super::in_clear("tcp://[fd00::1]:2375"));
        assert!(!super::in_clear("tcp://127.0.0.1:2375"));
        assert!(!super::in_clear("tcp://localhost:2375"));
        assert!(!super::in_clear("tcp://[::1]:2375"));
        assert!(!super::in_clear("unix:///var/run/docker.sock"));
        assert!(!super::in_clear("ssh://deploy@host"));
    }

    #[test]
    fn the_api_version_comes_from_a_pings_answer() {
        let v = |answer: &str| {
            super::api_version_of(answer).map(|v| (v.major_version, v.minor_version))
        };
        let ping = "HTTP/1.0 200 OK\r\nApi-Version: 1.41\r\nServer: Docker/20.10.24 (linux)\r\nContent-Length: 2\r\n\r\nOK";
        assert_eq!(v(ping), Some((1, 41)));
        assert_eq!(
            v(&ping.replace("Api-Version", "api-version")),
            Some((1, 41))
        );
        // not a 200, no header, not a version: bollard negotiates through /version
        assert_eq!(
            v(&ping.replace("200 OK", "500 Internal Server Error")),
            None
        );
        assert_eq!(v("HTTP/1.0 200 OK\r\nServer: Docker\r\n\r\nOK"), None);
        assert_eq!(v(&ping.replace("1.41", "one")), None);
        // a header in the body is not the answer's; a head cut short says nothing
        assert_eq!(v("HTTP/1.0 200 OK\r\n\r\nApi-Version: 1.41"), None);
        assert_eq!(v("HTTP/1.0 200 OK\r\nApi-Version: 1.4"), None);
        assert_eq!(v(""), None);
    }
}
