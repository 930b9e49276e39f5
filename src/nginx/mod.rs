//! nginx: rendering (pure, `render`, `diff`) and driving the nginx container through the
//! Docker API (`Nginx`): install a config (validate, activate atomically, reload, confirm the
//! handover, drain), the deploy lock, and bgd's files beside the config.
//!
//! The work inside the container is done by two POSIX sh scripts with named inputs and named
//! outcomes (`install.sh`, `lock.sh`); `script.rs` runs them and parses what they print, in
//! one place. Every function here returns `Result<_, NginxError>`: the engine decides what an
//! outcome means for the command (an invalid custom template is a config error, say).

pub mod diff;
pub mod render;
mod script;
pub mod servers;
pub mod traffic;

use crate::docker::Docker;
use crate::lock::Holder;
use script::Script;
use std::time::{Duration, Instant};

pub const CONF_DIR: &str = "/etc/nginx/conf.d";
/// bgd's own directory in the nginx container; nginx includes nothing from it.
pub const BGD_DIR: &str = "/etc/nginx/bgd";
const NGINX_DIR: &str = "/etc/nginx";
/// Longest wait for nginx's master to start the new workers after a reload.
const HANDOVER_LIMIT: Duration = Duration::from_secs(5);

pub struct Nginx<'a> {
    docker: &'a Docker,
    pub container: String,
    app: String,
}

/// A config nginx now serves.
#[derive(Debug)]
pub struct Installed {
    /// From the start of the exec to the drained handover
    pub took: Duration,
    /// Old workers still busy when the drain bound ran out, and so stopped
    pub old_workers_stopped: u32,
    /// Why the record asked for could not be written (the exec's own words); `None` when it
    /// was, or when none was asked for
    pub unrecorded: Option<String>,
    /// nginx reloaded; false when a rollback flag moved live traffic instead
    pub reloaded: bool,
    /// A flip its caller could not confirm, put back in the same exec (`Flipped::undone`)
    pub undone: bool,
}

/// What to record on the host: the state, and one history line of a run (an earlier line
/// of the same run is replaced).
#[derive(Debug, Clone)]
pub struct RecordWrite {
    /// None: the history line alone (the state is left as it is)
    pub state: Option<String>,
    /// Replace a record this bgd cannot read (only `bgd repair` does)
    pub replace_untrusted: bool,
    pub history: String,
    pub run: String,
}

/// Why nginx did not do what was asked. Except for `Docker`, `Broken`, `Bug` and `Unknown`,
/// the previous config is active again.
#[derive(Debug, thiserror::Error)]
pub enum NginxError {
    /// `nginx -t` rejected the config: its output
    #[error("nginx -t rejected the config:\n{0}")]
    Invalid(String),
    /// nginx did not take the config (reload refused, or the master kept the old one)
    #[error("nginx did not apply the config:\n{0}")]
    NotApplied(String),
    /// Another install in this nginx did not finish in time
    #[error("{0}")]
    Busy(String),
    /// The deploy lock is held by another run (its holder, when readable)
    #[error("the deploy lock is held by another run")]
    Locked(Option<Box<Holder>>),
    /// The caller's deploy lock was released or taken over while it worked
    #[error("the deploy lock was released or taken over while this run held it")]
    LockLost,
    /// nginx is not running, the container has no shell, a file cannot be written
    #[error("{0}")]
    Broken(String),
    /// A script refused bgd's own input, or said something bgd does not know: a bug in bgd
    #[error("{0}")]
    Bug(String),
    /// The record on the host cannot be read by this bgd (torn, or from a newer bgd): it was
    /// not replaced, nothing changed
    #[error("bgd's record on the host cannot be trusted ({0}); nothing was changed")]
    Untrusted(String),
    /// The script stopped without saying how it ended: what it did is not known
    #[error("{0}")]
    Unknown(String),
    /// A flip found the routing other than the caller saw it (another run changed it, or
    /// the config does not route by that flag): nothing changed
    #[error("nginx's routing changed since bgd looked: {0}")]
    Stale(String),
    /// The Docker API call failed
    #[error(transparent)]
    Docker(#[from] anyhow::Error),
}

/// What a flip's caller says once the flag moved: `moved` fires then; `answer` brings the
/// history line to record instead of the one given, or `UNDO`: put the flag back and record
/// `undo` (nothing: the given line stays).
pub struct Amend {
    pub moved: tokio::sync::oneshot::Sender<()>,
    pub answer: tokio::sync::oneshot::Receiver<String>,
    pub undo: RecordWrite,
}

/// What a flip did.
pub struct Flipped {
    /// Why the record was not written (`None`: it was)
    pub unrecorded: Option<String>,
    /// The caller answered `UNDO`: the flag is back as it was, `Amend::undo` recorded
    pub undone: bool,
}

/// A flip's answer that puts the flag back (see `Amend`).
pub const UNDO: &str = "BGD_UNDO";

/// How an install relates to the deploy lock.
#[derive(Debug, Clone, Default)]
pub enum LockUse {
    /// No check
    #[default]
    None,
    /// The caller holds the lock with this token; refuse if it is gone
    Held(String),
    /// Take the lock for this install alone, as this holder
    Once(Holder),
    /// As `Held`, for the run's last write (a record): the lock is released with it
    Last(String),
}

/// What to install.
pub struct Install<'a> {
    pub config: &'a str,
    pub drain: Duration,
    /// What to record once the config serves, in the same exec
    pub record: Option<RecordWrite>,
    pub lock: &'a LockUse,
}

