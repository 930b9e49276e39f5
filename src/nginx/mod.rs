//! nginx: rendering (pure, `render`) and driving the nginx container through the Docker API:
//! install a config (validate, activate atomically, reload, confirm the handover, drain), read
//! back what is active, and keep bgd's state files beside it.

pub mod diff;
pub mod render;

use crate::docker::Docker;
use crate::error;
use anyhow::Result;
use std::time::{Duration, Instant};

const CONF_DIR: &str = "/etc/nginx/conf.d";
/// bgd's own directory in the nginx container; nginx includes nothing from it.
const BGD_DIR: &str = "/etc/nginx/bgd";
const NGINX_DIR: &str = "/etc/nginx";
const INSTALL_SCRIPT: &str = include_str!("install.sh");
/// Longest wait for nginx's master to start the new workers after a reload.
const HANDOVER_LIMIT: Duration = Duration::from_secs(5);

pub struct Nginx<'a> {
    docker: &'a Docker,
    pub container: String,
    app: String,
}

#[derive(Debug)]
pub struct Installed {
    pub took: Duration,
    /// Old workers still running when the drain bound ran out, and so stopped
    pub old_workers_killed: u32,
}

/// Why an install did not happen; in every case the previous config is active again.
#[derive(Debug)]
pub enum InstallError {
    /// `nginx -t` rejected the config: its output
    Invalid(String),
    /// nginx did not take the config (reload refused or not applied)
    NotApplied(String),
    /// The deploy lock is held by another run (its holder, if readable); nothing changed
    Locked(Option<crate::lock::Holder>),
}

/// How an install relates to the deploy lock.
#[derive(Debug, Clone)]
pub enum LockUse {
    /// No check (bgd's own undo paths while it holds the lock use `Held` too)
    None,
    /// The caller holds the lock with this token; refuse if it is gone
    Held(String),
    /// Take the lock for this install alone, as this holder
    Once(crate::lock::Holder),
}

/// The holder JSON a lock script printed, if any.
fn parse_holder(text: &str) -> Option<crate::lock::Holder> {
    text.lines()
        .find_map(|l| serde_json::from_str(l.trim()).ok())
}

