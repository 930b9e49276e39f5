//! bgd.yaml: raw serde structs (`raw`) -> a validated `Config` (`validate`). Every error names
//! the file, line, column and key path. serde_yaml stays behind this module.

mod checks;
mod envfile;
mod locate;
pub mod raw;
mod secrets;
mod tls;
mod validate;

pub use checks::{check_image_ref, valid_app_name, valid_docker_name};
pub use envfile::{valid_env_name, Secret};
pub use raw::{parse_duration, ParkMode, PruneMode, PullPolicy};
pub use secrets::{command_secrets, secret_env, secret_name, shown_command, value_secrets};

use crate::error;
use anyhow::Result;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Largest config file bgd reads; anything bigger is not a config.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Config {
    /// Where it was read from (for messages)
    pub file: PathBuf,
    pub app: String,
    pub replicas: u32,
    pub network: String,
    pub container: ContainerConfig,
    pub readiness: Readiness,
    pub smoke: Vec<SmokeProbe>,
    pub hooks: Hooks,
    pub lb: Lb,
    pub switch: Switch,
    pub park: ParkMode,
    pub pull: Pull,
    /// Release images `prune` keeps (the newest releases')
    pub retain: u32,
    pub prune: PruneMode,
    pub drill: Drill,
    pub warmup: Warmup,
    pub canary: Canary,
}

/// `warmup`: requests sent to every candidate replica after readiness (caches, JIT, pools).
#[derive(Debug, Clone, Default)]
pub struct Warmup {
    pub requests: Vec<WarmupRequest>,
    /// A failed warm-up request rejects the candidate (else it is reported)
    pub must_pass: bool,
    /// Live requests copied to the candidate and compared with live (`warmup.mirror`)
    pub mirror: Option<Mirror>,
}

/// `warmup.mirror`: nginx copies `share` % of the live requests whose method is in
/// `methods` to the candidate for `window`; the candidate's answers (discarded) are compared
/// with live's.
#[derive(Debug, Clone)]
pub struct Mirror {
    /// 1..=100
    pub share: u8,
    pub window: Duration,
    pub methods: Vec<String>,
    /// How long nginx waits for the candidate's answer to a copy
    pub timeout: Duration,
    pub analysis: Analysis,
}

/// How a candidate's traffic is judged beside the stable side's (the mirror and the canary).
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    /// Percentage points the candidate's 5xx rate may exceed the stable side's by
    pub max_error_increase: f64,
    /// How many times the stable side's p95 the candidate's may be
    pub max_latency_ratio: f64,
    /// p95s below this count as this (a 1 ms to 3 ms change is no 3x regression)
    pub min_latency: Duration,
    /// Fewer candidate requests than this: no verdict (reported, not gating)
    pub min_requests: u64,
    /// No verdict fails like a breach (`inconclusive: fail`)
    pub fail_inconclusive: bool,
}

impl Default for Analysis {
    fn default() -> Analysis {
        Analysis {
            max_error_increase: 1.0,
            max_latency_ratio: 2.0,
            min_latency: Duration::from_millis(20),
            min_requests: 20,
            fail_inconclusive: false,
        }
    }
}

/// `canary`: with `steps`, a plain deploy sends those shares of live traffic to the candidate
/// in turn, `step_for` each, judged by `analysis`, then promotes it.
#[derive(Debug, Clone, Default)]
pub struct Canary {
    /// Shares in percent, rising; the last is 100 (promotion)
    pub steps: Vec<u8>,
    pub step_for: Duration,
    pub analysis: Analysis,
}

#[derive(Debug, Clone)]
pub struct WarmupRequest {
    pub method: String,
    pub path: String,
    /// Per replica
    pub count: u32,
}

/// `bgd drill`: the recovery-time objective each flip is held to.
#[derive(Debug, Clone)]
pub struct Drill {
    pub rto: Duration,
}

/// How a deploy gets its image onto the Docker host.
#[derive(Debug, Clone)]
pub struct Pull {
    /// Longest a pull may take
    pub timeout: Duration,
    pub policy: PullPolicy,
}