impl NginxError {
    /// Whether bgd cannot tell if the exec changed anything: the Docker call failed or timed
    /// out (the script goes on inside the container), or the script's end was not seen.
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            NginxError::Docker(_) | NginxError::Bug(_) | NginxError::Unknown(_)
        )
    }
}

/// Where a flip moves the rollback flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagTo {
    /// Created, with its marker (the idle release has been live)
    Raised,
    /// Removed; the marker stays
    Lowered,
    /// Removed with its marker: a raise this run could not confirm, put back
    LoweredUnmarked,
}

impl FlagTo {
    pub fn raised(on: bool) -> FlagTo {
        if on {
            FlagTo::Raised
        } else {
            FlagTo::Lowered
        }
    }
}

impl<'a> Nginx<'a> {
    pub fn new(docker: &'a Docker, container: &str, app: &str) -> Self {
        Nginx {
            docker,
            container: container.to_string(),
            app: app.to_string(),
        }
    }

    fn state_dir(&self) -> String {
        format!("{BGD_DIR}/{}", self.app)
    }

    /// `nginx -v` of the container, e.g. (1, 30, 6).
    pub async fn version(&self) -> Result<Option<(u32, u32, u32)>, NginxError> {
        let out = self
            .docker
            .exec(
                &self.container,
                &["sh", "-c", script::RUN_NGINX, "bgd-nginx", "-v"],
                Duration::from_secs(10),
            )
            .await?;
        if out.exit_code == 127 {
            return Err(self.no_nginx(&out));
        }
        Ok(render::parse_version(&format!(
            "{}{}",
            out.stdout, out.stderr
        )))
    }

    /// The apps bgd deploys behind this nginx (each with a record in bgd's directory), this
    /// one included, sorted.
    pub async fn apps(&self) -> Result<Vec<String>, NginxError> {
        let list = format!(
            "for d in {BGD_DIR}/*/; do [ -f \"${{d}}{}\" ] && basename \"$d\"; done; true",
            crate::state::STATE_FILE
        );
        let out = self
            .docker
            .exec(
                &self.container,
                &["sh", "-c", &list],
                Duration::from_secs(10),
            )
            .await?;
        let mut apps: Vec<String> = out
            .stdout
            .lines()
            .map(str::trim)
            .filter(|a| crate::config::valid_app_name(a))
            .map(str::to_string)
            .collect();
        apps.sort();
        Ok(apps)
    }

    /// nginx's whole configuration as it would load it now (`nginx -T`).
    pub async fn dump_config(&self) -> Result<String, NginxError> {
        let out = self
            .docker
            .exec(
                &self.container,
                &["sh", "-c", script::RUN_NGINX, "bgd-nginx", "-T"],
                Duration::from_secs(10),
            )
            .await?;
        if out.exit_code == 127 {
            return Err(self.no_nginx(&out));
        }
        if out.exit_code != 0 {
            return Err(NginxError::Invalid(format!("{}{}", out.stdout, out.stderr)));
        }
        Ok(out.stdout)
    }

    /// Exit 127 of `sh -c RUN_NGINX`: no shell, or no nginx bgd can find.
    fn no_nginx(&self, out: &crate::docker::ExecOutput) -> NginxError {
        NginxError::Broken(format!(
            "container {} has no sh or no nginx bgd can find ({}): bgd needs sh, and looks for nginx on PATH, as the running master's binary and in /usr/sbin, /usr/local/sbin, /usr/local/nginx/sbin, /opt/nginx/sbin",
            self.container,
            format!("{}{}", out.stdout, out.stderr).trim()
        ))
    }

