//! bgd's own view of Docker objects: what goes in (`ContainerSpec`) and what comes out
//! (`ContainerInfo`, `ImageDefaults`, `ExecOutput`). bollard's model types stop here.

use crate::model::{Release, LABEL_RELEASE, LABEL_REPLICA};
use std::collections::HashMap;
use std::time::Duration;

/// A container as bgd sees it.
#[derive(Debug, Clone, Default)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub image: String,
    pub labels: HashMap<String, String>,
    /// Docker's state: created, running, exited, ...
    pub state: String,
    /// Docker's health check status, when the image defines one
    pub health: Option<String>,
    /// network name -> IPv4 address
    pub networks: HashMap<String, String>,
    /// network name -> the names other containers reach it by there (its aliases)
    pub aliases: HashMap<String, Vec<String>>,
    pub exit_code: Option<i64>,
    /// The image's ID (`sha256:...`), which stays put when the tag moves
    pub image_id: String,
    /// How often Docker restarted it (restart policy)
    pub restart_count: i64,
    /// How long it has run since it last started (see `up_for`), as the daemon's own clock says
    /// (from a container list's status: `None` from an inspect, or when not running)
    pub up_for: Option<Duration>,
    /// What it runs with, as Docker reports it (for drift checks)
    pub settings: RunSettings,
}

/// The settings a container runs with, as Docker reports them. Env and labels include what
/// the image contributed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunSettings {
    /// `NAME=value`
    pub env: Vec<String>,
    pub cmd: Option<Vec<String>>,
    /// `source:/target[:mode]` as given at creation
    pub binds: Vec<String>,
    /// `no`, `always`, `unless-stopped`, `on-failure` (empty on some daemons for `no`)
    pub restart_policy: String,
    /// bytes, 0 = unlimited
    pub memory: i64,
    /// billionths of a CPU, 0 = unlimited
    pub nano_cpus: i64,
    /// seconds
    pub stop_timeout: Option<i64>,
}

/// What an image contributes to every container made from it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageDefaults {
    /// `NAME=value`
    pub env: Vec<String>,
    pub cmd: Option<Vec<String>>,
    pub labels: HashMap<String, String>,
}

/// How long a running container has run, read from the status a container list gives it
/// ("Up 5 seconds (healthy)", in Docker's human units: go-units `HumanDuration`): at least
/// that in seconds and minutes; hours and longer are rounded. `None` when the status is not
/// one of a running container, or reads otherwise.
pub fn up_for(status: &str) -> Option<Duration> {
    let up = status.strip_prefix("Up ")?;
    let up = up.split(" (").next().unwrap_or(up);
    let secs = match up {
        "Less than a second" => 0,
        "1 second" => 1,
        "About a minute" => 60,
        "About an hour" => 3600,
        _ => {
            let (n, unit) = up.split_once(' ')?;
            let n: u64 = n.parse().ok()?;
            let each = match unit {
                "seconds" => 1,
                "minutes" => 60,
                "hours" => 3600,
                "days" => 86_400,
                "weeks" => 7 * 86_400,
                "months" => 30 * 86_400,
                "years" => 365 * 86_400,
                _ => return None,
            };
            n * each
        }
    };
    Some(Duration::from_secs(secs))
}

impl ContainerInfo {
    pub fn running(&self) -> bool {
        self.state == "running"
    }
    pub fn ip_on(&self, network: &str) -> Option<&str> {
        self.networks
            .get(network)
            .map(String::as_str)
            .filter(|ip| !ip.is_empty())
    }
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }
    /// Whether other containers on `network` reach it as `alias`.
    pub fn has_alias(&self, network: &str, alias: &str) -> bool {
        self.aliases
            .get(network)
            .is_some_and(|a| a.iter().any(|x| x == alias))
    }
    /// The replica number it carries in `bgd.replica`.
    pub fn replica(&self) -> Option<u32> {
        self.label(LABEL_REPLICA)?.parse().ok()
    }
    /// Whether it belongs to `release` (its color and release labels).
    pub fn is_of(&self, release: &Release) -> bool {
        self.label(crate::model::LABEL_COLOR) == Some(release.color.as_str())
            && self.label(LABEL_RELEASE) == Some(release.release.as_str())
    }
}

