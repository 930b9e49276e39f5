//! The engine: runs the steps of a deploy or a rollback against the real adapters, in an
//! order where every failure before the switch can be undone (start the candidate, gate it,
//! switch, verify, then park the old color), and records the outcome on the host.

mod deploy;
mod gates;
mod prepare;
mod rollback;

use super::drift;
use super::observe::{observe, Observed};
use super::plan::{self, LABEL_RELEASE};
use crate::config::{Config, ParkMode};
use crate::docker::{ContainerInfo, Docker};
use crate::error::{self, Failure};
use crate::lock::{self, Holder};
use crate::model::{Color, Pool, Server};
use crate::nginx::{render, InstallError, Installed, LockUse, Nginx};
use crate::output::{fmt_duration, Output};
use crate::probe::{judge, Prober, PROBE_REPLICA_HEADER};
use crate::state::{self, AppState, HistoryEntry, Idle, NginxInfo, Release, Role};
use anyhow::{Context, Result};
use std::time::{Duration, Instant};

/// Longest a pull may take.
const PULL_LIMIT: Duration = Duration::from_secs(600);
/// How long nginx has to show the new generation through `lb.url` after the handover.
const CONFIRM_LIMIT: Duration = Duration::from_secs(3);
/// Per-request limit for smoke probes.
const SMOKE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Engine<'a> {
    pub config: &'a Config,
    pub docker: &'a Docker,
    pub out: &'a Output,
    prober: Prober,
    template: &'a str,
    /// How installs relate to the deploy lock while this engine runs a command
    lock_use: std::sync::Mutex<LockUse>,
    /// `--lock-wait`: how long to wait for a busy lock
    lock_wait: Duration,
}

/// What a finished deploy or rollback reports.
#[derive(Debug, Clone)]
pub struct SwitchReport {
    pub live: Release,
    pub parked: Option<Release>,
    pub generation: u64,
    /// From the start of the reload to the drained handover
    pub switch_took: Duration,
}

/// The history entry of the running command, and whether the switch already recorded it (with
/// the new state) on the host.
struct Journal {
    entry: HistoryEntry,
    started: Instant,
    recorded: bool,
}

/// What `fast_view` learned for a rollback.
struct FastView {
    state: AppState,
    parked_pool: Pool,
    live_pool: Pool,
    keepalive_min_timeout: bool,
}

/// `deploy --plan`'s answer.
#[derive(Debug, Clone)]
pub struct PlanReport {
    pub plan: plan::DeployPlan,
    /// The config nginx has now, if bgd wrote one
    pub active: Option<String>,
    /// The config the deploy would leave active
    pub after: String,
}

/// What `deploy` ended with.
#[derive(Debug, Clone)]
pub enum Deployed {
    /// The candidate passed the gates and went live.
    Switched(SwitchReport),
    /// `--no-switch`: the candidate passed the gates and waits on the preview listener.
    Candidate {
        candidate: Release,
        live: Option<Release>,
        generation: u64,
    },
}

/// A step outcome that needs the undo path: what was done so far.
#[derive(Default)]
struct Undo {
    candidates: Vec<String>,
    /// nginx routes the preview listener to the candidate
    preview_installed: bool,
    /// The parked release, renamed while the candidate holds its color's names
    set_aside: Option<SetAside>,
}

/// A parked release set aside during a deploy: its release and its containers as
/// (name now, name to give back).
struct SetAside {
    release: Release,
    containers: Vec<(String, String)>,
}

