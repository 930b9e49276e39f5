//! Small domain types shared by the layers: colors and the pools of replicas nginx routes to.

use serde::{Deserialize, Serialize};
use std::fmt;

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

/// One replica nginx can route to: its number and its address on the app network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Server {
    pub replica: u32,
    /// the container (normally `<app>-<color>-<n>`)
    pub name: String,
    /// `ip:port`, an IP read from Docker, never a name
    pub addr: String,
}

/// The replicas of one color.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pool {
    pub color: Color,
    pub release: String,
    pub servers: Vec<Server>,
}

/// Container name for replica `n` (from 1) of a color, per SPEC.md.
pub fn container_name(app: &str, color: Color, n: u32) -> String {
    format!("{app}-{color}-{n}")
}