#[derive(Debug, Clone)]
pub struct ContainerConfig {
    pub port: u16,
    pub command: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
    /// Values from `env_file`: secrets.
    pub env_file: Vec<(String, Secret)>,
    pub env_file_path: Option<PathBuf>,
    pub volumes: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub stop_timeout: Duration,
    /// Memory limit in bytes (`--memory`)
    pub memory: Option<i64>,
    /// CPU limit in billionths of a CPU (`--cpus`)
    pub nano_cpus: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct Readiness {
    pub path: String,
    pub expect_status: u16,
    pub interval: Duration,
    pub timeout: Duration,
    pub successes: u32,
    pub deadline: Duration,
}

#[derive(Debug, Clone)]
pub struct SmokeProbe {
    pub name: String,
    pub method: String,
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub body: String,
    pub expect: Expect,
    /// Which color the deploy's smoke gate sends it to
    pub target: ProbeTarget,
    /// Values taken from its answer for later probes' `${NAME}`
    pub capture: Vec<(String, crate::probe::session::Capture)>,
}

/// Where the smoke gate sends a probe: the candidate (on the preview listener), or the live
/// release (through `lb.url`; a session made there is then tried on the candidate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeTarget {
    Candidate,
    Live,
}

#[derive(Debug, Clone)]
pub struct Expect {
    pub status: Vec<u16>,
    pub body_contains: Option<String>,
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default)]
pub struct Hooks {
    pub migrate: Option<Migrate>,
}

#[derive(Debug, Clone)]
pub struct Migrate {
    pub command: Vec<String>,
    pub timeout: Duration,
    /// Run the migration and both versions on a scratch copy first
    pub rehearse: Option<Rehearse>,
}

/// `hooks.migrate.rehearse`: where the scratch copy of the data comes from.
#[derive(Debug, Clone)]
pub struct Rehearse {
    /// Named volumes (of `container.volumes`) copied to scratch volumes
    pub volumes: Vec<String>,
    /// Creates the scratch copy of an external database (one-off container of the live image)
    pub prepare: Option<Vec<String>>,
    /// Drops it, always, at the end
    pub cleanup: Option<Vec<String>>,
    /// Over the app's env in every rehearsal container (points both versions at the copy)
    pub env: BTreeMap<String, String>,
    /// Longest a copy, `prepare` or `cleanup` may take
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Lb {
    pub container: String,
    /// The names the live server answers (`server_name`); empty: the default server
    pub hosts: Vec<String>,
    /// The name the preview server answers when `hosts` is set
    pub preview_host: Option<String>,
    pub image: Option<String>,
    pub publish: Vec<Publish>,
    pub listen: u16,
    pub preview_listen: u16,
    pub url: String,
    pub preview_url: String,
    /// A custom tera template (its path and text), replacing the built-in one.
    pub template: Option<(PathBuf, String)>,
    /// How long nginx keeps an idle connection to a replica; below the app's own idle timeout.
    pub upstream_keepalive_timeout: Duration,
    /// How bgd's probes reach `url` and `preview_url`
    pub via: Via,
    /// Whether `url`/`preview_url` were derived from `publish` (so a remote daemon's host
    /// name can stand in for 127.0.0.1)
    pub url_derived: bool,
    pub preview_url_derived: bool,
    /// HTTPS on the live server (`lb.tls`)
    pub tls: Option<Tls>,
}

impl Lb {
    /// Why `lb.tls`'s files cannot be used, when they cannot.
    pub fn tls_problem(&self) -> Option<&str> {
        match self.tls.as_ref().map(|t| &t.source) {
            Some(TlsSource::Unreadable { why }) => Some(why),
            _ => None,
        }
    }

