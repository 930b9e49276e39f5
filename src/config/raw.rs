//! The YAML as written: serde structs that reject unknown keys. Nothing here is trusted yet;
//! `validate.rs` turns a `RawConfig` into a `Config`.

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub app: String,
    pub replicas: Option<u32>,
    pub network: Option<String>,
    pub container: RawContainer,
    #[serde(default)]
    pub readiness: RawReadiness,
    #[serde(default)]
    pub smoke: Vec<RawSmoke>,
    #[serde(default)]
    pub hooks: RawHooks,
    #[serde(default)]
    pub lb: RawLb,
    #[serde(default)]
    pub switch: RawSwitch,
    #[serde(default)]
    pub park: RawPark,
    #[serde(default)]
    pub pull: RawPull,
    pub retain: Option<u32>,
    pub prune: Option<PruneMode>,
    #[serde(default)]
    pub drill: RawDrill,
    #[serde(default)]
    pub warmup: RawWarmup,
    #[serde(default)]
    pub canary: RawCanary,
}

/// What a window with too little traffic to judge does (`inconclusive`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Inconclusive {
    /// A warning; the deploy goes on
    Pass,
    /// It fails like a breach
    Fail,
}

/// When release images are pruned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PruneMode {
    /// Only by `bgd prune`
    Manual,
    /// Also after every successful deploy
    Auto,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawContainer {
    pub port: u16,
    pub command: Option<Vec<String>>,
    #[serde(default)]
    pub env: BTreeMap<String, Scalar>,
    pub env_file: Option<String>,
    #[serde(default)]
    pub volumes: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, Scalar>,
    pub stop_timeout: Option<DurationStr>,
    pub memory: Option<Scalar>,
    pub cpus: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReadiness {
    pub path: Option<String>,
    pub expect_status: Option<u16>,
    pub interval: Option<DurationStr>,
    pub timeout: Option<DurationStr>,
    pub successes: Option<u32>,
    pub deadline: Option<DurationStr>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSmoke {
    pub name: String,
    pub method: Option<String>,
    pub path: String,
    #[serde(default)]
    pub headers: BTreeMap<String, Scalar>,
    pub body: Option<String>,
    #[serde(default)]
    pub expect: RawExpect,
    pub target: Option<String>,
    #[serde(default)]
    pub capture: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExpect {
    pub status: Option<Vec<u16>>,
    pub body_contains: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHooks {
    pub migrate: Option<RawMigrate>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMigrate {
    pub command: Vec<String>,
    pub timeout: Option<DurationStr>,
    pub rehearse: Option<RawRehearse>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLb {
    pub container: Option<String>,
    pub image: Option<String>,
    #[serde(default)]
    pub publish: Vec<String>,
    pub listen: Option<u16>,
    pub preview_listen: Option<u16>,
    pub url: Option<String>,
    pub preview_url: Option<String>,
    pub template: Option<String>,
    pub upstream_keepalive_timeout: Option<DurationStr>,
    pub via: Option<String>,
    pub hosts: Option<Vec<String>>,
    pub preview_host: Option<String>,
    pub tls: Option<RawTls>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRehearse {
    #[serde(default)]
    pub volumes: Vec<String>,
    pub prepare: Option<Vec<String>>,
    pub cleanup: Option<Vec<String>>,
    #[serde(default)]
    pub env: BTreeMap<String, Scalar>,
    pub timeout: Option<DurationStr>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWarmup {
    #[serde(default)]
    pub requests: Vec<RawWarmupRequest>,
    pub must_pass: Option<bool>,
    pub mirror: Option<RawMirror>,
}

/// `warmup.mirror`: a share of live requests copied to the candidate, compared with live.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMirror {
    pub share: Option<Scalar>,
    #[serde(rename = "for")]
    pub window: Option<DurationStr>,
    pub methods: Option<Vec<String>>,
    pub timeout: Option<DurationStr>,
    pub max_error_increase: Option<Scalar>,
    pub max_latency_ratio: Option<Scalar>,
    pub min_latency: Option<DurationStr>,
    pub min_requests: Option<u64>,
    pub inconclusive: Option<Inconclusive>,
}

/// `canary`: the steps a plain deploy takes through a canary, judged at each.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCanary {
    pub steps: Option<Vec<Scalar>>,
    pub step_for: Option<DurationStr>,
    pub max_error_increase: Option<Scalar>,
    pub max_latency_ratio: Option<Scalar>,
    pub min_latency: Option<DurationStr>,
    pub min_requests: Option<u64>,
    pub inconclusive: Option<Inconclusive>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWarmupRequest {
    pub path: String,
    pub method: Option<String>,
    pub count: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDrill {
    pub rto: Option<DurationStr>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub certificate: Option<String>,
    pub key: Option<String>,
    pub certificate_path: Option<String>,
    pub key_path: Option<String>,
    pub listen: Option<u16>,
    pub redirect_http: Option<bool>,
    pub hsts: Option<bool>,
    pub http2: Option<bool>,
    pub ca: Option<String>,
    pub redirect_port: Option<u16>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSwitch {
    pub verify: Option<DurationStr>,
    pub auto_rollback: Option<bool>,
    pub drain: Option<DurationStr>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPull {
    pub timeout: Option<DurationStr>,
    pub policy: Option<PullPolicy>,
}

/// When a deploy pulls its image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PullPolicy {
    /// Only when the image is not on the Docker host (immutable tags)
    Missing,
    /// On every deploy, so a moved tag (`:latest`, `:main`) is deployed as it is now
    Always,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPark {
    pub mode: Option<ParkMode>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ParkMode {
    Running,
    Stopped,
}

/// A YAML scalar used as a string (env values, labels, headers): `8080`, `true` and `"x"`
/// all become text; a mapping or a list is an error at its line and column.
#[derive(Debug, Clone)]
pub struct Scalar(pub String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A duration written as a string: `"500ms"`, `"30s"`, `"5m"`, `"1h"`.
#[derive(Debug, Clone, Copy)]
pub struct DurationStr(pub Duration);

impl<'de> Deserialize<'de> for DurationStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = DurationStr;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration string such as \"500ms\", \"30s\" or \"5m\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationStr, E> {
                parse_duration(v).map(DurationStr).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || {
        format!("invalid duration {text:?}: use a number and a unit (ms, s, m, h), e.g. \"500ms\", \"30s\", \"5m\"")
    };
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(bad()),
    };
    if !secs.is_finite() || secs > 7.0 * 24.0 * 3600.0 {
        return Err(format!("invalid duration {text:?}: longer than a week"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("9999h").is_err());
    }
}
