//! The semantic pass: `RawConfig` -> `Config`, with defaults filled in. Each problem names its
//! key path; `mod.rs` turns that into a line and column.

use super::envfile;
use super::raw::*;
use super::*;

pub struct Issue {
    pub path: String,
    pub message: String,
}

fn issue(path: impl Into<String>, message: impl Into<String>) -> Issue {
    Issue {
        path: path.into(),
        message: message.into(),
    }
}

type Checked<T> = std::result::Result<T, Issue>;

/// Docker object names (containers, networks): `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn valid_docker_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 128
        && matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

pub fn valid_app_name(name: &str) -> bool {
    (1..=40).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
}

/// An image reference as Docker accepts it: `[registry[:port]/]name[:tag][@digest]`, no
/// whitespace or shell/config metacharacters.
pub fn check_image_ref(image: &str) -> std::result::Result<(), String> {
    let ok_chars = image
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | ':' | '@'));
    if image.is_empty() || image.len() > 255 || !ok_chars {
        return Err(format!(
            "{image:?} is not an image reference (expected name[:tag][@digest], e.g. registry.example.com/web:v2)"
        ));
    }
    if image.starts_with(['-', '.', '/', ':', '@']) || image.ends_with([':', '/', '@']) {
        return Err(format!("{image:?} is not an image reference"));
    }
    Ok(())
}

/// A memory size as Docker's `--memory` takes it: bytes, or a number with `b`, `k`, `m`, `g`
/// (binary units, either case). Docker's floor is 6 MiB.
pub fn parse_memory(text: &str) -> std::result::Result<i64, String> {
    let t = text.trim().to_ascii_lowercase();
    let bad = || format!("{text:?} is not a memory size: use e.g. \"512m\" or \"2g\"");
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: i64 = num.parse().map_err(|_| bad())?;
    let scale: i64 = match unit {
        "" | "b" => 1,
        "k" | "kb" => 1 << 10,
        "m" | "mb" => 1 << 20,
        "g" | "gb" => 1 << 30,
        _ => return Err(bad()),
    };
    let bytes = n.checked_mul(scale).ok_or_else(bad)?;
    if bytes < 6 << 20 {
        return Err(format!("{text:?} is below Docker's minimum of 6m"));
    }
    Ok(bytes)
}

/// A CPU limit as Docker's `--cpus` takes it (e.g. `0.5`, `2`), in billionths of a CPU.
pub fn parse_cpus(text: &str) -> std::result::Result<i64, String> {
    let n: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of CPUs (e.g. 0.5 or 2)"))?;
    if !(0.01..=1024.0).contains(&n) {
        return Err(format!("{text:?} must be between 0.01 and 1024"));
    }
    Ok((n * 1e9).round() as i64)
}

/// HTTP request paths bgd sends: absolute, printable, no spaces.
fn check_path(key: &str, path: &str) -> Checked<()> {
    if !path.starts_with('/') {
        return Err(issue(key, format!("{path:?} must start with '/'")));
    }
    if path.len() > 2048 || path.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(issue(
            key,
            "must be printable, without spaces or control characters",
        ));
    }
    Ok(())
}

fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c))
}

fn check_headers(
    key: &str,
    headers: &BTreeMap<String, Scalar>,
) -> Checked<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (name, value) in headers {
        let k = format!("{key}.{name}");
        if !valid_header_name(name) {
            return Err(issue(
                k,
                format!("{name:?} is not a valid HTTP header name"),
            ));
        }
        if value.0.chars().any(|c| c.is_control() && c != '\t') {
            return Err(issue(
                k,
                "header values cannot contain control characters or newlines",
            ));
        }
        out.insert(name.clone(), value.0.clone());
    }
    Ok(out)
}

fn check_status(key: &str, status: u16) -> Checked<u16> {
    if (100..=599).contains(&status) {
        Ok(status)
    } else {
        Err(issue(
            key,
            format!("{status} is not an HTTP status (100-599)"),
        ))
    }
}

fn positive(key: &str, d: Option<DurationStr>, default: Duration) -> Checked<Duration> {
    let d = d.map_or(default, |d| d.0);
    if d.is_zero() {
        return Err(issue(key, "must be longer than zero"));
    }
    Ok(d)
}

fn check_url(key: &str, url: &str) -> Checked<String> {
    let parsed =
        reqwest::Url::parse(url).map_err(|e| issue(key, format!("{url:?} is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(issue(
            key,
            format!("{url:?} must be an http:// or https:// URL with a host"),
        ));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(issue(key, "must not have a query or fragment"));
    }
    Ok(url.trim_end_matches('/').to_string())
}