    /// The container port `lb.url` reaches: the HTTPS listener's with `lb.tls`.
    pub fn url_port(&self) -> u16 {
        self.tls.as_ref().map_or(self.listen, |t| t.listen)
    }
}

/// `lb.tls`: the live server answers HTTPS too.
#[derive(Debug, Clone)]
pub struct Tls {
    pub source: TlsSource,
    /// nginx's HTTPS port
    pub listen: u16,
    /// Plain HTTP answers 308 to HTTPS
    pub redirect_http: bool,
    /// `Strict-Transport-Security: max-age=31536000` over HTTPS
    pub hsts: bool,
    /// HTTP/2 beside HTTP/1.1 on the HTTPS port
    pub http2: bool,
    /// The CA bundle bgd's probes verify against instead of the system roots: (file, PEM)
    pub ca: Option<(PathBuf, String)>,
    /// The host port HTTPS is published on, for the redirect's URL (None: 443)
    pub public_port: Option<u16>,
}

/// Where nginx's certificate and key come from.
#[derive(Clone)]
pub enum TlsSource {
    /// Files on the machine bgd runs on, uploaded into bgd's directory in the nginx container
    Local {
        certificate: PathBuf,
        key_file: PathBuf,
        /// The PEM chain, leaf first
        chain: String,
        key: Secret,
        /// What the leaf says (read when the config was loaded)
        info: crate::tls::CertInfo,
    },
    /// Files already inside the nginx container
    Container {
        certificate_path: String,
        key_path: String,
    },
    /// `certificate`/`key` that cannot be read or do not belong together: commands that
    /// install a config refuse (exit 2); those that only look (`status`, `history`, `lock`)
    /// warn and go on, so a machine without the key can still see what is live
    Unreadable { why: String },
}

impl std::fmt::Debug for TlsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsSource::Local {
                certificate,
                key_file,
                ..
            } => write!(
                f,
                "Local({}, {})",
                certificate.display(),
                key_file.display()
            ),
            TlsSource::Container {
                certificate_path,
                key_path,
            } => write!(f, "Container({certificate_path}, {key_path})"),
            TlsSource::Unreadable { why } => write!(f, "Unreadable({why})"),
        }
    }
}

impl Tls {
    /// The certificate and key as nginx's config names them: for uploaded files, names in
    /// bgd's directory that change with their content (a new certificate never overwrites
    /// the one nginx serves until the reload that switches to it).
    pub fn files_in_nginx(&self, app: &str) -> (String, String) {
        match &self.source {
            TlsSource::Local { .. } => {
                let stem = self.upload_stem().unwrap_or_default();
                (
                    format!("{}/{app}/tls/{stem}.crt", crate::nginx::BGD_DIR),
                    format!("{}/{app}/tls/{stem}.key", crate::nginx::BGD_DIR),
                )
            }
            TlsSource::Container {
                certificate_path,
                key_path,
            } => (certificate_path.clone(), key_path.clone()),
            TlsSource::Unreadable { .. } => (String::new(), String::new()),
        }
    }

    /// The uploaded files' name without its extension: a digest of the pair.
    pub fn upload_stem(&self) -> Option<String> {
        let TlsSource::Local { chain, key, .. } = &self.source else {
            return None;
        };
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(chain.as_bytes());
        ctx.update(b"\0");
        ctx.update(key.expose().as_bytes());
        let digest = ctx.finish();
        Some(
            digest.as_ref()[..8]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        )
    }
}

/// How bgd's HTTP probes reach nginx's listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// With an ssh:// daemon, through the same ssh connection, the URLs being as the Docker
    /// host sees them; otherwise directly
    Auto,
    /// Always directly from where bgd runs
    Direct,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub host_ip: Option<String>,
    pub host_port: Option<u16>,
    pub container_port: u16,
}

#[derive(Debug, Clone)]
pub struct Switch {
    pub verify: Duration,
    pub auto_rollback: bool,
    pub drain: Duration,
}