const LOCK_ACQUIRE: &str = r#"mkdir -p "$1" || exit 21
if mkdir "$1/lock" 2>/dev/null; then printf '%s' "$2" > "$1/lock/holder.json"; exit 0; fi
cat "$1/lock/holder.json" 2>/dev/null; echo; exit 30"#;
/// $1 dir, $2 the stale holder's token, $3 the new holder, $4 the new token
const LOCK_TAKEOVER: &str = r#"grep -qF "$2" "$1/lock/holder.json" 2>/dev/null || { cat "$1/lock/holder.json" 2>/dev/null; echo; exit 30; }
mv "$1/lock" "$1/lock.stale.$4" 2>/dev/null || exit 30
rm -rf "$1/lock.stale.$4"
if mkdir "$1/lock" 2>/dev/null; then printf '%s' "$3" > "$1/lock/holder.json"; exit 0; fi
cat "$1/lock/holder.json" 2>/dev/null; echo; exit 30"#;
/// $1 dir, $2 token ("" with --force)
const LOCK_RELEASE: &str = r#"[ -d "$1/lock" ] || exit 0
if [ -z "$2" ] || grep -qF "$2" "$1/lock/holder.json" 2>/dev/null; then rm -rf "$1/lock"; exit 0; fi
cat "$1/lock/holder.json" 2>/dev/null; echo; exit 30"#;

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
    pub async fn version(&self) -> Result<Option<(u32, u32, u32)>> {
        let out = self
            .docker
            .exec(&self.container, &["nginx", "-v"], Duration::from_secs(10))
            .await?;
        Ok(render::parse_version(&format!(
            "{}{}",
            out.stdout, out.stderr
        )))
    }

    async fn lock_script(
        &self,
        script: &str,
        args: &[&str],
    ) -> Result<(i64, Option<crate::lock::Holder>)> {
        let dir = self.state_dir();
        let mut cmd = vec!["sh", "-c", script, "bgd-lock", dir.as_str()];
        cmd.extend_from_slice(args);
        let out = self
            .docker
            .exec(&self.container, &cmd, Duration::from_secs(10))
            .await?;
        match out.exit_code {
            0 | 30 => Ok((out.exit_code, parse_holder(&out.stdout))),
            code => Err(crate::error::environment(format!(
                "the deploy lock in {} could not be handled (exit {code}): {}{}",
                self.container, out.stdout, out.stderr
            ))),
        }
    }

    /// Takes the lock as `holder`. `Err(holder)`: another run holds it.
    pub async fn lock(
        &self,
        holder: &crate::lock::Holder,
    ) -> Result<std::result::Result<(), Option<crate::lock::Holder>>> {
        let json = serde_json::to_string(holder)?;
        let (code, other) = self.lock_script(LOCK_ACQUIRE, &[&json]).await?;
        Ok(if code == 0 { Ok(()) } else { Err(other) })
    }

    /// Replaces a stale lock (its holder's token) by one held by `holder`.
    pub async fn take_over(
        &self,
        stale: &str,
        holder: &crate::lock::Holder,
    ) -> Result<std::result::Result<(), Option<crate::lock::Holder>>> {
        let json = serde_json::to_string(holder)?;
        let (code, other) = self
            .lock_script(LOCK_TAKEOVER, &[stale, &json, &holder.token])
            .await?;
        Ok(if code == 0 { Ok(()) } else { Err(other) })
    }

    /// Releases the lock if `token` holds it (any holder when `token` is None).
    pub async fn unlock(
        &self,
        token: Option<&str>,
    ) -> Result<std::result::Result<(), Option<crate::lock::Holder>>> {
        let (code, other) = self
            .lock_script(LOCK_RELEASE, &[token.unwrap_or("")])
            .await?;
        Ok(if code == 0 { Ok(()) } else { Err(other) })
    }

    /// bgd's files for this app by file name, in one read: `active.conf` (the config nginx
    /// has), `state.json`, `history.jsonl`.
    pub async fn read_files(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let files = self
            .docker
            .download(&self.container, &self.state_dir())
            .await?
            .unwrap_or_default();
        Ok(files
            .into_iter()
            .map(|(name, data)| {
                let base = name.rsplit('/').next().unwrap_or(&name).to_string();
                (base, data)
            })
            .collect())
    }

    /// Writes files into bgd's directory for this app.
    pub async fn write_files(&self, files: &[(&str, &[u8])]) -> Result<()> {
        let owned: Vec<(String, &[u8])> = files
            .iter()
            .map(|(name, data)| (format!("bgd/{}/{name}", self.app), *data))
            .collect();
        let refs: Vec<(&str, &[u8])> = owned.iter().map(|(n, d)| (n.as_str(), *d)).collect();
        // Upload into /etc/nginx so the archive creates bgd/<app>/ when it is missing.
        self.docker.upload(&self.container, NGINX_DIR, &refs).await
    }

    /// Installs `config`: writes it as the active config, validates it with `nginx -t`,
    /// reloads, waits until no old worker accepts connections, then up to `drain` for them to
    /// finish. `record` (state JSON, history line) is written once the new config is in effect,
    /// in the same exec. On any failure the previous config is active again.
    pub async fn install(
        &self,
        config: &str,
        drain: Duration,
        record: Option<(String, String)>,
        lock: &LockUse,
    ) -> Result<std::result::Result<Installed, InstallError>> {
        let started = Instant::now();
        let switch_ms = HANDOVER_LIMIT.as_millis().to_string();
        let drain_ms = drain.as_millis().to_string();
        let dir = self.state_dir();
        let (state, entry) = record.unwrap_or_default();
        let keep = crate::state::HISTORY_LIMIT.to_string();
        let (token, once) = match lock {
            LockUse::None => (String::new(), String::new()),
            LockUse::Held(token) => (token.clone(), String::new()),
            LockUse::Once(holder) => (String::new(), serde_json::to_string(holder)?),
        };
        let out = self
            .docker
            .exec(
                &self.container,
                &[
                    "sh",
                    "-c",
                    INSTALL_SCRIPT,
                    "bgd-install",
                    &self.app,
                    CONF_DIR,
                    &dir,
                    &switch_ms,
                    &drain_ms,
                    config,
                    &state,
                    &entry,
                    &keep,
                    &token,
                    &once,
                ],
                HANDOVER_LIMIT * 2 + drain + Duration::from_secs(10),
            )
            .await?;
        let text = format!("{}{}", out.stdout, out.stderr);
        let detail = text.trim().to_string();
        match out.exit_code {
            0 => {
                let left = text
                    .lines()
                    .rev()
                    .find_map(|l| l.strip_prefix("BGD_OK old_workers_killed="))
                    .and_then(|n| n.trim().parse().ok())
                    .unwrap_or(0);
                Ok(Ok(Installed {
                    took: started.elapsed(),
                    old_workers_killed: left,
                }))
            }
            10 => Ok(Err(InstallError::Invalid(detail))),
            30 => Ok(Err(InstallError::Locked(parse_holder(&text)))),
            31 => Err(crate::error::Failure::Locked(format!(
                "the deploy lock of {} was released or taken over while this run held it; nothing was changed by this step. Check `bgd lock status` and `bgd status`",
                self.app
            ))
            .into()),
            11 | 12 => Ok(Err(InstallError::NotApplied(detail))),
            20 => Err(error::environment(format!(
                "nginx in container {} is not running ({detail}); check `docker logs {}`",
                self.container, self.container
            ))),
            127 => Err(error::environment(format!(
                "container {} has no shell (sh): bgd needs sh and nginx in the nginx image ({detail})",
                self.container
            ))),
            code => Err(error::environment(format!(
                "installing the nginx config in {} failed (exit {code}): {detail}",
                self.container
            ))),
        }
    }
}