    /// Why nginx could not reach `addr` lately, from the preview listener's error log, e.g.
    /// "111: Connection refused".
    pub async fn unreachable_reason(&self, addr: &str) -> Option<String> {
        let log = format!("{BGD_DIR}/logs/{}-preview.error.log", self.app);
        let out = self
            .docker
            .exec(
                &self.container,
                &[
                    "sh",
                    "-c",
                    "tail -n 500 \"$1\" | grep -F \"$2\" | tail -n 1",
                    "bgd-log",
                    &log,
                    addr,
                ],
                Duration::from_secs(5),
            )
            .await
            .ok()?;
        let line = out.stdout;
        let start = line.find("failed (")? + "failed (".len();
        let end = line[start..].find(')')? + start;
        // "111: Connection refused" -> "connection refused"
        let reason = &line[start..end];
        let reason = reason.split_once(": ").map_or(reason, |(_, r)| r);
        Some(reason.to_ascii_lowercase())
    }

    /// bgd's files for this app in one read, by path within its directory: `active.conf`
    /// (the config nginx has), `state.json`, `history.jsonl`, `lock/holder.json`.
    pub async fn read_files(&self) -> Result<Vec<(String, Vec<u8>)>, NginxError> {
        let files = self
            .docker
            .download(&self.container, &self.state_dir())
            .await?
            .unwrap_or_default();
        // the archive's paths start with the directory's own name
        Ok(files
            .into_iter()
            .map(|(path, data)| {
                let inner = path.split_once('/').map_or(path.as_str(), |(_, p)| p);
                (inner.to_string(), data)
            })
            .collect())
    }

    /// What nginx logged of this app's live traffic under config `generation` (a mirror or a
    /// canary; with `methods`, only live requests of those methods); nothing yet when the
    /// file is not there.
    pub async fn traffic(
        &self,
        generation: u64,
        methods: Option<&[String]>,
    ) -> Result<traffic::Traffic, NginxError> {
        let path = render::traffic_log(&self.app, generation);
        let files = self
            .docker
            .download(&self.container, &path)
            .await?
            .unwrap_or_default();
        let text: String = files
            .iter()
            .map(|(_, data)| String::from_utf8_lossy(data))
            .collect();
        Ok(traffic::parse(&text, &self.app, methods))
    }

    /// Writes files into bgd's directory for this app.
    pub async fn write_files(&self, files: &[(&str, &[u8])]) -> Result<(), NginxError> {
        let owned: Vec<(String, &[u8])> = files
            .iter()
            .map(|(name, data)| (format!("bgd/{}/{name}", self.app), *data))
            .collect();
        let refs: Vec<(&str, &[u8])> = owned.iter().map(|(n, d)| (n.as_str(), *d)).collect();
        // Upload into /etc/nginx so the archive creates bgd/<app>/ when it is missing.
        Ok(self
            .docker
            .upload(&self.container, NGINX_DIR, &refs)
            .await?)
    }

    /// Uploads an `lb.tls` certificate chain and key into bgd's directory for this app, as
    /// `tls/STEM.crt` and `tls/STEM.key` (mode 0600, root's). Names that change with the
    /// content: the config nginx serves keeps the files it names until a reload moves on.
    pub async fn upload_tls(
        &self,
        stem: &str,
        chain: &str,
        key: &crate::config::Secret,
    ) -> Result<(), NginxError> {
        let (crt, k) = (
            format!("bgd/{}/tls/{stem}.crt", self.app),
            format!("bgd/{}/tls/{stem}.key", self.app),
        );
        Ok(self
            .docker
            .upload_modes(
                &self.container,
                NGINX_DIR,
                &[
                    (crt.as_str(), chain.as_bytes(), 0o644),
                    (k.as_str(), key.expose().as_bytes(), 0o600),
                ],
            )
            .await?)
    }

    /// Reads one file of the nginx container as nginx would (a symlink, e.g. certbot's
    /// `live/` files, is followed), for `lb.tls.certificate_path`/`key_path`: its contents
    /// come back on the exec's output, never in an argument. None when it cannot be read.
    pub async fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, NginxError> {
        let out = self
            .docker
            .exec(
                &self.container,
                &[
                    "sh",
                    "-c",
                    "[ -f \"$1\" ] && exec cat -- \"$1\"",
                    "bgd-read",
                    path,
                ],
                Duration::from_secs(10),
            )
            .await?;
        Ok((out.exit_code == 0).then(|| out.stdout.into_bytes()))
    }

    /// Takes the deploy lock as `holder`; `Locked(other)` when another run holds it.
    pub async fn lock(&self, holder: &Holder) -> Result<(), NginxError> {
        let json = serde_json::to_string(holder).map_err(anyhow::Error::from)?;
        self.lock_op(&[("--op", "acquire"), ("--holder", &json)])
            .await
    }

