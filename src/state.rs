//! What bgd records on the Docker host (in the nginx container, beside the config it wrote):
//! the current state of an app and its history. A laptop and a CI job read the same record.

use crate::model::{Color, Release, Role};
use serde::{Deserialize, Serialize};

pub const STATE_FILE: &str = "state.json";
pub const HISTORY_FILE: &str = "history.jsonl";
/// The nginx config bgd activated for the app (included from conf.d through a stub).
pub const ACTIVE_FILE: &str = "active.conf";
/// History entries kept; older ones are dropped.
pub const HISTORY_LIMIT: usize = 1000;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AppState {
    pub app: String,
    /// Increases with every config bgd activates; nginx echoes it as X-Bgd-Generation.
    pub generation: u64,
    pub live: Option<Release>,
    pub idle: Option<Idle>,
    /// The nginx bgd drives, and its version (read once per container, not every run)
    #[serde(default)]
    pub nginx: Option<NginxInfo>,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NginxInfo {
    pub container_id: String,
    pub version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Idle {
    #[serde(flatten)]
    pub release: Release,
    pub role: Role,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HistoryEntry {
    pub at: String,
    pub command: String,
    /// user@host, plus the CI job when there is one
    pub who: String,
    pub image: Option<String>,
    pub release: Option<String>,
    pub from: Option<Color>,
    pub to: Option<Color>,
    /// ok, rejected, failed, rolled-back
    pub outcome: String,
    pub exit_code: i32,
    pub duration_ms: u64,
    pub message: String,
}

pub fn parse_state(bytes: &[u8]) -> Option<AppState> {
    serde_json::from_slice(bytes).ok()
}

/// Parses history lines, skipping any that do not parse (a torn write must not hide the rest).
pub fn parse_history(bytes: &[u8]) -> Vec<HistoryEntry> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

pub fn history_text(entries: &[HistoryEntry]) -> String {
    let start = entries.len().saturating_sub(HISTORY_LIMIT);
    let mut out = String::new();
    for e in &entries[start..] {
        if let Ok(line) = serde_json::to_string(e) {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A release id: UTC time of the deploy, sortable.
pub fn new_release_id() -> String {
    chrono::Utc::now().format("%Y%m%d-%H%M%S").to_string()
}

/// Who runs bgd: `user@host`, and the CI job when one of the usual CI variables is set.
pub fn who() -> String {
    let (user, host, ci) = identity();
    let mut who = format!("{user}@{host}");
    if let Some(job) = ci {
        who.push_str(&format!(" ({job})"));
    }
    who
}

/// (user, host, CI job) of this process.
pub fn identity() -> (String, String, Option<String>) {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .or_else(|_| std::env::var("USERNAME"))
        .ok()
        .or_else(user_from_passwd)
        .unwrap_or_else(|| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into());
    (user, host, ci_job())
}

/// The name of this process's uid in /etc/passwd, for when USER is not set (cron, CI).
fn user_from_passwd() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        (f.nth(1)? == uid).then(|| name.to_string())
    })
}

fn ci_job() -> Option<String> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let Some(id) = var("GITHUB_RUN_ID") {
        let repo = var("GITHUB_REPOSITORY").unwrap_or_default();
        return Some(format!("github {repo} run {id}"));
    }
    if let Some(id) = var("CI_JOB_ID") {
        return Some(format!("gitlab job {id}"));
    }
    if let Some(id) = var("BUILDKITE_JOB_ID") {
        return Some(format!("buildkite job {id}"));
    }
    if let Some(url) = var("BUILD_URL") {
        return Some(format!("jenkins {url}"));
    }
    var("CI").map(|_| "ci".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trip() {
        let s = AppState {
            app: "web".into(),
            generation: 3,
            live: Some(Release {
                color: Color::Green,
                image: "web:v2".into(),
                release: "r2".into(),
            }),
            idle: Some(Idle {
                release: Release {
                    color: Color::Blue,
                    image: "web:v1".into(),
                    release: "r1".into(),
                },
                role: Role::Parked,
            }),
            nginx: None,
            updated_at: now(),
        };
        let bytes = serde_json::to_vec(&s).unwrap();
        assert_eq!(parse_state(&bytes), Some(s));
        assert_eq!(parse_state(b"{broken"), None);
    }

    #[test]
    fn history_skips_torn_lines_and_caps() {
        let e = HistoryEntry {
            at: now(),
            command: "deploy".into(),
            who: "me@here".into(),
            image: Some("web:v1".into()),
            release: None,
            from: None,
            to: Some(Color::Blue),
            outcome: "ok".into(),
            exit_code: 0,
            duration_ms: 5,
            message: String::new(),
        };
        let mut text = history_text(&[e.clone(), e.clone()]);
        text.push_str("{\"torn");
        assert_eq!(parse_history(text.as_bytes()).len(), 2);
        let many = vec![e; HISTORY_LIMIT + 5];
        assert_eq!(
            parse_history(history_text(&many).as_bytes()).len(),
            HISTORY_LIMIT
        );
    }
}