impl<'a> Engine<'a> {
    pub fn new(
        config: &'a Config,
        docker: &'a Docker,
        out: &'a Output,
        lock_wait: Duration,
    ) -> Result<Engine<'a>> {
        let (template, _) = render::template_for(config.lb.template.as_ref());
        Ok(Engine {
            config,
            docker,
            out,
            prober: Prober::new()?,
            template,
            lock_use: std::sync::Mutex::new(LockUse::None),
            lock_wait,
        })
    }

    fn nginx(&self) -> Nginx<'_> {
        Nginx::new(self.docker, &self.config.lb.container, &self.config.app)
    }

    async fn inspect_required(&self, name: &str) -> Result<ContainerInfo> {
        self.docker.inspect(name).await?.ok_or_else(|| {
            error::environment(format!("container {name} disappeared while bgd worked"))
        })
    }

    /// Whether this nginx has `keepalive_min_timeout`, read once per nginx container.
    async fn keepalive_min_timeout(&self, obs: &mut Observed, lb: &ContainerInfo) -> Result<bool> {
        let known = obs
            .state
            .nginx
            .as_ref()
            .filter(|n| n.container_id == lb.id)
            .and_then(|n| render::parse_version(&format!("nginx/{}", n.version)));
        let version = match known {
            Some(v) => v,
            None => {
                let v = self.nginx().version().await?.ok_or_else(|| {
                    error::environment(format!(
                        "cannot read the nginx version in {} (`nginx -v` printed nothing useful)",
                        lb.name
                    ))
                })?;
                obs.state.nginx = Some(NginxInfo {
                    container_id: lb.id.clone(),
                    version: format!("{}.{}.{}", v.0, v.1, v.2),
                });
                v
            }
        };
        let ok = render::supports_keepalive_min_timeout(version);
        if !ok {
            self.warn_old_nginx(&obs.state);
        }
        Ok(ok)
    }

    fn warn_old_nginx(&self, state: &AppState) {
        let version = state.nginx.as_ref().map_or("?", |n| n.version.as_str());
        self.out.warn(&format!(
            "nginx {version} in {} lacks keepalive_min_timeout (needs >= 1.27.4): a switch can reset a few keep-alive requests; upgrade nginx for lossless switches",
            self.config.lb.container
        ));
    }

    fn render(
        &self,
        generation: u64,
        live: Option<&Pool>,
        preview: Option<(&Pool, Role)>,
        kmt: bool,
    ) -> Result<String> {
        self.render_input(&plan::render_input(
            self.config,
            generation,
            live,
            preview,
            kmt,
        ))
    }

    fn render_input(&self, input: &render::RenderInput) -> Result<String> {
        render::render(self.template, input).map_err(|e| {
            let (_, which) = render::template_for(self.config.lb.template.as_ref());
            error::config(format!("cannot render {which}: {e:#}"))
        })
    }

    /// Installs a config; a rejected or unapplied one is an error (the old one stays active).
    async fn install(&self, text: &str, what: &str) -> Result<Installed> {
        self.install_recording(text, what, None).await
    }

    /// Installs a config and, once it is in effect, records `record` (state JSON, history
    /// line) in the same exec.
    async fn install_recording(
        &self,
        text: &str,
        what: &str,
        record: Option<(String, String)>,
    ) -> Result<Installed> {
        self.out
            .detail(&format!("nginx config for {what}:\n{text}"));
        let lock = self
            .lock_use
            .lock()
            .map(|l| l.clone())
            .unwrap_or(LockUse::None);
        match self
            .nginx()
            .install(text, self.config.switch.drain, record, &lock)
            .await?
        {
            Ok(done) => {
                if done.old_workers_killed > 0 {
                    self.out.warn(&format!(
                        "{} old nginx worker(s) were still serving requests after switch.drain ({}) and were stopped",
                        done.old_workers_killed,
                        fmt_duration(self.config.switch.drain)
                    ));
                }
                Ok(done)
            }
            Err(InstallError::Invalid(detail)) => {
                let msg = format!(
                    "nginx rejected the config for {what}; the previous config is still active.\n{detail}"
                );
                Err(match &self.config.lb.template {
                    Some((path, _)) => error::config(format!(
                        "{msg}\nFix the template {} (bgd render shows what it produces)",
                        path.display()
                    )),
                    None => error::environment(msg),
                })
            }
            Err(InstallError::Locked(holder)) => Err(Failure::Locked(lock::held_by(
                &self.config.app,
                holder.as_ref(),
            ))
            .into()),
            Err(InstallError::NotApplied(detail)) => Err(error::environment(format!(
                "nginx did not apply the config for {what}; the previous config is active again.\n{detail}"
            ))),
        }
    }

    /// Confirms through `lb.url` that nginx serves `generation` with `color` live.
    async fn confirm_live(&self, color: Option<Color>, generation: u64) -> Result<()> {
        let url = format!("{}{}", self.config.lb.url, self.config.readiness.path);
        let want_color = color.map_or("none", Color::as_str);
        let deadline = Instant::now() + CONFIRM_LIMIT;
        let mut last;
        loop {
            match self
                .prober
                .request("GET", &url, &[], "", Duration::from_secs(2))
                .await
            {
                Ok(r)
                    if r.bgd_generation() == Some(generation)
                        && r.bgd_color() == Some(want_color) =>
                {
                    return Ok(())
                }
                Ok(r) => {
                    last = format!(
                        "got X-Bgd-Color {:?}, X-Bgd-Generation {:?} (status {})",
                        r.bgd_color().unwrap_or("absent"),
                        r.header("x-bgd-generation").unwrap_or("absent"),
                        r.status
                    )
                }
                Err(e) => last = e,
            }
            if Instant::now() > deadline {
                return Err(error::environment(format!(
                    "cannot confirm the switch through lb.url ({}): expected color {want_color} generation {generation}, {last}. Is lb.url this nginx's live listener?",
                    self.config.lb.url
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The switch itself: installs a config with `live` on the live listener and `preview` on
    /// the preview one, and confirms through `lb.url` that the new color and generation serve.
    /// If nginx took the config but `lb.url` does not show it, the routing `before` (live,
    /// preview) is installed again: exit 6, or 7 when that fails as well.
    #[allow(clippy::too_many_arguments)]
    async fn switch_live(
        &self,
        state: &mut AppState,
        live: &Pool,
        preview: Option<(&Pool, Role)>,
        before: (Option<&Pool>, Option<(&Pool, Role)>),
        kmt: bool,
        what: &str,
        journal: Option<&mut Journal>,
    ) -> Result<Installed> {
        state.generation += 1;
        let text = self.render(state.generation, Some(live), preview, kmt)?;
        // The state after the switch: the idle release of `live`'s color goes live, the live
        // one is parked. The same exec that makes the switch records it.
        let mut after = state.clone();
        if let Some(idle) = state
            .idle
            .as_ref()
            .filter(|i| i.release.color == live.color)
        {
            after.live = Some(idle.release.clone());
            after.idle = state.live.clone().map(|release| Idle {
                release,
                role: preview.map_or(Role::Parked, |(_, role)| role),
            });
        }
        after.updated_at = state::now();
        let record = match &journal {
            Some(j) => {
                let mut entry = j.entry.clone();
                entry.duration_ms = j.started.elapsed().as_millis() as u64;
                Some((
                    serde_json::to_string(&after)?,
                    serde_json::to_string(&entry)?,
                ))
            }
            None => None,
        };
        let installed = self.install_recording(&text, what, record).await?;
        if let Some(j) = journal {
            j.recorded = true;
        }
        let Err(unconfirmed) = self.confirm_live(Some(live.color), state.generation).await else {
            *state = after;
            return Ok(installed);
        };
        state.generation += 1;
        let restored = async {
            let back = self.render(state.generation, before.0, before.1, kmt)?;
            self.install(&back, "restoring the routing before the switch")
                .await?;
            self.confirm_live(before.0.map(|p| p.color), state.generation)
                .await
        }
        .await;
        match restored {
            Ok(()) => Err(unconfirmed.context(format!(
                "{what} was undone: the previous routing is active again"
            ))),
            Err(e) => Err(error::unsafe_state(format!(
                "{unconfirmed:#}\nrestoring the previous routing also failed: {e:#}\nCheck `bgd status` and `docker logs {}` now",
                self.config.lb.container
            ))),
        }
    }

    async fn remove_all(&self, names: &[String]) {
        let removals = names.iter().map(|n| self.docker.remove(n));
        for (name, r) in names
            .iter()
            .zip(futures_util::future::join_all(removals).await)
        {
            if let Err(e) = r {
                self.out.warn(&format!("could not remove {name}: {e:#}"));
            }
        }
    }

    /// Writes the state record and history beside nginx's config.
    async fn save(&self, state: &AppState, history: &[HistoryEntry]) -> Result<()> {
        let mut state = state.clone();
        state.updated_at = state::now();
        let state_json = serde_json::to_vec_pretty(&state)?;
        let history = state::history_text(history);
        self.nginx()
            .write_files(&[
                (state::STATE_FILE, state_json.as_slice()),
                (state::HISTORY_FILE, history.as_bytes()),
            ])
            .await
            .context("recording the state on the Docker host")
    }

    /// The history entry of a command that started at `started`, not yet recorded.
    fn journal(&self, command: &str, started: Instant) -> Journal {
        Journal {
            entry: HistoryEntry {
                at: state::now(),
                command: command.to_string(),
                who: state::who(),
                image: None,
                release: None,
                from: None,
                to: None,
                outcome: "ok".into(),
                exit_code: 0,
                duration_ms: started.elapsed().as_millis() as u64,
                message: String::new(),
            },
            started,
            recorded: false,
        }
    }

    fn set_lock_use(&self, lock: LockUse) {
        if let Ok(mut l) = self.lock_use.lock() {
            *l = lock;
        }
    }

    /// Takes the deploy lock for `command`, waiting up to `--lock-wait` while another run holds
    /// it, and taking over a lock whose holder is provably gone (with a warning).
    pub async fn acquire_lock(&self, command: &str) -> Result<Holder> {
        let me = Holder::me(command);
        let nginx = self.nginx();
        let deadline = Instant::now() + self.lock_wait;
        let mut said_waiting = false;
        loop {
            let other = match nginx.lock(&me).await? {
                Ok(()) => break,
                Err(other) => other,
            };
            if let Some(stale) = other.as_ref().filter(|h| h.provably_gone()) {
                self.out.warn(&format!(
                    "taking over the deploy lock of {}: its holder, {}, is no longer running",
                    self.config.app,
                    stale.describe()
                ));
                if nginx.take_over(&stale.token, &me).await?.is_ok() {
                    break;
                }
            }
            if Instant::now() >= deadline {
                return Err(
                    Failure::Locked(lock::held_by(&self.config.app, other.as_ref())).into(),
                );
            }
            if !said_waiting {
                self.out.info(&format!(
                    "waiting for the deploy lock of {} ({})",
                    self.config.app,
                    other
                        .as_ref()
                        .map_or("holder unknown".into(), Holder::describe)
                ));
                said_waiting = true;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        self.set_lock_use(LockUse::Held(me.token.clone()));
        Ok(me)
    }

    pub async fn release_lock(&self, me: &Holder) {
        self.set_lock_use(LockUse::None);
        match self.nginx().unlock(Some(&me.token)).await {
            Ok(Ok(())) => {}
            Ok(Err(other)) => self.out.warn(&format!(
                "the deploy lock was no longer ours to release (now held by {})",
                other.as_ref().map_or("unknown".into(), Holder::describe)
            )),
            Err(e) => self.out.warn(&format!(
                "could not release the deploy lock: {e:#}; `bgd lock release --force` clears it"
            )),
        }
    }

    /// Runs `work` holding the deploy lock, releasing it whatever happens.
    async fn locked<T>(
        &self,
        command: &str,
        work: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let me = self.acquire_lock(command).await?;
        let result = work.await;
        self.release_lock(&me).await;
        result
    }

    /// Records the outcome of a deploy or rollback on the host, unless the switch already
    /// recorded it and nothing changed since.
    async fn finish_journal<T>(
        &self,
        result: &Result<T>,
        state: &AppState,
        mut history: Vec<HistoryEntry>,
        mut journal: Journal,
    ) {
        if result.is_ok() && journal.recorded {
            return;
        }
        let entry = &mut journal.entry;
        entry.duration_ms = journal.started.elapsed().as_millis() as u64;
        if let Err(e) = result {
            let code = error::exit_code(e);
            entry.exit_code = code;
            entry.outcome = match code {
                3 => "rejected",
                4 => "rolled-back",
                c if c > 128 => "interrupted",
                _ => "failed",
            }
            .into();
            entry.message = self.out.redact(&format!("{e:#}"));
        }
        history.push(journal.entry);
        if let Err(e) = self.save(state, &history).await {
            self.out.warn(&format!("{e:#}"));
        }
    }

    /// Makes the preview listener route to `pool` (the idle color at its current addresses:
    /// Docker gives a restarted container a new one) unless the active config already does.
    async fn route_preview(
        &self,
        obs: &Observed,
        state: &mut AppState,
        live_pool: Option<&Pool>,
        pool: &Pool,
        role: Role,
        kmt: bool,
    ) -> Result<()> {
        let current = obs.generation();
        let wanted = self.render(current, live_pool, Some((pool, role)), kmt)?;
        if obs.active_config.as_deref() == Some(wanted.as_str()) {
            state.generation = current;
            return Ok(());
        }
        state.generation = current + 1;
        let text = self.render(state.generation, live_pool, Some((pool, role)), kmt)?;
        self.install(
            &text,
            &format!("the preview of the {} release", role.as_str()),
        )
        .await?;
        Ok(())
    }

    /// The nginx container a rollback or switch drives: it must exist and run.
    fn running_lb(&self, lb: Option<ContainerInfo>, command: &str) -> Result<ContainerInfo> {
        let lb = lb.ok_or_else(|| {
            error::refused(format!(
                "nothing to {command}: there is no nginx container {} (nothing was ever deployed here?)",
                self.config.lb.container
            ))
        })?;
        if !lb.running() {
            return Err(error::environment(format!(
                "the nginx container {} is {}; start it (docker start {}) first",
                lb.name, lb.state, lb.name
            )));
        }
        Ok(lb)
    }
}