    /// Replaces a stale lock (its holder's token) by one held by `holder`.
    pub async fn take_over(&self, stale_token: &str, holder: &Holder) -> Result<(), NginxError> {
        let json = serde_json::to_string(holder).map_err(anyhow::Error::from)?;
        self.lock_op(&[
            ("--op", "take-over"),
            ("--holder", &json),
            ("--token", stale_token),
        ])
        .await
    }

    /// Releases the lock if `token` holds it (whoever holds it when `token` is None).
    pub async fn unlock(&self, token: Option<&str>) -> Result<(), NginxError> {
        self.lock_op(&[("--op", "release"), ("--token", token.unwrap_or(""))])
            .await
    }

    async fn lock_op(&self, args: &[(&str, &str)]) -> Result<(), NginxError> {
        let dir = self.state_dir();
        let mut all = vec![("--dir", dir.as_str())];
        all.extend_from_slice(args);
        let report = Script::Lock
            .run(self.docker, &self.container, &all, Duration::from_secs(10))
            .await?;
        match report.outcome.as_str() {
            "taken" | "released" => Ok(()),
            "held" => Err(NginxError::Locked(report.holder())),
            _ => Err(report.unexpected(&self.container)),
        }
    }

    /// Writes bgd's record (the state and a history line), atomically, under the deploy lock
    /// as `lock` says; changes no routing. Returns whether the lock was released with it
    /// (`LockUse::Last`).
    pub async fn record(&self, record: &RecordWrite, lock: &LockUse) -> Result<bool, NginxError> {
        let keep = crate::state::HISTORY_LIMIT.to_string();
        let mut args = vec![
            ("--app", self.app.as_str()),
            ("--conf-dir", CONF_DIR),
            ("--root", BGD_DIR),
            ("--history-keep", &keep),
        ];
        push_record(&mut args, Some(record));
        let once = lock_args(lock)?;
        args.extend(once.iter().map(|(k, v)| (*k, v.as_str())));
        let report = Script::Install
            .run(self.docker, &self.container, &args, Duration::from_secs(20))
            .await?;
        match report.outcome.as_str() {
            "recorded" => Ok(report.field::<u8>("unlocked") == Some(1)),
            "record-untrusted" => Err(NginxError::Untrusted(report.detail)),
            "record-failed" => Err(NginxError::Broken(format!(
                "bgd's record in {} could not be written: {}",
                self.container, report.detail
            ))),
            "locked" => Err(NginxError::Locked(report.holder())),
            "lock-lost" => Err(NginxError::LockLost),
            _ => Err(report.unexpected(&self.container)),
        }
    }

    /// Raises or lowers (`to`) the active config's rollback flag `flag` under the deploy lock
    /// as `lock` says, and writes `record` in the same exec: live traffic follows the flag at
    /// the next request, with no reload. With `amend`, the exec waits once the flag moved for
    /// the caller's word (see `Amend`), still holding the lock. `Stale` when the active config
    /// does not route by `flag` or the flag already is so.
    pub async fn flip(
        &self,
        flag: &str,
        to: FlagTo,
        record: &RecordWrite,
        lock: &LockUse,
        amend: Option<Amend>,
    ) -> Result<Flipped, NginxError> {
        let keep = crate::state::HISTORY_LIMIT.to_string();
        let mut args = vec![
            ("--app", self.app.as_str()),
            ("--conf-dir", CONF_DIR),
            ("--root", BGD_DIR),
            ("--history-keep", &keep),
            ("--flip", flag),
            ("--flip-to", if to == FlagTo::Raised { "on" } else { "off" }),
        ];
        if to == FlagTo::LoweredUnmarked {
            args.push(("--unmark", "1"));
        }
        push_record(&mut args, Some(record));
        let once = lock_args(lock)?;
        args.extend(once.iter().map(|(k, v)| (*k, v.as_str())));
        let (reply, undo) = match amend {
            Some(a) => (
                Some(crate::docker::Reply {
                    prompt: "BGD_AWAIT",
                    prompted: a.moved,
                    answer: a.answer,
                }),
                Some(a.undo),
            ),
            None => (None, None),
        };
        if let Some(undo) = &undo {
            args.push(("--await-history", "1"));
            if let Some(state) = &undo.state {
                args.push(("--undo-state", state));
            }
            args.push(("--undo-history", &undo.history));
        }
        let report = Script::Install
            .run_answering(
                self.docker,
                &self.container,
                &args,
                Duration::from_secs(20),
                reply,
            )
            .await?;
        match report.outcome.as_str() {
            "flipped" => Ok(Flipped {
                unrecorded: report.unrecorded(),
                undone: false,
            }),
            "flipped-back" => Ok(Flipped {
                unrecorded: report.unrecorded(),
                undone: true,
            }),
            "flip-stale" => Err(NginxError::Stale(report.detail)),
            "record-untrusted" => Err(NginxError::Untrusted(report.detail)),
            "locked" => Err(NginxError::Locked(report.holder())),
            "lock-lost" => Err(NginxError::LockLost),
            _ => Err(report.unexpected(&self.container)),
        }
    }