impl Config {
    /// The environment a container of this app gets: `env_file` first, `env` over it.
    pub fn container_env(&self) -> Vec<String> {
        let mut merged: BTreeMap<&str, &str> = BTreeMap::new();
        for (k, v) in &self.container.env_file {
            merged.insert(k, v.expose());
        }
        for (k, v) in &self.container.env {
            merged.insert(k, v);
        }
        merged.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    /// This config for a daemon reached at `tcp://host` (with `lb.via: auto`): URLs derived
    /// from a `lb.publish` entry on all of the Docker host's addresses name that host instead
    /// of this machine's loopback. Also the warnings: a port published on the Docker host's
    /// loopback cannot be reached from here.
    pub fn for_tcp_daemon(&self, host: &str) -> (Config, Vec<String>) {
        let mut config = self.clone();
        let mut warnings = Vec::new();
        if config.lb.via != Via::Auto {
            return (config, warnings);
        }
        let remote = !matches!(host, "127.0.0.1" | "localhost" | "::1");
        let name = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        let url_port = config.lb.url_port();
        let lb = &mut config.lb;
        for (derived, url, port, key) in [
            (lb.url_derived, &mut lb.url, url_port, "lb.url"),
            (
                lb.preview_url_derived,
                &mut lb.preview_url,
                lb.preview_listen,
                "lb.preview_url",
            ),
        ] {
            let Some(p) = lb.publish.iter().find(|p| p.container_port == port) else {
                continue;
            };
            if !derived {
                continue;
            }
            match p.host_ip.as_deref() {
                None | Some("0.0.0.0") | Some("::") => {
                    *url = url.replacen("://127.0.0.1:", &format!("://{name}:"), 1);
                }
                Some(ip) if remote && (ip.starts_with("127.") || ip == "::1") => {
                    warnings.push(format!(
                        "lb.publish puts nginx's port {port} on the Docker host's loopback ({ip}), which bgd cannot reach over tcp://{host}: its probes ({key}) will fail. Connect over ssh:// (probes then travel through ssh), publish it on an address this machine can reach, or set {key}"
                    ));
                }
                Some(_) => {}
            }
        }
        (config, warnings)
    }

    /// Every secret value, so output can be scrubbed of them as a last line of defence: all
    /// `env_file` values, `env` values that are secret by name or shape (with the password
    /// parts of URLs on their own), and the secrets in `container.command` and
    /// `hooks.migrate.command`. Values shorter than 4 characters cannot be told apart from
    /// ordinary text and are left out.
    pub fn secrets(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .container
            .env_file
            .iter()
            .map(|(_, v)| v.expose().to_string())
            .collect();
        for (k, v) in &self.container.env {
            if secret_name(k) {
                all.push(v.clone());
            }
            all.extend(value_secrets(v));
        }
        all.extend(
            self.container
                .command
                .iter()
                .flat_map(|c| command_secrets(c)),
        );
        all.extend(
            self.hooks
                .migrate
                .iter()
                .flat_map(|m| command_secrets(&m.command)),
        );
        // the rehearsal's env (a scratch database's URL) and commands
        for r in self.hooks.migrate.iter().flat_map(|m| m.rehearse.iter()) {
            for (k, v) in &r.env {
                if secret_name(k) {
                    all.push(v.clone());
                }
                all.extend(value_secrets(v));
            }
            for cmd in r.prepare.iter().chain(r.cleanup.iter()) {
                all.extend(command_secrets(cmd));
            }
        }
        // probe paths (`/health?token=...`) and headers (`Authorization: Bearer ...`)
        all.extend(value_secrets(&self.readiness.path));
        for probe in &self.smoke {
            all.extend(value_secrets(&probe.path));
            for (name, value) in &probe.headers {
                if secret_name(name) {
                    all.push(value.clone());
                }
                all.extend(value_secrets(&format!("{name}: {value}")));
            }
        }
        all.retain(|v| v.len() >= 4);
        all
    }
}

/// The config file to use: `-f`, `BGD_CONFIG` (clap reads both), else `./bgd.yaml`.
pub fn default_path(explicit: Option<&Path>) -> PathBuf {
    explicit.map_or_else(|| PathBuf::from("bgd.yaml"), Path::to_path_buf)
}

/// Reads, parses and validates a config file.
pub fn load(path: &Path) -> Result<Config> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| {
        error::config(format!(
            "{shown}: cannot read the config: {e} (create one with `bgd init`, or point -f / BGD_CONFIG at it)"
        ))
    })?;
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(error::config(format!(
            "{shown}: {} bytes is too large for a config file (limit {MAX_CONFIG_BYTES})",
            meta.len()
        )));
    }
    let bytes = std::fs::read(path)
        .map_err(|e| error::config(format!("{shown}: cannot read the config: {e}")))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| error::config(format!("{shown}: not a text file (it is not valid UTF-8)")))?;
    parse(path, &text)
}