pub fn parse_publish(spec: &str) -> std::result::Result<Publish, String> {
    let bad = || {
        format!(
            "{spec:?} is not a port mapping: use \"[host_ip:]host_port:container_port\" (e.g. \"127.0.0.1:8000:80\")"
        )
    };
    let spec_no_proto = spec.strip_suffix("/tcp").unwrap_or(spec);
    let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p > 0);
    let parts: Vec<&str> = spec_no_proto.rsplitn(3, ':').collect();
    let publish = match parts.as_slice() {
        [c] => Publish {
            host_ip: None,
            host_port: None,
            container_port: port(c).ok_or_else(bad)?,
        },
        [c, h] => Publish {
            host_ip: None,
            host_port: Some(port(h).ok_or_else(bad)?),
            container_port: port(c).ok_or_else(bad)?,
        },
        [c, h, ip] => {
            let ip = ip.trim_start_matches('[').trim_end_matches(']');
            if ip.parse::<std::net::IpAddr>().is_err() {
                return Err(bad());
            }
            Publish {
                host_ip: Some(ip.to_string()),
                host_port: if h.is_empty() {
                    None
                } else {
                    Some(port(h).ok_or_else(bad)?)
                },
                container_port: port(c).ok_or_else(bad)?,
            }
        }
        _ => return Err(bad()),
    };
    Ok(publish)
}

/// `lb.url` when not given: the host side of the mapping that publishes `port`.
fn url_for(publish: &[Publish], port: u16) -> Option<String> {
    publish
        .iter()
        .find(|p| p.container_port == port)
        .and_then(|p| {
            let host_port = p.host_port?;
            let ip = match p.host_ip.as_deref() {
                None | Some("0.0.0.0") | Some("::") => "127.0.0.1".to_string(),
                Some(ip) if ip.contains(':') => format!("[{ip}]"),
                Some(ip) => ip.to_string(),
            };
            Some(format!("http://{ip}:{host_port}"))
        })
}

fn read_relative(dir: &Path, key: &str, rel: &str) -> Checked<(PathBuf, String)> {
    let path = dir.join(rel);
    let meta = std::fs::metadata(&path)
        .map_err(|e| issue(key, format!("cannot read {}: {e}", path.display())))?;
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(issue(key, format!("{} is too large", path.display())));
    }
    let bytes = std::fs::read(&path)
        .map_err(|e| issue(key, format!("cannot read {}: {e}", path.display())))?;
    let text = String::from_utf8(bytes)
        .ok()
        .filter(|t| !t.contains('\0'))
        .ok_or_else(|| issue(key, format!("{} is not a text file", path.display())))?;
    Ok((path, text))
}