    /// Installs a config: writes it as the active config, validates it with `nginx -t`,
    /// reloads, waits until no old worker accepts connections, then up to `drain` for them to
    /// finish. `record` is written once the new config serves, in the same exec. On any
    /// failure the previous config is active again.
    pub async fn install(&self, what: Install<'_>) -> Result<Installed, NginxError> {
        let started = Instant::now();
        let ms = |d: Duration| d.as_millis().to_string();
        let (handover, drain) = (ms(HANDOVER_LIMIT), ms(what.drain));
        // another install (any app's) may be draining: wait as long as one can take
        let guard_wait = HANDOVER_LIMIT * 2 + what.drain + Duration::from_secs(5);
        let guard = ms(guard_wait);
        let keep = crate::state::HISTORY_LIMIT.to_string();
        let mut args = vec![
            ("--app", self.app.as_str()),
            ("--conf-dir", CONF_DIR),
            ("--root", BGD_DIR),
            ("--config", what.config),
            ("--handover-ms", &handover),
            ("--drain-ms", &drain),
            ("--guard-ms", &guard),
            ("--history-keep", &keep),
        ];
        push_record(&mut args, what.record.as_ref());
        let once = lock_args(what.lock)?;
        args.extend(once.iter().map(|(k, v)| (*k, v.as_str())));
        let limit = guard_wait + HANDOVER_LIMIT * 2 + what.drain + Duration::from_secs(10);
        let report = Script::Install
            .run(self.docker, &self.container, &args, limit)
            .await?;
        let detail = report.detail.clone();
        match report.outcome.as_str() {
            "applied" => Ok(Installed {
                took: started.elapsed(),
                old_workers_stopped: report.field("stopped").unwrap_or(0),
                unrecorded: report.unrecorded(),
                reloaded: true,
                undone: false,
            }),
            "invalid" => Err(NginxError::Invalid(detail)),
            "record-untrusted" => Err(NginxError::Untrusted(detail)),
            "reload-refused" | "not-applied" => Err(NginxError::NotApplied(detail)),
            "busy" => Err(NginxError::Busy(format!(
                "another config install in {} did not finish: {detail}",
                self.container
            ))),
            "locked" => Err(NginxError::Locked(report.holder())),
            "lock-lost" => Err(NginxError::LockLost),
            "no-nginx" => Err(NginxError::Broken(format!(
                "container {} has no nginx bgd can find ({detail}); bgd looks on PATH, at PID 1's program and in /usr/sbin, /usr/local/sbin, /usr/local/nginx/sbin, /opt/nginx/sbin",
                self.container
            ))),
            "not-running" => Err(NginxError::Broken(format!(
                "nginx in container {} is not running ({detail}); check `docker logs {}`",
                self.container, self.container
            ))),
            _ => Err(report.unexpected(&self.container)),
        }
    }
}

/// `state::SCHEMA` as the script takes it.
const SCHEMA_ARG: &str = "4";

fn push_record<'a>(args: &mut Vec<(&'a str, &'a str)>, record: Option<&'a RecordWrite>) {
    if let Some(r) = record {
        if let Some(state) = &r.state {
            args.push(("--state", state));
            if !r.replace_untrusted {
                args.push(("--record-schema", SCHEMA_ARG));
            }
        }
        args.push(("--history", &r.history));
        args.push(("--history-run", &r.run));
    }
}

/// The script's arguments for how an exec relates to the deploy lock.
fn lock_args(lock: &LockUse) -> Result<Vec<(&'static str, String)>, NginxError> {
    Ok(match lock {
        LockUse::None => Vec::new(),
        LockUse::Held(token) => vec![("--lock-token", token.clone())],
        LockUse::Last(token) => vec![
            ("--lock-token", token.clone()),
            ("--release-lock", "1".to_string()),
        ],
        LockUse::Once(holder) => vec![(
            "--lock-once",
            serde_json::to_string(holder).map_err(anyhow::Error::from)?,
        )],
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_script_is_told_the_schema_bgd_writes() {
        assert_eq!(super::SCHEMA_ARG, crate::state::SCHEMA.to_string());
    }
}