/// Parses and validates config text; `path` is used for messages and relative paths.
pub fn parse(path: &Path, text: &str) -> Result<Config> {
    let shown = path.display().to_string();
    if text.contains('\0') {
        return Err(error::config(format!(
            "{shown}: not a text file (it contains NUL bytes)"
        )));
    }
    let raw: raw::RawConfig = serde_yaml::from_str(text).map_err(|e| {
        let (line, col) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
        let msg = e.to_string();
        // serde_yaml appends " at line L column C"; the prefix already says where.
        let msg = msg
            .rsplit_once(" at line ")
            .map_or(msg.as_str(), |(m, _)| m)
            .to_string();
        error::config(format!("{shown}:{line}:{col}: {msg}"))
    })?;
    let dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    validate::validate(raw, &dir)
        .map_err(|issue| {
            let (line, col) = locate::locate(text, &issue.path).unwrap_or((1, 1));
            error::config(format!(
                "{shown}:{line}:{col}: {}: {}",
                issue.path, issue.message
            ))
        })
        .map(|mut c| {
            c.file = path.to_path_buf();
            c
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_checked_and_the_preview_gets_a_name_of_its_own() {
        let base = "app: web\ncontainer:\n  port: 8080\nlb:\n  publish: ['80:80', '8081:8081']\n";
        let c = parse(Path::new("bgd.yaml"), base).unwrap();
        assert!(c.lb.hosts.is_empty() && c.lb.preview_host.is_none());
        let c = parse(
            Path::new("bgd.yaml"),
            &format!("{base}  hosts: [Shop.Example.com, '*.shop.example.com', shop.example.com]\n"),
        )
        .unwrap();
        assert_eq!(c.lb.hosts, ["shop.example.com", "*.shop.example.com"]);
        assert_eq!(
            c.lb.preview_host.as_deref(),
            Some("preview.shop.example.com")
        );
        for bad in [
            "  hosts: ['shop example.com']\n",
            "  hosts: ['shop.example.com;']\n",
            "  hosts: ['-shop.com']\n",
            "  hosts: [a.com]\n  preview_host: a.com\n",
            "  hosts: [a.com]\n  preview_host: '*.a.com'\n",
            "  preview_host: preview.a.com\n",
        ] {
            assert!(
                parse(Path::new("bgd.yaml"), &format!("{base}{bad}")).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn tls_is_read_checked_and_derives_an_https_url() {
        let dir = std::env::temp_dir().join(format!("bgd-tls-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["shop.example.com".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(dir.join("shop.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("shop.key"), key.serialize_pem()).unwrap();
        std::fs::write(
            dir.join("other.key"),
            rcgen::KeyPair::generate().unwrap().serialize_pem(),
        )
        .unwrap();
        let file = dir.join("bgd.yaml");
        let base = "app: web\ncontainer:\n  port: 8080\nlb:\n  publish: ['80:80', '127.0.0.1:8081:8081', '8443:443']\n  hosts: [shop.example.com]\n";
        let with = |tls: &str| parse(&file, &format!("{base}  tls: {tls}\n"));
        let c = with("{certificate: shop.pem, key: shop.key, redirect_http: true}").unwrap();
        assert_eq!(c.lb.url, "https://127.0.0.1:8443");
        let t = c.lb.tls.as_ref().unwrap();
        assert_eq!(
            (t.listen, t.public_port, t.http2, t.hsts),
            (443, Some(8443), true, false)
        );
        let (crt, k) = t.files_in_nginx("web");
        assert!(
            crt.starts_with("/etc/nginx/bgd/web/tls/") && crt.ends_with(".crt"),
            "{crt}"
        );
        assert_eq!(crt.trim_end_matches(".crt"), k.trim_end_matches(".key"));
        // the key never shows in Debug
        assert!(!format!("{c:?}").contains("PRIVATE KEY"));
        assert_eq!(c.for_tcp_daemon("h").0.lb.url, "https://h:8443");
        let inside = with("{certificate_path: /etc/ssl/a.pem, key_path: /etc/ssl/a.key}").unwrap();
        assert_eq!(
            inside.lb.tls.unwrap().files_in_nginx("web").0,
            "/etc/ssl/a.pem"
        );
        // files that cannot be used: the config loads (status still works), the problem said
        for (bad, says) in [
            ("{certificate: shop.pem, key: other.key}", "does not belong"),
            ("{certificate: missing.pem, key: shop.key}", "cannot read"),
        ] {
            let c = with(bad).unwrap();
            let why = c.lb.tls_problem().unwrap_or_default().to_string();
            assert!(why.contains(says), "{bad}: {why}");
            assert!(!why.contains("PRIVATE KEY"), "{why}");
        }
        for (bad, says) in [
            ("{certificate: shop.pem}", "not a mix"),
            (
                "{certificate: shop.pem, key: shop.key, key_path: /a}",
                "not a mix",
            ),
            ("{}", "name the certificate"),
            (
                "{certificate_path: 'a.pem', key_path: /a.key}",
                "absolute path",
            ),
            (
                "{certificate_path: '/a b.pem', key_path: /a.key}",
                "absolute path",
            ),
            (
                "{certificate: shop.pem, key: shop.key, listen: 80}",
                "clashes",
            ),
            (
                "{certificate: shop.pem, key: shop.key, ca: shop.key}",
                "lb.tls.ca",
            ),
        ] {
            let e = format!("{:#}", with(bad).unwrap_err());
            assert!(e.contains(says), "{bad}: {e}");
            assert!(!e.contains("PRIVATE KEY"), "{e}");
        }
        let behind = with("{certificate: shop.pem, key: shop.key, redirect_port: 443}").unwrap();
        assert_eq!(behind.lb.tls.unwrap().public_port, None);
        // files in the container and no name to verify them for
        let nameless = "app: web\ncontainer:\n  port: 8080\nlb:\n  publish: ['80:80', '127.0.0.1:8081:8081', '8443:443']\n  tls: {certificate_path: /a.pem, key_path: /a.key}\n";
        let e = parse(&file, nameless).unwrap_err();
        assert!(format!("{e:#}").contains("set lb.hosts"), "{e:#}");
        // plain HTTP answers with a redirect: bgd's probes cannot use it
        let e = parse(
            &file,
            &format!("{base}  url: http://127.0.0.1:80\n  tls: {{certificate: shop.pem, key: shop.key, redirect_http: true}}\n"),
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("https://"), "{e:#}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_tcp_daemon_names_its_host_in_the_urls_derived_from_publish() {
        let text = "app: web\ncontainer:\n  port: 8080\nlb:\n  publish: ['0.0.0.0:8000:80', '8001:8081']\n";
        let c = parse(Path::new("bgd.yaml"), text).unwrap();
        assert_eq!(c.lb.url, "http://127.0.0.1:8000");
        let (remote, warnings) = c.for_tcp_daemon("docker-1.example.com");
        assert_eq!(remote.lb.url, "http://docker-1.example.com:8000");
        assert_eq!(remote.lb.preview_url, "http://docker-1.example.com:8001");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            c.for_tcp_daemon("fd00::1").0.lb.url,
            "http://[fd00::1]:8000"
        );
        // an explicit URL, or lb.via: direct, is left as written
        let explicit = parse(
            Path::new("bgd.yaml"),
            &format!("{text}  url: http://127.0.0.1:8000\n"),
        )
        .unwrap();
        assert_eq!(
            explicit.for_tcp_daemon("h").0.lb.url,
            "http://127.0.0.1:8000"
        );
        assert_eq!(
            explicit.for_tcp_daemon("h").0.lb.preview_url,
            "http://h:8001"
        );
        let direct = parse(Path::new("bgd.yaml"), &format!("{text}  via: direct\n")).unwrap();
        assert_eq!(direct.for_tcp_daemon("h").0.lb.url, "http://127.0.0.1:8000");
        // a port on the remote host's loopback cannot be reached: said, not silently probed
        let looped = parse(
            Path::new("bgd.yaml"),
            "app: web\ncontainer:\n  port: 8080\nlb:\n  publish: ['80:80', '127.0.0.1:8001:8081']\n",
        )
        .unwrap();
        let (remote, warnings) = looped.for_tcp_daemon("docker-1.example.com");
        assert_eq!(remote.lb.url, "http://docker-1.example.com:80");
        assert_eq!(remote.lb.preview_url, "http://127.0.0.1:8001");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("lb.preview_url"), "{warnings:?}");
        assert!(looped.for_tcp_daemon("127.0.0.1").1.is_empty());
        // an address of the Docker host is used as it is
        let on_ip = parse(
            Path::new("bgd.yaml"),
            "app: web\ncontainer:\n  port: 8080\nlb:\n  publish: ['10.0.0.5:80:80', '10.0.0.5:8001:8081']\n",
        )
        .unwrap();
        assert_eq!(on_ip.for_tcp_daemon("h").0.lb.url, "http://10.0.0.5:80");
        assert!(parse(
            Path::new("bgd.yaml"),
            &format!("{text}  via: carrier-pigeon\n")
        )
        .is_err());
    }
}