/// What to create. bgd builds these with pure code (deploy::specs); this module only sends them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub env: Vec<String>,
    pub cmd: Option<Vec<String>>,
    /// Replaces the image's entrypoint (a one-off helper container); None: the image's
    pub entrypoint: Option<Vec<String>>,
    pub labels: HashMap<String, String>,
    pub network: String,
    /// Names other containers reach it by on `network` (Docker's DNS), besides its name
    pub aliases: Vec<String>,
    /// `source:/target[:mode]`, named volumes or host paths
    pub binds: Vec<String>,
    pub stop_timeout: Option<Duration>,
    /// Docker restart policy `unless-stopped` when true
    pub restart: bool,
    /// (host ip, host port, container port)
    pub publish: Vec<(Option<String>, Option<u16>, u16)>,
    /// bytes, None = unlimited
    pub memory: Option<i64>,
    /// billionths of a CPU, None = unlimited
    pub nano_cpus: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct ExecOutput {
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
}

impl From<bollard::models::ContainerInspectResponse> for ContainerInfo {
    fn from(c: bollard::models::ContainerInspectResponse) -> ContainerInfo {
        let state = c.state.as_ref();
        let config = c.config.as_ref();
        let host = c.host_config.as_ref();
        let networks = c
            .network_settings
            .as_ref()
            .and_then(|n| n.networks.clone())
            .unwrap_or_default();
        let settings = RunSettings {
            env: config.and_then(|c| c.env.clone()).unwrap_or_default(),
            cmd: config.and_then(|c| c.cmd.clone()),
            binds: host.and_then(|h| h.binds.clone()).unwrap_or_default(),
            restart_policy: host
                .and_then(|h| h.restart_policy.as_ref())
                .and_then(|r| r.name)
                .map(|n| n.to_string())
                .unwrap_or_default(),
            memory: host.and_then(|h| h.memory).unwrap_or(0),
            nano_cpus: host.and_then(|h| h.nano_cpus).unwrap_or(0),
            stop_timeout: config.and_then(|c| c.stop_timeout),
        };
        ContainerInfo {
            id: c.id.clone().unwrap_or_default(),
            name: c
                .name
                .clone()
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_string(),
            image: config.and_then(|c| c.image.clone()).unwrap_or_default(),
            labels: config.and_then(|c| c.labels.clone()).unwrap_or_default(),
            state: state
                .and_then(|s| s.status)
                .map(|s| s.to_string())
                .unwrap_or_else(|| "unknown".into()),
            health: state
                .and_then(|s| s.health.as_ref())
                .and_then(|h| h.status)
                .map(|s| s.to_string()),
            networks: networks
                .iter()
                .map(|(k, v)| (k.clone(), v.ip_address.clone().unwrap_or_default()))
                .collect(),
            aliases: networks
                .iter()
                .map(|(k, v)| (k.clone(), v.aliases.clone().unwrap_or_default()))
                .collect(),
            exit_code: state.and_then(|s| s.exit_code),
            image_id: c.image.clone().unwrap_or_default(),
            restart_count: c.restart_count.unwrap_or(0),
            // an inspect says when it started by the daemon's clock, which may not be ours
            up_for: None,
            settings,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::up_for;
    use std::time::Duration;

    #[test]
    fn a_list_status_reads_as_how_long_it_ran_at_least() {
        let s = |n| Some(Duration::from_secs(n));
        assert_eq!(up_for("Up Less than a second"), s(0));
        assert_eq!(up_for("Up 1 second"), s(1));
        assert_eq!(up_for("Up 9 seconds (healthy)"), s(9));
        assert_eq!(up_for("Up About a minute"), s(60));
        assert_eq!(up_for("Up 12 minutes (unhealthy)"), s(720));
        assert_eq!(up_for("Up About an hour"), s(3600));
        assert_eq!(up_for("Up 3 days (Paused)"), s(3 * 86_400));
        for other in [
            "Exited (0) 2 minutes ago",
            "Created",
            "Restarting (1) 2 seconds ago",
            "Up",
            "Up a while",
            "Up 5 fortnights",
            "",
        ] {
            assert_eq!(up_for(other), None, "{other}");
        }
    }
}