pub fn validate(raw: RawConfig, dir: &Path) -> Checked<Config> {
    if !valid_app_name(&raw.app) {
        return Err(issue(
            "app",
            format!(
                "{:?} must be 1-40 characters of a-z, 0-9 and '-', not starting with '-'",
                raw.app
            ),
        ));
    }
    let app = raw.app;
    let replicas = raw.replicas.unwrap_or(1);
    if !(1..=64).contains(&replicas) {
        return Err(issue("replicas", "must be between 1 and 64"));
    }
    let network = raw.network.unwrap_or_else(|| format!("{app}-net"));
    if !valid_docker_name(&network) || matches!(network.as_str(), "bridge" | "host" | "none") {
        return Err(issue(
            "network",
            format!("{network:?} must be a user-defined network name ([a-zA-Z0-9][a-zA-Z0-9_.-]*, not bridge/host/none)"),
        ));
    }

    let c = raw.container;
    if c.port == 0 {
        return Err(issue("container.port", "must be between 1 and 65535"));
    }
    if let Some(cmd) = &c.command {
        if cmd.is_empty() || cmd.iter().any(|a| a.contains('\0')) {
            return Err(issue(
                "container.command",
                "must be a non-empty list of arguments",
            ));
        }
    }
    let mut env = BTreeMap::new();
    for (k, v) in c.env {
        if !valid_env_name(&k) {
            return Err(issue(
                format!("container.env.{k}"),
                format!("{k:?} is not a valid variable name"),
            ));
        }
        if v.0.contains('\0') {
            return Err(issue(format!("container.env.{k}"), "must not contain NUL"));
        }
        env.insert(k, v.0);
    }
    let (env_file, env_file_path) = match c.env_file {
        None => (Vec::new(), None),
        Some(rel) => {
            let (path, text) = read_relative(dir, "container.env_file", &rel)?;
            let vars = envfile::parse(&text)
                .map_err(|e| issue("container.env_file", format!("{}: {e}", path.display())))?;
            (vars, Some(path))
        }
    };
    for (i, v) in c.volumes.iter().enumerate() {
        let key = format!("container.volumes[{i}]");
        let parts: Vec<&str> = v.split(':').collect();
        let ok = matches!(parts.len(), 2 | 3)
            && !parts[0].is_empty()
            && parts[1].starts_with('/')
            && !v.chars().any(|c| c.is_control());
        if !ok {
            return Err(issue(
                key,
                format!("{v:?} must be \"source:/container/path[:ro]\""),
            ));
        }
    }
    let mut labels = BTreeMap::new();
    for (k, v) in c.labels {
        let key = format!("container.labels.{k}");
        if k.starts_with("bgd.") {
            return Err(issue(key, "labels starting with 'bgd.' are bgd's own"));
        }
        if k.is_empty() || k.chars().chain(v.0.chars()).any(|c| c.is_control()) {
            return Err(issue(key, "labels must be printable"));
        }
        labels.insert(k, v.0);
    }
    let stop_timeout = c.stop_timeout.map_or(Duration::from_secs(10), |d| d.0);
    let memory = c
        .memory
        .map(|m| parse_memory(&m.0).map_err(|e| issue("container.memory", e)))
        .transpose()?;
    let nano_cpus = c
        .cpus
        .map(|m| parse_cpus(&m.0).map_err(|e| issue("container.cpus", e)))
        .transpose()?;
    let container = ContainerConfig {
        port: c.port,
        command: c.command,
        env,
        env_file,
        env_file_path,
        volumes: c.volumes,
        labels,
        stop_timeout,
        memory,
        nano_cpus,
    };

    let r = raw.readiness;
    let readiness = Readiness {
        path: r.path.unwrap_or_else(|| "/".into()),
        expect_status: check_status("readiness.expect_status", r.expect_status.unwrap_or(200))?,
        interval: positive("readiness.interval", r.interval, Duration::from_millis(500))?,
        timeout: positive("readiness.timeout", r.timeout, Duration::from_secs(2))?,
        successes: r.successes.unwrap_or(2),
        deadline: positive("readiness.deadline", r.deadline, Duration::from_secs(60))?,
    };
    check_path("readiness.path", &readiness.path)?;
    if readiness.successes == 0 || readiness.successes > 100 {
        return Err(issue("readiness.successes", "must be between 1 and 100"));
    }
    if readiness.deadline < readiness.interval {
        return Err(issue(
            "readiness.deadline",
            "must be at least readiness.interval",
        ));
    }

    let mut smoke = Vec::new();
    for (i, s) in raw.smoke.into_iter().enumerate() {
        let key = |k: &str| format!("smoke[{i}].{k}");
        if s.name.is_empty()
            || s.name.len() > 64
            || !s
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || " _.-".contains(c))
        {
            return Err(issue(
                key("name"),
                "must be 1-64 characters of letters, digits, space, '_', '.', '-'",
            ));
        }
        if smoke.iter().any(|p: &SmokeProbe| p.name == s.name) {
            return Err(issue(
                key("name"),
                format!("{:?} is used by another probe", s.name),
            ));
        }
        let method = s.method.unwrap_or_else(|| "GET".into());
        if method.is_empty() || method.len() > 16 || !method.chars().all(|c| c.is_ascii_uppercase())
        {
            return Err(issue(
                key("method"),
                format!("{method:?} is not an HTTP method (GET, POST, ...)"),
            ));
        }
        check_path(&key("path"), &s.path)?;
        let headers = check_headers(&key("headers"), &s.headers)?;
        let status = s.expect.status.unwrap_or_else(|| vec![200]);
        if status.is_empty() {
            return Err(issue(key("expect.status"), "list at least one status"));
        }
        for st in &status {
            check_status(&key("expect.status"), *st)?;
        }
        let expect = Expect {
            status,
            body_contains: s.expect.body_contains,
            headers: check_headers(&key("expect.headers"), &s.expect.headers)?,
        };
        smoke.push(SmokeProbe {
            name: s.name,
            method,
            path: s.path,
            headers,
            body: s.body.unwrap_or_default(),
            expect,
        });
    }

    let migrate = match raw.hooks.migrate {
        None => None,
        Some(m) => {
            if m.command.is_empty() {
                return Err(issue(
                    "hooks.migrate.command",
                    "must be a non-empty list of arguments",
                ));
            }
            Some(Migrate {
                command: m.command,
                timeout: positive("hooks.migrate.timeout", m.timeout, Duration::from_secs(300))?,
            })
        }
    };

    let l = raw.lb;
    let lb_container = l.container.unwrap_or_else(|| format!("{app}-lb"));
    if !valid_docker_name(&lb_container) {
        return Err(issue(
            "lb.container",
            format!("{lb_container:?} is not a valid container name"),
        ));
    }
    if let Some(image) = &l.image {
        check_image_ref(image).map_err(|e| issue("lb.image", e))?;
    }
    let mut publish = Vec::new();
    for (i, p) in l.publish.iter().enumerate() {
        publish.push(parse_publish(p).map_err(|e| issue(format!("lb.publish[{i}]"), e))?);
    }
    let listen = l.listen.unwrap_or(80);
    let preview_listen = l.preview_listen.unwrap_or(8081);
    if listen == 0 {
        return Err(issue("lb.listen", "must be between 1 and 65535"));
    }
    if preview_listen == 0 {
        return Err(issue("lb.preview_listen", "must be between 1 and 65535"));
    }
    if listen == preview_listen {
        return Err(issue(
            "lb.preview_listen",
            format!("{preview_listen} clashes with lb.listen: the live and preview listeners need their own ports"),
        ));
    }
    let url = match l.url {
        Some(u) => check_url("lb.url", &u)?,
        None => url_for(&publish, listen).ok_or_else(|| {
            issue("lb", format!("set lb.url (where bgd reaches the live listener), or publish port {listen} in lb.publish"))
        })?,
    };
    let preview_url = match l.preview_url {
        Some(u) => check_url("lb.preview_url", &u)?,
        None => url_for(&publish, preview_listen).ok_or_else(|| {
            issue("lb", format!("set lb.preview_url (where bgd reaches the preview listener), or publish port {preview_listen} in lb.publish"))
        })?,
    };
    if url == preview_url {
        return Err(issue("lb.preview_url", "must differ from lb.url"));
    }
    let template = match l.template {
        None => None,
        Some(rel) => Some(read_relative(dir, "lb.template", &rel)?),
    };

    let s = raw.switch;
    let switch = Switch {
        verify: s.verify.map_or(Duration::from_secs(10), |d| d.0),
        auto_rollback: s.auto_rollback.unwrap_or(true),
        drain: positive("switch.drain", s.drain, Duration::from_secs(30))?,
    };

    Ok(Config {
        file: PathBuf::new(),
        app,
        replicas,
        network,
        container,
        readiness,
        smoke,
        hooks: Hooks { migrate },
        lb: Lb {
            container: lb_container,
            image: l.image,
            publish,
            listen,
            preview_listen,
            url,
            preview_url,
            template,
            upstream_keepalive_timeout: positive(
                "lb.upstream_keepalive_timeout",
                l.upstream_keepalive_timeout,
                Duration::from_secs(2),
            )?,
        },
        switch,
        park: raw.park.mode.unwrap_or(ParkMode::Running),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_forms() {
        assert_eq!(
            parse_publish("127.0.0.1:8000:80").unwrap(),
            Publish {
                host_ip: Some("127.0.0.1".into()),
                host_port: Some(8000),
                container_port: 80
            }
        );
        assert_eq!(parse_publish("8000:80").unwrap().host_port, Some(8000));
        assert_eq!(parse_publish("80").unwrap().container_port, 80);
        assert!(parse_publish("x:80").is_err());
        assert!(parse_publish("1.2.3:8000:80").is_err());
        assert!(parse_publish("0:80").is_err());
    }

    #[test]
    fn resources() {
        assert_eq!(parse_memory("512m"), Ok(512 << 20));
        assert_eq!(parse_memory("2G"), Ok(2 << 30));
        assert_eq!(parse_memory("10485760"), Ok(10 << 20));
        assert!(parse_memory("1k").is_err(), "below Docker's floor");
        assert!(parse_memory("lots").is_err());
        assert!(parse_memory("-1g").is_err());
        assert_eq!(parse_cpus("0.5"), Ok(500_000_000));
        assert_eq!(parse_cpus("2"), Ok(2_000_000_000));
        assert!(parse_cpus("0").is_err());
        assert!(parse_cpus("many").is_err());
    }

    #[test]
    fn image_refs() {
        assert!(check_image_ref("nginx:1.29-alpine").is_ok());
        assert!(check_image_ref("registry.example.com:5000/team/web@sha256:abc").is_ok());
        assert!(check_image_ref("web;rm -rf").is_err());
        assert!(check_image_ref("-v").is_err());
        assert!(check_image_ref("").is_err());
    }

    #[test]
    fn app_names() {
        assert!(valid_app_name("web-2"));
        assert!(!valid_app_name("Web"));
        assert!(!valid_app_name("-web"));
        assert!(!valid_app_name("web;"));
        assert!(!valid_app_name(&"a".repeat(41)));
    }
}
