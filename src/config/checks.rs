//! Checks of single values: names, image references, sizes, paths, headers, statuses,
//! durations, URLs, port mappings, files beside the config. Each failure is an `Issue` at
//! the key path it was given.

use super::raw::*;
use super::validate::{issue, Checked};
use super::*;

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
        // bgd's own directory beside the apps' in the nginx container
        && name != "logs"
}

/// An image reference as Docker accepts it: `[registry[:port]/]name[:tag][@digest]`, no
/// whitespace or shell/config metacharacters.
/// A host name nginx can match and bgd can put in a Host header: labels of a-z, 0-9 and
/// '-' (not at either end), dot-separated, at most 253 characters; `*.` may lead (a
/// wildcard). Lower case.
pub fn valid_host_name(name: &str) -> bool {
    let bare = name.strip_prefix("*.").unwrap_or(name);
    !bare.is_empty()
        && name.len() <= 253
        && bare.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
}

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
pub(super) fn check_path(key: &str, path: &str) -> Checked<()> {
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

pub(super) fn check_headers(
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

pub(super) fn check_status(key: &str, status: u16) -> Checked<u16> {
    if (100..=599).contains(&status) {
        Ok(status)
    } else {
        Err(issue(
            key,
            format!("{status} is not an HTTP status (100-599)"),
        ))
    }
}

pub(super) fn positive(key: &str, d: Option<DurationStr>, default: Duration) -> Checked<Duration> {
    let d = d.map_or(default, |d| d.0);
    if d.is_zero() {
        return Err(issue(key, "must be longer than zero"));
    }
    Ok(d)
}

pub(super) fn check_url(key: &str, url: &str) -> Checked<String> {
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
pub(super) fn url_for(publish: &[Publish], port: u16) -> Option<String> {
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

pub(super) fn read_relative(dir: &Path, key: &str, rel: &str) -> Checked<(PathBuf, String)> {
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
