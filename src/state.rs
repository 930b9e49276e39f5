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

/// The newest schema of the record this bgd reads and writes. A record of a newer schema is
/// never read as if it were this one; a record without one is schema 1 (bgd before versions
/// were recorded), which this bgd reads as it is. A record is written with the oldest schema
/// that says all it holds (`AppState::schema_needed`): 3 only while a canary runs, which a bgd
/// that knows schema 2 would misread (its rollback would switch all traffic to the canary).
pub const SCHEMA: u32 = 4;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AppState {
    #[serde(default = "legacy_schema")]
    pub schema: u32,
    pub app: String,
    /// Increases with every config bgd activates; nginx echoes it as X-Bgd-Generation.
    pub generation: u64,
    pub live: Option<Release>,
    pub idle: Option<Idle>,
    /// While a candidate waits (`deploy --no-switch`): the parked release it displaced, kept
    /// running under its aside names, which `discard` gives back and `switch` removes
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_aside: Option<Release>,
    /// The idle candidate is the release that failed verification after its switch (traffic
    /// was switched back): it is there to inspect, never to `switch` to
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub candidate_failed: bool,
    /// The nginx bgd drives, and its version (read once per container, not every run)
    #[serde(default)]
    pub nginx: Option<NginxInfo>,
    /// While a canary runs: the share of live traffic the idle candidate takes
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
    /// While the active config's rollback flag is raised: the generation it was raised
    /// under. `live` and `idle` are then the other way round from the config's text, which a
    /// bgd that knows no flag would misread: such a record is schema 4
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flipped_at: Option<u64>,
    pub updated_at: String,
}

/// A canary: the idle candidate takes `share` percent of live clients.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Canary {
    pub share: u8,
    /// When the share was set (the traffic counts start there)
    pub since: String,
}

impl Default for AppState {
    fn default() -> AppState {
        AppState {
            schema: SCHEMA,
            app: String::new(),
            generation: 0,
            live: None,
            idle: None,
            set_aside: None,
            candidate_failed: false,
            nginx: None,
            canary: None,
            flipped_at: None,
            updated_at: String::new(),
        }
    }
}

impl AppState {
    /// The oldest schema that says everything this record holds.
    pub fn schema_needed(&self) -> u32 {
        if self.flipped() {
            4
        } else if self.canary.is_some() {
            3
        } else {
            2
        }
    }

    /// Whether the rollback flag of the config of this generation is raised (a flag raised
    /// under an older generation routes nothing: every install renders the truth anew).
    pub fn flipped(&self) -> bool {
        self.flipped_at == Some(self.generation)
    }

    /// The record as written on the host, with the schema it needs.
    pub fn to_record(&self) -> serde_json::Result<String> {
        let mut state = self.clone();
        if !state.flipped() {
            state.flipped_at = None;
        }
        state.schema = self.schema_needed();
        serde_json::to_string(&state)
    }
}

fn legacy_schema() -> u32 {
    1
}

/// What the record on the host says, as far as this bgd can tell.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Record {
    /// No record: nothing was ever deployed with this nginx, or bgd was told to forget it
    #[default]
    Absent,
    Read(Box<AppState>),
    /// It does not parse (truncated, or garbage): why
    Unreadable(String),
    /// Written by a newer bgd (its schema)
    TooNew(u32),
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
    /// The run that wrote it (a switch and its switch back are one run, one entry)
    #[serde(default)]
    pub run: String,
    /// What the live listener saw during the switch (deploys, switches, rollbacks)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switch_window: Option<crate::probe::window::WindowReport>,
    /// What the live listener saw during the switch back after a failed verification
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switch_back_window: Option<crate::probe::window::WindowReport>,
    /// How the migration's rehearsal went (`passed ...`, `failed: ...`, `skipped: ...`)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rehearsal: Option<String>,
    /// The candidate's traffic as judged: the mirror's window, each canary step's
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub analysis: Vec<crate::analysis::Judged>,
}

impl HistoryEntry {
    /// The entry of a run of `command` starting now, by whoever runs bgd here: "ok" until
    /// the run says otherwise.
    pub fn starting(command: &str) -> HistoryEntry {
        HistoryEntry {
            at: now(),
            command: command.to_string(),
            who: who(),
            image: None,
            release: None,
            from: None,
            to: None,
            outcome: "ok".into(),
            exit_code: 0,
            duration_ms: 0,
            message: String::new(),
            run: new_run_id(),
            switch_window: None,
            switch_back_window: None,
            rehearsal: None,
            analysis: Vec::new(),
        }
    }
}

/// Reads the record: never "nothing" for something it cannot read.
pub fn parse_state(bytes: &[u8]) -> Record {
    let value: serde_json::Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => return Record::Unreadable(format!("it does not parse: {e}")),
    };
    let schema = value
        .get("schema")
        .map_or(Some(1), serde_json::Value::as_u64)
        .unwrap_or(0) as u32;
    if schema > SCHEMA {
        return Record::TooNew(schema);
    }
    match serde_json::from_value(value) {
        Ok(state) => Record::Read(Box::new(state)),
        Err(e) => Record::Unreadable(format!("it is not a record bgd knows: {e}")),
    }
}

