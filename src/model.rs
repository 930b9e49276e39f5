//! Small domain types shared by the layers: colors, releases, the pools of replicas nginx
//! routes to, and the names and labels bgd gives containers on the host.

use serde::{Deserialize, Serialize};
use std::fmt;

pub const LABEL_MANAGED: &str = "bgd.managed";
pub const LABEL_APP: &str = "bgd.app";
pub const LABEL_COLOR: &str = "bgd.color";
pub const LABEL_RELEASE: &str = "bgd.release";
pub const LABEL_REPLICA: &str = "bgd.replica";
pub const LABEL_ROLE: &str = "bgd.role";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Color {
    Blue,
    Green,
}

impl Color {
    pub fn other(self) -> Color {
        match self {
            Color::Blue => Color::Green,
            Color::Green => Color::Blue,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Color::Blue => "blue",
            Color::Green => "green",
        }
    }
    pub fn parse(s: &str) -> Option<Color> {
        match s {
            "blue" => Some(Color::Blue),
            "green" => Some(Color::Green),
            _ => None,
        }
    }
}

impl fmt::Display for Color {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// One release of the app in one color: the image and the id every container of it carries
/// in `bgd.release`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Release {
    pub color: Color,
    pub image: String,
    pub release: String,
}

/// What the idle color holds: a release being gated, or the previous live one.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Candidate,
    Parked,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Candidate => "candidate",
            Role::Parked => "parked",
        }
    }
}

/// One replica nginx can route to: its number, its address on the app network now, and the
/// name Docker's DNS gives it there, which follows it when it restarts with a new address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Server {
    pub replica: u32,
    /// the container (normally `<app>-<color>-<n>`)
    pub name: String,
    /// `ip:port`, the IP read from Docker now
    pub addr: String,
    /// `alias:port`: its network alias (`replica_alias`), when it has one (containers made by
    /// older bgd versions do not)
    pub dns: Option<String>,
}

impl Server {
    /// The value of `X-Bgd-Probe-Replica` that routes a probe to this replica ("green-2").
    pub fn probe_key(&self, color: Color) -> String {
        format!("{color}-{}", self.replica)
    }
}

/// The replicas of one color.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pool {
    pub color: Color,
    pub release: String,
    pub servers: Vec<Server>,
}

/// Container name for replica `n` (from 1) of a color: `<app>-<color>-<n>`.
pub fn container_name(app: &str, color: Color, n: u32) -> String {
    format!("{app}-{color}-{n}")
}

/// The name bgd's probes use for a host name of `lb.hosts` or a certificate: itself, or for a
/// wildcard `*.domain`, `bgd-probe.domain` (one name the wildcard covers).
pub fn probe_host(name: &str) -> String {
    match name.strip_prefix("*.") {
        Some(domain) => format!("bgd-probe.{domain}"),
        None => name.to_string(),
    }
}

/// The network alias of replica `n` of a release: unique to that container, unchanged by
/// renames, resolved by Docker's DNS to wherever the container is now.
pub fn replica_alias(app: &str, release: &str, n: u32) -> String {
    format!("{app}-{release}-{n}")
}

/// The name a parked replica has while a candidate holds its color's names.
pub fn aside_name(app: &str, color: Color, replica: u32) -> String {
    format!("{}-parked", container_name(app, color, replica))
}