/// Parses history lines, skipping any that do not parse (a torn write, or a line of another
/// bgd version, must not hide the rest). The file itself keeps them: bgd only appends.
pub fn parse_history(bytes: &[u8]) -> Vec<HistoryEntry> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// A random id for one run (its history entry, its lock token).
pub fn new_run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut x = nanos ^ ((std::process::id() as u128) << 64);
    // a few rounds of xorshift so consecutive runs differ in every digit
    for _ in 0..4 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    format!("{:016x}", x as u64)
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A release id: UTC time of the deploy, sortable.
pub fn new_release_id() -> String {
    release_id_at(chrono::Utc::now())
}

fn release_id_at(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y%m%d-%H%M%S").to_string()
}

/// A release id no release on the host has (`taken`): the replicas' alias
/// `<app>-<release>-<n>` must name one container, so a deploy that starts in the second the
/// previous one did waits for the next second (at most one).
pub async fn unique_release_id(taken: &std::collections::HashSet<String>) -> String {
    loop {
        let now = chrono::Utc::now();
        let id = release_id_at(now);
        if !taken.contains(&id) {
            return id;
        }
        let into_second = u64::from(now.timestamp_subsec_millis());
        tokio::time::sleep(std::time::Duration::from_millis(
            1001 - into_second.min(1000),
        ))
        .await;
    }
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

    /// A release id taken in this second (the previous deploy started in it) gives the next
    /// second's: two releases never share their replicas' alias.
    #[tokio::test]
    async fn a_release_id_is_never_one_the_host_has() {
        let mut taken = std::collections::HashSet::new();
        taken.insert(new_release_id());
        taken.insert(release_id_at(
            chrono::Utc::now() - chrono::Duration::seconds(1),
        ));
        let before = new_release_id();
        let id = unique_release_id(&taken).await;
        assert!(!taken.contains(&id), "{id} {taken:?}");
        assert!(id >= before && id.len() == "20261127-074744".len(), "{id}");
    }

    use super::*;

    #[test]
    fn set_aside_is_written_only_when_there_is_one() {
        let s = AppState::default();
        let text = serde_json::to_string(&s).unwrap();
        assert!(!text.contains("set_aside"), "{text}");
        let with = AppState {
            set_aside: Some(Release {
                color: Color::Blue,
                image: "web:v1".into(),
                release: "r1".into(),
            }),
            ..AppState::default()
        };
        let text = serde_json::to_string(&with).unwrap();
        assert!(text.contains("\"set_aside\""), "{text}");
        match parse_state(text.as_bytes()) {
            Record::Read(back) => assert_eq!(*back, with),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn state_round_trip() {
        let s = AppState {
            schema: 3,
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
            set_aside: None,
            candidate_failed: false,
            nginx: None,
            canary: Some(Canary {
                share: 10,
                since: now(),
            }),
            flipped_at: None,
            updated_at: now(),
        };
        let bytes = serde_json::to_vec(&s).unwrap();
        assert_eq!(parse_state(&bytes), Record::Read(Box::new(s.clone())));
        assert!(matches!(parse_state(b"{broken"), Record::Unreadable(_)));
        assert!(matches!(parse_state(b"[1, 2]"), Record::Unreadable(_)));
        let newer = String::from_utf8(bytes.clone())
            .unwrap()
            .replace("\"schema\":3", "\"schema\":9");
        assert_eq!(parse_state(newer.as_bytes()), Record::TooNew(9));
        let legacy = String::from_utf8(bytes)
            .unwrap()
            .replace("\"schema\":3,", "");
        assert!(matches!(parse_state(legacy.as_bytes()), Record::Read(r) if r.schema == 1));
    }

    #[test]
    fn a_raised_flag_of_this_generation_makes_schema_4_and_an_older_ones_is_dropped() {
        let mut s = AppState {
            generation: 7,
            flipped_at: Some(7),
            ..AppState::default()
        };
        let record: serde_json::Value = serde_json::from_str(&s.to_record().unwrap()).unwrap();
        assert_eq!(
            (record["schema"].as_u64(), record["flipped_at"].as_u64()),
            (Some(4), Some(7))
        );
        // a later install (a new generation) renders the truth: the flag routes nothing
        s.generation = 8;
        let record: serde_json::Value = serde_json::from_str(&s.to_record().unwrap()).unwrap();
        assert_eq!(record["schema"], 2);
        assert!(record.get("flipped_at").is_none());
    }

    #[test]
    fn history_skips_torn_lines() {
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
            run: new_run_id(),
            switch_window: None,
            switch_back_window: None,
            rehearsal: None,
            analysis: Vec::new(),
        };
        let line = serde_json::to_string(&e).unwrap();
        let text = format!("{line}\n{{\"torn\n{line}\n");
        assert_eq!(parse_history(text.as_bytes()).len(), 2);
        assert_ne!(new_run_id(), new_run_id());
    }
}
