//! The engine: runs the steps of a deploy or a rollback against the real adapters, in an
//! order where every failure before the switch can be undone (start the candidate, gate it,
//! switch, verify, then park the old color), and records the outcome on the host.

use super::drift;
use super::observe::{observe, Observed};
use super::plan::{self, LABEL_RELEASE};
use crate::config::{Config, ParkMode};
use crate::docker::{ContainerInfo, Docker};
use crate::error::{self, Failure};
use crate::lock::{self, Holder};
use crate::model::{Color, Pool};
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

    /// The image is on the host, or is pulled; otherwise exit 6 naming it.
    pub async fn ensure_image(&self, image: &str) -> Result<()> {
        if self.docker.image_present(image).await? {
            return Ok(());
        }
        let t = Instant::now();
        self.out
            .step("pull", &format!("pulling {image} (not on the Docker host)"));
        self.docker.pull(image, PULL_LIMIT).await?;
        self.out
            .done("pull", &format!("pulled {image}"), t.elapsed());
        Ok(())
    }

    /// The nginx container: running and on the app network; created from `lb.image` when
    /// absent.
    pub async fn ensure_lb(&self) -> Result<ContainerInfo> {
        let lb = &self.config.lb;
        let net_labels = [("bgd.managed".to_string(), "true".to_string())]
            .into_iter()
            .collect();
        if self
            .docker
            .ensure_network(&self.config.network, net_labels)
            .await?
        {
            self.out
                .info(&format!("created network {}", self.config.network));
        }
        if let Some(c) = self.docker.inspect(&lb.container).await? {
            if !c.running() {
                return Err(error::environment(format!(
                    "the nginx container {} is {}; start it (docker start {}) or remove it so bgd recreates it from lb.image",
                    lb.container, c.state, lb.container
                )));
            }
            self.disable_clashing_default_server(&lb.container, false)
                .await?;
            if c.ip_on(&self.config.network).is_none() {
                self.docker
                    .connect_network(&self.config.network, &lb.container)
                    .await?;
                self.out.info(&format!(
                    "connected {} to network {}",
                    lb.container, self.config.network
                ));
                return self.inspect_required(&lb.container).await;
            }
            return Ok(c);
        }
        let Some(image) = lb.image.as_deref() else {
            return Err(error::environment(format!(
                "there is no nginx container named {}; create it, or set lb.image so bgd creates it",
                lb.container
            )));
        };
        let t = Instant::now();
        self.out.step(
            "lb",
            &format!("creating nginx container {} from {image}", lb.container),
        );
        self.ensure_image(image).await?;
        let spec = plan::lb_spec(self.config, image);
        if let Err(e) = self.docker.create(&spec).await {
            // Another bgd run may have created it a moment ago: use it once it runs.
            if self.docker.inspect(&lb.container).await?.is_none() {
                return Err(e);
            }
            for _ in 0..75 {
                if let Some(c) = self.docker.inspect(&lb.container).await? {
                    if c.running() {
                        self.out.done(
                            "lb",
                            "another bgd run created the nginx container",
                            t.elapsed(),
                        );
                        return Ok(c);
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            return Err(e);
        }
        let started = self.start_lb(&spec.name).await;
        if let Err(e) = started {
            let logs = self.docker.logs_tail(&spec.name, 20).await;
            let _ = self.docker.remove(&spec.name).await;
            return Err(e.context(format!(
                "the new nginx container {} did not start; it was removed. Its last output:\n{}",
                spec.name,
                logs.trim()
            )));
        }
        self.out.done(
            "lb",
            &format!("created nginx container {} from {image}", lb.container),
            t.elapsed(),
        );
        self.inspect_required(&lb.container).await
    }

    async fn start_lb(&self, name: &str) -> Result<()> {
        self.disable_clashing_default_server(name, true).await?;
        self.docker.start(name).await?;
        // nginx is up when it answers `nginx -v` and its container still runs.
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let c = self.inspect_required(name).await?;
            if !c.running() {
                return Err(error::environment(format!(
                    "nginx container {name} exited (code {})",
                    c.exit_code.unwrap_or(-1)
                )));
            }
            if self.nginx().version().await.is_ok_and(|v| v.is_some()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(error::environment(format!(
                    "nginx in {name} did not come up within 15s"
                )));
            }
        }
    }

    /// The official image's `conf.d/default.conf` is a server on port 80 named `localhost`: on
    /// bgd's live port it would answer every request for `localhost` with the welcome page.
    /// When it listens on one of bgd's ports, bgd replaces it with a comment (the next reload
    /// applies that). Other files are the user's and are left alone.
    async fn disable_clashing_default_server(&self, name: &str, created: bool) -> Result<()> {
        let path = "/etc/nginx/conf.d/default.conf";
        let Some(files) = self.docker.download(name, path).await? else {
            return Ok(());
        };
        let text = files
            .first()
            .map(|(_, d)| String::from_utf8_lossy(d).into_owned())
            .unwrap_or_default();
        let ports = [self.config.lb.listen, self.config.lb.preview_listen];
        if !plan::listens_on(&text, &ports) {
            return Ok(());
        }
        let note = format!(
            "# Disabled by bgd: this server listened on a port bgd uses for {} (live {}, preview {}).\n",
            self.config.app, self.config.lb.listen, self.config.lb.preview_listen
        );
        self.docker
            .upload(
                name,
                "/etc/nginx/conf.d",
                &[("default.conf", note.as_bytes())],
            )
            .await?;
        if !created {
            self.out.warn(&format!(
                "disabled {path} in {name}: it listened on a port bgd routes (it would answer requests for its server_name)"
            ));
        }
        Ok(())
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

    /// Readiness of every replica of `pool`, one by one through the preview listener:
    /// `successes` consecutive passes each, all within `readiness.deadline`.
    async fn wait_ready(&self, pool: &Pool, successes: u32) -> Result<()> {
        let r = &self.config.readiness;
        let total = pool.servers.len();
        let ready = std::sync::atomic::AtomicUsize::new(0);
        let last_failure: std::sync::Mutex<Vec<(String, String)>> = Default::default();
        let one = |replica: u32| {
            let name = crate::model::container_name(&self.config.app, pool.color, replica);
            let key = format!("{}-{replica}", pool.color);
            let url = format!("{}{}", self.config.lb.preview_url, r.path);
            let (ready, last_failure) = (&ready, &last_failure);
            async move {
                let mut streak = 0;
                loop {
                    let verdict = match self
                        .prober
                        .request("GET", &url, &[(PROBE_REPLICA_HEADER, &key)], "", r.timeout)
                        .await
                    {
                        Ok(resp) if resp.bgd_color() != Some(pool.color.as_str()) => Err(format!(
                            "the preview listener answered for color {:?}, not {}",
                            resp.bgd_color().unwrap_or("none"),
                            pool.color
                        )),
                        Ok(resp) if resp.status == r.expect_status => Ok(()),
                        Ok(resp) => Err(format!(
                            "{} answered {} (expected {})",
                            r.path, resp.status, r.expect_status
                        )),
                        Err(e) => Err(e),
                    };
                    crate::interrupt::check("during the readiness checks")?;
                    match verdict {
                        Ok(()) => {
                            streak += 1;
                            if streak >= successes {
                                let n = ready.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                                self.out.progress(&format!(
                                    "readiness of {} ({n}/{total} replicas ready)",
                                    pool.color
                                ));
                                return Ok(());
                            }
                        }
                        Err(why) => {
                            streak = 0;
                            if let Ok(mut l) = last_failure.lock() {
                                l.retain(|(n, _)| *n != name);
                                l.push((name.clone(), why));
                            }
                            // A replica that died will not become ready: say so now.
                            if let Some(c) = self.docker.inspect(&name).await? {
                                if !c.running() {
                                    let logs = self.docker.logs_tail(&name, 15).await;
                                    return Err(error::rejected(format!(
                                        "replica {name} is {} (exit code {}); its last output:\n{}",
                                        c.state,
                                        c.exit_code.unwrap_or(-1),
                                        logs.trim()
                                    )));
                                }
                            }
                        }
                    }
                    tokio::time::sleep(r.interval).await;
                }
            }
        };
        let all = futures_util::future::try_join_all(pool.servers.iter().map(|s| one(s.replica)));
        match tokio::time::timeout(r.deadline, all).await {
            Ok(result) => result.map(|_| ()),
            Err(_) => {
                let failures = last_failure.lock().map(|l| l.clone()).unwrap_or_default();
                let detail: Vec<String> = failures
                    .iter()
                    .map(|(n, why)| format!("  {n}: {why}"))
                    .collect();
                let mut msg = format!(
                    "{}/{total} replicas of {} passed readiness ({} x {} {}) within {}",
                    ready.load(std::sync::atomic::Ordering::SeqCst),
                    pool.color,
                    successes,
                    r.expect_status,
                    r.path,
                    fmt_duration(r.deadline)
                );
                if !detail.is_empty() {
                    msg.push_str(&format!("; last failures:\n{}", detail.join("\n")));
                }
                if let Some((name, _)) = failures.first() {
                    let logs = self.docker.logs_tail(name, 10).await;
                    if !logs.trim().is_empty() {
                        msg.push_str(&format!("\nlast output of {name}:\n{}", logs.trim()));
                    }
                }
                Err(error::rejected(msg))
            }
        }
    }

    /// `hooks.migrate`: a one-off container from the new image, with the app's network, env and
    /// volumes, its output streamed; a non-zero exit or a timeout rejects the candidate.
    async fn run_migration(
        &self,
        migrate: &crate::config::Migrate,
        image: &str,
        release: &str,
    ) -> Result<()> {
        let t = Instant::now();
        let shown = migrate.command.join(" ");
        self.out
            .step("migrate", &format!("running the migration: {shown}"));
        let spec = plan::migration_spec(self.config, image, release, &migrate.command);
        let mut tail: std::collections::VecDeque<String> = Default::default();
        let outcome = self
            .docker
            .run_to_completion(&spec, migrate.timeout, |line| {
                self.out.info(&format!("migrate | {line}"));
                if tail.len() == 15 {
                    tail.pop_front();
                }
                tail.push_back(line.to_string());
            })
            .await?;
        let last = tail.into_iter().collect::<Vec<_>>().join("\n");
        match outcome {
            Some(0) => {
                self.out.done("migrate", &format!("migration done: {shown}"), t.elapsed());
                Ok(())
            }
            Some(code) => Err(error::rejected(format!(
                "the migration `{shown}` failed with exit code {code}; traffic was not switched. Its last output:\n{last}"
            ))),
            None => Err(error::rejected(format!(
                "the migration `{shown}` did not finish within {} (hooks.migrate.timeout) and was stopped; traffic was not switched. Its last output:\n{last}",
                fmt_duration(migrate.timeout)
            ))),
        }
    }

    /// After a migration, the live (old) release must still pass its smoke probes through the
    /// live listener: the old version against the migrated schema.
    async fn compatibility_gate(&self, live: Color) -> Result<()> {
        let t = Instant::now();
        self.out.step(
            "compatibility",
            &format!("checking that {live} (live) still works after the migration"),
        );
        let checked = if self.config.smoke.is_empty() {
            let url = format!("{}{}", self.config.lb.url, self.config.readiness.path);
            match self
                .prober
                .request("GET", &url, &[], "", self.config.readiness.timeout)
                .await
            {
                Ok(r) if r.status == self.config.readiness.expect_status => Ok(()),
                Ok(r) => Err(error::rejected(format!(
                    "{} answered {}",
                    self.config.readiness.path, r.status
                ))),
                Err(e) => Err(error::rejected(e)),
            }
        } else {
            self.smoke(&self.config.lb.url, live, "live").await
        };
        checked.map_err(|e| {
            error::rejected(format!(
                "the migration is not backward-compatible: the live release ({live}) fails against the migrated schema: {e:#}\n\
                 Traffic stays on {live}, whose users are being hurt right now if this is a shared database: roll the schema forward or fix it. \
                 Migrations must keep the old version working (expand first, contract after the old version is gone; see docs/configuration.md)"
            ))
        })?;
        self.out.done(
            "compatibility",
            &format!("{live} (live) still works after the migration"),
            t.elapsed(),
        );
        Ok(())
    }

    /// Runs every smoke probe against `base`, expecting nginx to route to `color`.
    async fn smoke(&self, base: &str, color: Color, listener: &str) -> Result<()> {
        for probe in &self.config.smoke {
            crate::interrupt::check("during the smoke probes")?;
            let resp = self
                .prober
                .smoke(base, probe, SMOKE_TIMEOUT)
                .await
                .map_err(|e| {
                    error::rejected(format!(
                        "smoke probe {:?} ({} {} through the {listener} listener): {e}",
                        probe.name, probe.method, probe.path
                    ))
                })?;
            if resp.bgd_color() != Some(color.as_str()) {
                return Err(error::rejected(format!(
                    "smoke probe {:?}: the {listener} listener routed it to color {:?}, expected {color}",
                    probe.name,
                    resp.bgd_color().unwrap_or("none")
                )));
            }
            judge(&probe.expect, &resp).map_err(|why| {
                error::rejected(format!(
                    "smoke probe {:?} ({} {} through the {listener} listener): {why}",
                    probe.name, probe.method, probe.path
                ))
            })?;
        }
        Ok(())
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

    fn entry(&self, command: &str, started: Instant) -> HistoryEntry {
        HistoryEntry {
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

    /// `bgd deploy IMAGE`: the whole pipeline. On failure before the switch, the candidate
    /// is removed and nginx routes live traffic as before. With `no_switch` it stops after
    /// the gates and leaves the candidate on the preview listener.
    pub async fn deploy(&self, image: &str, no_switch: bool) -> Result<Deployed> {
        let started = Instant::now();
        let t = Instant::now();
        self.out
            .step("prepare", "checking the image, network and nginx");
        self.ensure_image(image).await?;
        let lb = self.ensure_lb().await?;
        let command = if no_switch {
            format!("bgd deploy --no-switch {image}")
        } else {
            format!("bgd deploy {image}")
        };
        self.locked(
            &command,
            self.deploy_locked(image, lb, started, t, no_switch),
        )
        .await
    }

    async fn deploy_locked(
        &self,
        image: &str,
        lb: ContainerInfo,
        started: Instant,
        t: Instant,
        no_switch: bool,
    ) -> Result<Deployed> {
        let mut obs = observe(self.docker, self.config).await?;
        let kmt = self.keepalive_min_timeout(&mut obs, &lb).await?;
        self.out
            .done("prepare", "image, network and nginx ready", t.elapsed());

        let mut state = obs.state.clone();
        let history = obs.history.clone();
        let mut journal = Journal {
            entry: self.entry("deploy", started),
            started,
            recorded: false,
        };
        journal.entry.image = Some(image.to_string());
        if no_switch {
            journal.entry.command = "deploy --no-switch".into();
        }
        let result = self
            .deploy_steps(image, &mut obs, &mut state, &mut journal, kmt, no_switch)
            .await;
        self.finish_journal(&result, &state, history, journal).await;
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

    async fn deploy_steps(
        &self,
        image: &str,
        obs: &mut Observed,
        state: &mut AppState,
        journal: &mut Journal,
        kmt: bool,
        no_switch: bool,
    ) -> Result<Deployed> {
        let entry = &mut journal.entry;
        let old_live = state.live.clone();
        let live_pool = old_live
            .as_ref()
            .map(|l| obs.pool(self.config, l.color, &l.release));
        if let (Some(l), Some(p)) = (&old_live, &live_pool) {
            if p.servers.is_empty() {
                self.out.warn(&format!(
                    "the live color {} has no running replicas: traffic is failing now; deploying anyway",
                    l.color
                ));
            }
        }
        let target = old_live.as_ref().map_or(Color::Blue, |l| l.color.other());
        entry.from = old_live.as_ref().map(|l| l.color);
        entry.to = Some(target);

        // The idle color is replaced: a parked release, or a candidate a dead run left.
        let leftovers: Vec<String> = obs
            .of_color(target)
            .iter()
            .map(|c| c.name.clone())
            .collect();
        if !leftovers.is_empty() {
            if let Some(idle) = state.idle.as_ref().filter(|i| i.release.color == target) {
                self.out.info(&format!(
                    "replacing the {} release {} ({}) in {target}",
                    idle.role.as_str(),
                    idle.release.release,
                    idle.release.image
                ));
            }
            self.remove_all(&leftovers).await;
            state.idle = None;
        }

        let release = state::new_release_id();
        entry.release = Some(release.clone());
        crate::interrupt::check("before the candidate was started; nothing changed")?;
        let t = Instant::now();
        self.out.step(
            "start",
            &format!(
                "starting {} {target} replica(s) of {image}",
                self.config.replicas
            ),
        );
        let specs = plan::replica_specs(self.config, target, image, &release);
        let mut undo = Undo::default();
        let started = async {
            for spec in &specs {
                self.docker.create(spec).await?;
                undo.candidates.push(spec.name.clone());
                crate::interrupt::check("while starting the candidate")?;
            }
            futures_util::future::try_join_all(specs.iter().map(|s| self.docker.start(&s.name)))
                .await?;
            Ok::<(), anyhow::Error>(())
        }
        .await;
        let result = match started {
            Ok(()) => {
                self.out.done(
                    "start",
                    &format!("started {}", undo.candidates.join(", ")),
                    t.elapsed(),
                );
                self.gate_and_switch(
                    image,
                    &release,
                    target,
                    obs,
                    state,
                    live_pool.as_ref(),
                    kmt,
                    &mut undo,
                    journal,
                    no_switch,
                )
                .await
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(report) => Ok(report),
            Err(e) => {
                self.out
                    .failed("deploy", &self.out.redact(&format!("{e:#}")));
                self.undo(&undo, state, live_pool.as_ref(), kmt).await;
                Err(e)
            }
        }
    }

    /// Puts the host back as it was before the candidate: nginx routes live as before and
    /// nothing to the removed candidate; the candidate containers are gone.
    async fn undo(&self, undo: &Undo, state: &mut AppState, live_pool: Option<&Pool>, kmt: bool) {
        if undo.candidates.is_empty() {
            return;
        }
        self.out
            .info("undoing: the candidate is removed, live traffic stays where it was");
        if undo.preview_installed {
            state.generation += 1;
            let restored = match self.render(state.generation, live_pool, None, kmt) {
                Ok(text) => self
                    .install(&text, "restoring the routing")
                    .await
                    .map(|_| ()),
                Err(e) => Err(e),
            };
            if let Err(e) = restored {
                // Live routing was never changed by the preview config; only preview is stale.
                self.out.warn(&format!(
                    "could not restore the preview routing: {e:#}; live traffic is unaffected"
                ));
            }
        }
        self.remove_all(&undo.candidates).await;
        state.idle = None;
    }

    /// The gates, then the switch (or, with `--no-switch`, a candidate left waiting).
    #[allow(clippy::too_many_arguments)]
    async fn gate_and_switch(
        &self,
        image: &str,
        release: &str,
        target: Color,
        obs: &mut Observed,
        state: &mut AppState,
        live_pool: Option<&Pool>,
        kmt: bool,
        undo: &mut Undo,
        journal: &mut Journal,
        no_switch: bool,
    ) -> Result<Deployed> {
        let pool = self
            .gate(image, release, target, obs, state, live_pool, kmt, undo)
            .await?;
        let candidate = Release {
            color: target,
            image: image.to_string(),
            release: release.to_string(),
        };
        if no_switch {
            self.check_candidate(&candidate, &pool).await?;
            // From here the candidate stays: it waits on the preview listener for `bgd switch`.
            undo.candidates.clear();
            journal.entry.message = format!("{target} waits as the candidate (--no-switch)");
            return Ok(Deployed::Candidate {
                candidate,
                live: state.live.clone(),
                generation: state.generation,
            });
        }
        self.promote(&candidate, &pool, obs, state, live_pool, kmt, undo, journal)
            .await
            .map(Deployed::Switched)
    }

    /// The candidate's gates: route the preview listener to it, readiness of every replica,
    /// the migration and the compatibility check, the smoke probes. Returns its pool.
    #[allow(clippy::too_many_arguments)]
    async fn gate(
        &self,
        image: &str,
        release: &str,
        target: Color,
        obs: &mut Observed,
        state: &mut AppState,
        live_pool: Option<&Pool>,
        kmt: bool,
        undo: &mut Undo,
    ) -> Result<Pool> {
        // Addresses come from Docker, read now, never names nginx would resolve at load.
        let mut candidates = Vec::new();
        for name in &undo.candidates {
            candidates.push(self.inspect_required(name).await?);
        }
        let refs: Vec<&ContainerInfo> = candidates.iter().collect();
        let pool = plan::pool_of(self.config, target, release, &refs);
        if pool.servers.len() != candidates.len() {
            let down: Vec<&str> = candidates
                .iter()
                .filter(|c| !c.running() || c.ip_on(&self.config.network).is_none())
                .map(|c| c.name.as_str())
                .collect();
            let name = down.first().copied().unwrap_or_default();
            let logs = self.docker.logs_tail(name, 15).await;
            return Err(error::rejected(format!(
                "candidate {} stopped right after starting; last output of {name}:\n{}",
                down.join(", "),
                logs.trim()
            )));
        }

        // Route the preview listener to the candidate; live routing is unchanged.
        let t = Instant::now();
        self.out
            .step("preview", "routing the preview listener to the candidate");
        state.generation = obs.generation() + 1;
        let text = self.render(
            state.generation,
            live_pool,
            Some((&pool, Role::Candidate)),
            kmt,
        )?;
        self.install(&text, "the preview of the candidate").await?;
        undo.preview_installed = true;
        state.idle = Some(Idle {
            release: Release {
                color: target,
                image: image.to_string(),
                release: release.to_string(),
            },
            role: Role::Candidate,
        });
        self.out.done(
            "preview",
            "preview listener routes to the candidate",
            t.elapsed(),
        );

        self.readiness_gate(&pool).await?;
        if let Some(migrate) = &self.config.hooks.migrate {
            crate::interrupt::check("before the migration; nothing was migrated")?;
            self.run_migration(migrate, image, release).await?;
            if let Some(live) = live_pool.filter(|p| !p.servers.is_empty()) {
                self.compatibility_gate(live.color).await?;
            }
        }
        self.smoke_gate(target).await?;
        Ok(pool)
    }

    /// Readiness of every replica of a candidate: `readiness.successes` passes each.
    async fn readiness_gate(&self, pool: &Pool) -> Result<()> {
        let t = Instant::now();
        self.out.step(
            "readiness",
            &format!(
                "readiness of {} (0/{} replicas ready)",
                pool.color,
                pool.servers.len()
            ),
        );
        self.wait_ready(pool, self.config.readiness.successes)
            .await?;
        self.out.done(
            "readiness",
            &format!(
                "all {} replica(s) of {} ready",
                pool.servers.len(),
                pool.color
            ),
            t.elapsed(),
        );
        Ok(())
    }

    /// The smoke probes against a candidate, through the preview listener.
    async fn smoke_gate(&self, target: Color) -> Result<()> {
        if self.config.smoke.is_empty() {
            return Ok(());
        }
        let t = Instant::now();
        self.out
            .step("smoke", "smoke probes through the preview listener");
        self.smoke(&self.config.lb.preview_url, target, "preview")
            .await?;
        self.out.done(
            "smoke",
            &format!(
                "{} smoke probe(s) passed on {target}",
                self.config.smoke.len()
            ),
            t.elapsed(),
        );
        Ok(())
    }

    /// Just before a candidate may take traffic: its containers are the ones the gates
    /// proved (running, same addresses, not restarted since) and match bgd.yaml (no drift:
    /// changed by hand, or bgd.yaml changed since they were started). Exit 3 otherwise.
    async fn check_candidate(&self, candidate: &Release, pool: &Pool) -> Result<()> {
        let t = Instant::now();
        self.out.step(
            "drift",
            "checking the candidate's containers against bgd.yaml",
        );
        let containers: Vec<ContainerInfo> =
            super::observe::list_containers(self.docker, self.config)
                .await?
                .into_iter()
                .filter(|c| {
                    c.label(plan::LABEL_COLOR) == Some(candidate.color.as_str())
                        && c.label(LABEL_RELEASE) == Some(candidate.release.as_str())
                })
                .collect();
        let refs: Vec<&ContainerInfo> = containers.iter().collect();
        let mut problems = Vec::new();
        for c in &refs {
            if !c.running() {
                problems.push(format!(
                    "{} is {} (exit code {})",
                    c.name,
                    c.state,
                    c.exit_code.unwrap_or(-1)
                ));
            } else if c.restart_count > 0 {
                problems.push(format!(
                    "{} restarted {} time(s) since it was started",
                    c.name, c.restart_count
                ));
            }
        }
        let now = plan::pool_of(self.config, candidate.color, &candidate.release, &refs);
        for s in &pool.servers {
            let name = crate::model::container_name(&self.config.app, pool.color, s.replica);
            match now.servers.iter().find(|n| n.replica == s.replica) {
                Some(n) if n.addr == s.addr => {}
                Some(n) => problems.push(format!(
                    "{name} moved from {} to {} since the gates",
                    s.addr, n.addr
                )),
                None if refs.iter().any(|c| c.name == name) => {}
                None => problems.push(format!("{name} is gone")),
            }
        }
        let images = super::observe::image_defaults(self.docker, &refs).await?;
        problems.extend(drift::color_drift(
            self.config,
            candidate.color,
            &candidate.image,
            &candidate.release,
            &refs,
            &images,
        ));
        if !problems.is_empty() {
            return Err(error::rejected(format!(
                "the candidate {} ({}) is not what the gates proved, so traffic was not switched:\n  - {}\n\
                 If bgd.yaml changed since the candidate started, or someone changed its containers by hand, deploy again",
                candidate.color,
                candidate.image,
                problems.join("\n  - ")
            )));
        }
        self.out.done(
            "drift",
            "the candidate's containers match bgd.yaml",
            t.elapsed(),
        );
        Ok(())
    }

    /// A proven candidate takes traffic: one validated switch, verification through `lb.url`
    /// (switching back on failure with `auto_rollback`), then the old color is parked.
    #[allow(clippy::too_many_arguments)]
    async fn promote(
        &self,
        candidate: &Release,
        pool: &Pool,
        obs: &Observed,
        state: &mut AppState,
        live_pool: Option<&Pool>,
        kmt: bool,
        undo: &mut Undo,
        journal: &mut Journal,
    ) -> Result<SwitchReport> {
        let target = candidate.color;
        self.check_candidate(candidate, pool).await?;

        // The switch: one validated reload; the old live color becomes the preview target.
        crate::interrupt::check("before the switch; live traffic was not touched")?;
        let t = Instant::now();
        self.out
            .step("switch", &format!("switching live traffic to {target}"));
        let old_live = state.live.clone();
        journal.entry.message = format!("{target} live");
        let installed = self
            .switch_live(
                state,
                pool,
                live_pool.map(|p| (p, Role::Parked)),
                (live_pool, Some((pool, Role::Candidate))),
                kmt,
                "the switch",
                Some(journal),
            )
            .await?;
        self.out.done(
            "switch",
            &format!("live traffic on {target} (generation {})", state.generation),
            t.elapsed(),
        );

        // From here the candidate is live: the undo path no longer applies.
        undo.candidates.clear();
        crate::interrupt::check(&format!("after the switch: {target} is live"))?;

        if let Err(e) = self.verify_live(pool).await {
            if error::exit_code(&e) > 128 {
                return Err(e);
            }
            return self
                .switch_back_after_failed_verify(e, state, pool, live_pool, kmt)
                .await;
        }

        if let (Some(old), ParkMode::Stopped) = (&old_live, self.config.park) {
            self.park_stopped(obs, old).await;
        }
        Ok(SwitchReport {
            live: candidate.clone(),
            parked: old_live,
            generation: state.generation,
            switch_took: installed.took,
        })
    }

    /// Verification after a switch: for `switch.verify`, rounds of the smoke probes through
    /// `lb.url` and a readiness probe of every live replica, `readiness.interval` apart (one
    /// round when `verify` is 0). Any failure is the verdict.
    async fn verify_live(&self, pool: &Pool) -> Result<()> {
        let t = Instant::now();
        let window = self.config.switch.verify;
        self.out.step(
            "verify",
            &format!(
                "verifying {} through the live listener for {}",
                pool.color,
                fmt_duration(window)
            ),
        );
        let r = &self.config.readiness;
        let mut rounds = 0;
        loop {
            self.smoke(&self.config.lb.url, pool.color, "live").await?;
            for server in &pool.servers {
                let key = format!("{}-{}", pool.color, server.replica);
                let url = format!("{}{}", self.config.lb.preview_url, r.path);
                let name =
                    crate::model::container_name(&self.config.app, pool.color, server.replica);
                match self
                    .prober
                    .request("GET", &url, &[(PROBE_REPLICA_HEADER, &key)], "", r.timeout)
                    .await
                {
                    Ok(resp) if resp.status == r.expect_status => {}
                    Ok(resp) => {
                        return Err(error::rejected(format!(
                            "live replica {name}: {} answered {} (expected {})",
                            r.path, resp.status, r.expect_status
                        )))
                    }
                    Err(e) => return Err(error::rejected(format!("live replica {name}: {e}"))),
                }
            }
            rounds += 1;
            crate::interrupt::check(&format!("after the switch: {} is live", pool.color))?;
            if t.elapsed() + r.interval > window {
                break;
            }
            tokio::time::sleep(r.interval).await;
        }
        self.out.done(
            "verify",
            &format!(
                "{} verified through the live listener ({rounds} rounds)",
                pool.color
            ),
            t.elapsed(),
        );
        Ok(())
    }

    /// Post-switch verification failed: with `auto_rollback` and an old color, switch back
    /// (exit 4); otherwise say exactly what to run.
    async fn switch_back_after_failed_verify(
        &self,
        why: anyhow::Error,
        state: &mut AppState,
        pool: &Pool,
        old_pool: Option<&Pool>,
        kmt: bool,
    ) -> Result<SwitchReport> {
        let (Some(old_pool), true) = (
            old_pool.filter(|p| !p.servers.is_empty()),
            self.config.switch.auto_rollback,
        ) else {
            return Err(error::unsafe_state(format!(
                "the switch happened but verification through lb.url failed: {why:#}\n{}",
                if old_pool.is_some() {
                    "Roll back with: bgd rollback"
                } else {
                    "There is no previous release to go back to; deploy a fixed image"
                }
            )));
        };
        self.out.warn(&format!(
            "verification after the switch failed: {why:#}; switching back"
        ));
        self.switch_live(
            state,
            old_pool,
            Some((pool, Role::Candidate)),
            (Some(pool), Some((old_pool, Role::Parked))),
            kmt,
            "switching back",
            None,
        )
        .await
        .map_err(|e| {
            error::unsafe_state(format!(
                "switching back failed: {e:#}\nRun `bgd status`, then `bgd rollback`"
            ))
        })?;
        // The failed release stays as the idle candidate for inspection on the preview listener
        // (switch_live recorded it with that role).
        Err(Failure::RolledBack(format!(
            "verification after the switch failed, traffic is back on {}: {why:#}",
            old_pool.color
        ))
        .into())
    }

    async fn park_stopped(&self, obs: &Observed, old: &Release) {
        let names: Vec<String> = obs
            .of_color(old.color)
            .iter()
            .filter(|c| c.label(LABEL_RELEASE) == Some(old.release.as_str()))
            .map(|c| c.name.clone())
            .collect();
        let t = Instant::now();
        self.out.step(
            "park",
            &format!("stopping the parked {} replicas", old.color),
        );
        let stops = names
            .iter()
            .map(|n| self.docker.stop(n, self.config.container.stop_timeout));
        for (n, r) in names
            .iter()
            .zip(futures_util::future::join_all(stops).await)
        {
            if let Err(e) = r {
                self.out.warn(&format!("could not stop parked {n}: {e:#}"));
            }
        }
        self.out.done(
            "park",
            &format!("parked {} (stopped)", old.color),
            t.elapsed(),
        );
    }

    /// `bgd rollback`: the parked color goes live again, fast: one readiness pass over its
    /// replicas and the same validated switch.
    pub async fn rollback(&self, verify: bool) -> Result<SwitchReport> {
        let started = Instant::now();
        if let Some(fast) = self.fast_view().await? {
            if let Some(done) = self.rollback_fast(fast, started, verify).await? {
                return Ok(done);
            }
            // the lock was busy at the switch: the full path waits for it or reports it
        }
        // the lock lives in the nginx container: without one there is nothing to lock
        let lb = self.docker.inspect(&self.config.lb.container).await?;
        self.running_lb(lb, "roll back to")?;
        self.locked("bgd rollback", self.rollback_full(started, verify))
            .await
    }

    async fn rollback_full(&self, started: Instant, verify: bool) -> Result<SwitchReport> {
        let mut obs = observe(self.docker, self.config).await?;
        self.out.detail(&format!(
            "observed the host in {}ms",
            started.elapsed().as_millis()
        ));
        let lb = self.running_lb(obs.lb.clone(), "roll back to")?;
        let mut state = obs.state.clone();
        let history = obs.history.clone();
        let mut journal = Journal {
            entry: self.entry("rollback", started),
            started,
            recorded: false,
        };
        let result = self
            .rollback_steps(&mut obs, &lb, &mut state, &mut journal, verify)
            .await;
        if let Err(e) = &result {
            if error::exit_code(e) == 2 {
                return result; // refused: nothing happened, nothing to record
            }
        }
        self.finish_journal(&result, &state, history, journal).await;
        result
    }

    /// What a rollback needs, learned without reading bgd's files (a container-filesystem read
    /// costs ~100 ms on some daemons): nginx itself answers `/__bgd` on the preview listener
    /// with the idle color, the generation and its version; labels give the releases. `None`
    /// when anything is unusual, and the full observation is used instead.
    async fn fast_view(&self) -> Result<Option<FastView>> {
        let url = format!("{}/__bgd", self.config.lb.preview_url);
        let ask = self
            .prober
            .request("GET", &url, &[], "", Duration::from_millis(1000));
        let (containers, lb, answer) = tokio::join!(
            super::observe::list_containers(self.docker, self.config),
            self.docker.inspect(&self.config.lb.container),
            ask
        );
        let (containers, Some(lb), Ok(answer)) = (containers?, lb?, answer) else {
            return Ok(None);
        };
        let (Some(parked_color), Some(generation), Some(version)) = (
            answer.bgd_color().and_then(Color::parse),
            answer.bgd_generation(),
            answer.header("server").and_then(render::parse_version),
        ) else {
            return Ok(None);
        };
        if answer.status != 204 || !lb.running() {
            return Ok(None);
        }
        let of = |color: Color| -> Vec<ContainerInfo> {
            containers
                .iter()
                .filter(|c| c.label(plan::LABEL_COLOR) == Some(color.as_str()))
                .cloned()
                .collect()
        };
        let release_of = |cs: &[ContainerInfo]| -> Option<Release> {
            let first = cs.first()?;
            let release = first.label(LABEL_RELEASE)?;
            let color = Color::parse(first.label(plan::LABEL_COLOR)?)?;
            cs.iter()
                .all(|c| c.label(LABEL_RELEASE) == Some(release) && c.image == first.image)
                .then(|| Release {
                    color,
                    image: first.image.clone(),
                    release: release.to_string(),
                })
        };
        let (parked_cs, live_cs) = (of(parked_color), of(parked_color.other()));
        let (Some(parked), Some(live)) = (release_of(&parked_cs), release_of(&live_cs)) else {
            return Ok(None);
        };
        // Only a parked release (not a candidate) is rolled back to; a stopped one takes the
        // full path, which starts it.
        if answer.header("x-bgd-idle-role") != Some("parked")
            || !parked_cs.iter().all(ContainerInfo::running)
        {
            return Ok(None);
        }
        let refs: Vec<&ContainerInfo> = parked_cs.iter().collect();
        let parked_pool = plan::pool_of(self.config, parked.color, &parked.release, &refs);
        let refs: Vec<&ContainerInfo> = live_cs.iter().collect();
        let live_pool = plan::pool_of(self.config, live.color, &live.release, &refs);
        if parked_pool.servers.len() != parked_cs.len() {
            return Ok(None);
        }
        // nginx must route each probe to the replica's current address (Docker gives a
        // restarted container a new one): X-Bgd-Upstream says where a probe went.
        for server in &parked_pool.servers {
            let key = format!("{}-{}", parked.color, server.replica);
            let probe = self
                .prober
                .request(
                    "GET",
                    &format!(
                        "{}{}",
                        self.config.lb.preview_url, self.config.readiness.path
                    ),
                    &[(PROBE_REPLICA_HEADER, &key)],
                    "",
                    self.config.readiness.timeout,
                )
                .await;
            if !probe.is_ok_and(|r| r.header("x-bgd-upstream") == Some(server.addr.as_str())) {
                return Ok(None);
            }
        }
        let state = AppState {
            app: self.config.app.clone(),
            generation,
            live: Some(live),
            idle: Some(Idle {
                release: parked,
                role: Role::Parked,
            }),
            nginx: Some(NginxInfo {
                container_id: lb.id.clone(),
                version: format!("{}.{}.{}", version.0, version.1, version.2),
            }),
            updated_at: state::now(),
        };
        Ok(Some(FastView {
            state,
            parked_pool,
            live_pool,
            keepalive_min_timeout: render::supports_keepalive_min_timeout(version),
        }))
    }

    /// The rollback on what `fast_view` learned: readiness pass, switch, park, verify.
    async fn rollback_fast(
        &self,
        fast: FastView,
        started: Instant,
        verify: bool,
    ) -> Result<Option<SwitchReport>> {
        let FastView {
            mut state,
            parked_pool,
            live_pool,
            keepalive_min_timeout: kmt,
        } = fast;
        if !kmt {
            self.warn_old_nginx(&state);
        }
        let (Some(parked), old_live) = (state.idle.clone().map(|i| i.release), state.live.clone())
        else {
            return Err(anyhow::anyhow!("fast rollback without a parked release"));
        };
        let mut journal = Journal {
            entry: self.entry("rollback", started),
            started,
            recorded: false,
        };
        journal.entry.image = Some(parked.image.clone());
        journal.entry.release = Some(parked.release.clone());
        journal.entry.from = old_live.as_ref().map(|l| l.color);
        journal.entry.to = Some(parked.color);
        let result = self
            .rollback_to(
                &mut state,
                &parked,
                &parked_pool,
                Some(&live_pool),
                kmt,
                &mut journal,
                Some(LockUse::Once(Holder::me("bgd rollback"))),
                verify,
            )
            .await;
        if let Err(e) = &result {
            if !journal.recorded && error::exit_code(e) == 5 {
                return Ok(None);
            }
        }
        if result.is_err() || !journal.recorded {
            // the rare path: read the history so the failure is appended to it
            let history = match observe(self.docker, self.config).await {
                Ok(obs) => obs.history,
                Err(_) => Vec::new(),
            };
            self.finish_journal(&result, &state, history, journal).await;
        }
        result.map(Some)
    }

    /// After a rollback's switch: park the old color as configured, and verify on request.
    async fn after_rollback(
        &self,
        parked: &Release,
        pool: &Pool,
        old_live: Option<&Release>,
        verify: bool,
    ) -> Result<()> {
        if let (Some(old), ParkMode::Stopped) = (old_live, self.config.park) {
            let obs = observe(self.docker, self.config).await?;
            self.park_stopped(&obs, old).await;
        }
        if verify {
            self.verify_live(pool).await.map_err(|e| {
                error::unsafe_state(format!(
                    "rolled back to {}, but it fails verification through lb.url: {e:#}\nCheck `bgd status`; `bgd rollback` again returns to the release you left",
                    parked.color
                ))
            })?;
        }
        Ok(())
    }

    async fn rollback_steps(
        &self,
        obs: &mut Observed,
        lb: &ContainerInfo,
        state: &mut AppState,
        journal: &mut Journal,
        verify: bool,
    ) -> Result<SwitchReport> {
        let entry = &mut journal.entry;
        let Some(parked) = state.idle.clone().filter(|i| i.role == Role::Parked) else {
            let why = match &state.idle {
                Some(i) => format!(
                    "the idle color {} holds a candidate ({}), not a parked release; `bgd switch` promotes it, the next deploy replaces it",
                    i.release.color, i.release.image
                ),
                None => "no release is parked".to_string(),
            };
            return Err(error::refused(format!("nothing to roll back to: {why}")));
        };
        let parked = parked.release;
        entry.image = Some(parked.image.clone());
        entry.release = Some(parked.release.clone());
        entry.from = state.live.as_ref().map(|l| l.color);
        entry.to = Some(parked.color);
        let containers: Vec<ContainerInfo> = obs
            .of_color(parked.color)
            .into_iter()
            .filter(|c| c.label(LABEL_RELEASE) == Some(parked.release.as_str()))
            .cloned()
            .collect();
        if containers.is_empty() {
            return Err(error::refused(format!(
                "nothing to roll back to: the parked {} containers of release {} are gone",
                parked.color, parked.release
            )));
        }
        let kmt = self.keepalive_min_timeout(obs, lb).await?;
        let live = state.live.clone();
        let live_pool = live
            .as_ref()
            .map(|l| obs.pool(self.config, l.color, &l.release));

        // Parked stopped: start it first; its addresses may change.
        let stopped: Vec<&ContainerInfo> = containers.iter().filter(|c| !c.running()).collect();
        if !stopped.is_empty() {
            let t = Instant::now();
            self.out.step(
                "start",
                &format!("starting the parked {} replicas", parked.color),
            );
            futures_util::future::try_join_all(stopped.iter().map(|c| self.docker.start(&c.name)))
                .await?;
            *obs = observe(self.docker, self.config).await?;
            self.out.done(
                "start",
                &format!("started the parked {} replicas", parked.color),
                t.elapsed(),
            );
        }
        let pool = obs.pool(self.config, parked.color, &parked.release);
        if pool.servers.len() != containers.len() {
            return Err(error::environment(format!(
                "only {}/{} parked {} replicas are running with an address on {}",
                pool.servers.len(),
                containers.len(),
                parked.color,
                self.config.network
            )));
        }

        self.route_preview(obs, state, live_pool.as_ref(), &pool, Role::Parked, kmt)
            .await?;

        self.rollback_to(
            state,
            &parked,
            &pool,
            live_pool.as_ref(),
            kmt,
            journal,
            None,
            verify,
        )
        .await
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

    /// The common part of both rollback paths: one readiness pass over the parked replicas,
    /// the switch, then parking the old color and verifying on request. `lock` is set when
    /// the switch's exec takes the deploy lock for itself (the fast path).
    #[allow(clippy::too_many_arguments)]
    async fn rollback_to(
        &self,
        state: &mut AppState,
        parked: &Release,
        pool: &Pool,
        live_pool: Option<&Pool>,
        kmt: bool,
        journal: &mut Journal,
        lock: Option<LockUse>,
        verify: bool,
    ) -> Result<SwitchReport> {
        let old_live = state.live.clone();
        journal.entry.message = format!("{} live", parked.color);
        let t = Instant::now();
        self.out.step(
            "readiness",
            &format!("checking the parked {} replicas", parked.color),
        );
        self.wait_ready(pool, 1).await.map_err(|e| {
            // the parked release is not healthy: refuse to send users to it
            anyhow::Error::from(Failure::Environment(format!(
                "the parked release is not ready, traffic stays on {}: {e:#}",
                live_pool.map_or("none", |l| l.color.as_str())
            )))
        })?;
        self.out.done(
            "readiness",
            &format!("parked {} replicas ready", parked.color),
            t.elapsed(),
        );

        crate::interrupt::check("before the switch; live traffic was not touched")?;
        let t = Instant::now();
        self.out.step(
            "switch",
            &format!("switching live traffic back to {}", parked.color),
        );
        let once = lock.is_some();
        if let Some(lock) = lock {
            self.set_lock_use(lock);
        }
        let switched = self
            .switch_live(
                state,
                pool,
                live_pool.map(|p| (p, Role::Parked)),
                (live_pool, Some((pool, Role::Parked))),
                kmt,
                "the rollback",
                Some(journal),
            )
            .await;
        if once {
            self.set_lock_use(LockUse::None);
        }
        let installed = switched?;
        self.out.done(
            "switch",
            &format!(
                "live traffic on {} (generation {})",
                parked.color, state.generation
            ),
            t.elapsed(),
        );
        self.after_rollback(parked, pool, old_live.as_ref(), verify)
            .await?;
        Ok(SwitchReport {
            live: parked.clone(),
            parked: old_live,
            generation: state.generation,
            switch_took: installed.took,
        })
    }

    /// `bgd switch`: the candidate left by `deploy --no-switch` goes live. It waited for a
    /// while, so it is gated again (readiness of every replica, smoke probes, drift) before
    /// the same switch, verification and parking as a deploy. The migration is not rerun.
    pub async fn switch(&self) -> Result<SwitchReport> {
        let started = Instant::now();
        // the lock lives in the nginx container: without one there is nothing to lock
        let lb = self.docker.inspect(&self.config.lb.container).await?;
        self.running_lb(lb, "switch to")?;
        self.locked("bgd switch", self.switch_locked(started)).await
    }

    async fn switch_locked(&self, started: Instant) -> Result<SwitchReport> {
        let mut obs = observe(self.docker, self.config).await?;
        let lb = self.running_lb(obs.lb.clone(), "switch to")?;
        let kmt = self.keepalive_min_timeout(&mut obs, &lb).await?;
        let mut state = obs.state.clone();
        let history = obs.history.clone();
        let mut journal = Journal {
            entry: self.entry("switch", started),
            started,
            recorded: false,
        };
        let result = self
            .switch_steps(&mut obs, &mut state, &mut journal, kmt)
            .await;
        if let Err(e) = &result {
            if error::exit_code(e) == 2 {
                return result; // refused: nothing happened, nothing to record
            }
        }
        self.finish_journal(&result, &state, history, journal).await;
        result
    }

    async fn switch_steps(
        &self,
        obs: &mut Observed,
        state: &mut AppState,
        journal: &mut Journal,
        kmt: bool,
    ) -> Result<SwitchReport> {
        let Some(candidate) = state
            .idle
            .clone()
            .filter(|i| i.role == Role::Candidate)
            .map(|i| i.release)
        else {
            let why = match &state.idle {
                Some(i) => format!(
                    "the idle color {} holds the parked release {} ({}); `bgd rollback` sends traffic to it",
                    i.release.color, i.release.release, i.release.image
                ),
                None => "no candidate is waiting (`bgd deploy --no-switch IMAGE` leaves one)".into(),
            };
            return Err(error::refused(format!("nothing to switch to: {why}")));
        };
        let entry = &mut journal.entry;
        entry.image = Some(candidate.image.clone());
        entry.release = Some(candidate.release.clone());
        entry.from = state.live.as_ref().map(|l| l.color);
        entry.to = Some(candidate.color);
        let containers: Vec<&ContainerInfo> = obs
            .of_color(candidate.color)
            .into_iter()
            .filter(|c| c.label(LABEL_RELEASE) == Some(candidate.release.as_str()))
            .collect();
        if containers.is_empty() {
            return Err(error::refused(format!(
                "nothing to switch to: the candidate's containers ({}, release {}) are gone; deploy again",
                candidate.color, candidate.release
            )));
        }
        let down: Vec<String> = containers
            .iter()
            .filter(|c| !c.running())
            .map(|c| format!("{} is {}", c.name, c.state))
            .collect();
        if !down.is_empty() {
            return Err(error::rejected(format!(
                "the candidate {} ({}) is not running ({}); traffic was not switched. Deploy again",
                candidate.color,
                candidate.image,
                down.join(", ")
            )));
        }
        let live_pool = state
            .live
            .as_ref()
            .map(|l| obs.pool(self.config, l.color, &l.release));
        let pool = obs.pool(self.config, candidate.color, &candidate.release);
        self.route_preview(obs, state, live_pool.as_ref(), &pool, Role::Candidate, kmt)
            .await?;
        self.readiness_gate(&pool).await?;
        self.smoke_gate(candidate.color).await?;
        // Nothing of this run's to remove if the switch fails: the candidate stays a candidate.
        let mut undo = Undo::default();
        self.promote(
            &candidate,
            &pool,
            obs,
            state,
            live_pool.as_ref(),
            kmt,
            &mut undo,
            journal,
        )
        .await
    }

    /// What `deploy IMAGE` would do now (`deploy --plan`): read-only looks at the host, the
    /// pure plan, and the nginx config the deploy would leave active. Touches nothing: no
    /// pull, no network, no container, no lock, no history entry.
    pub async fn plan(&self, image: &str, no_switch: bool) -> Result<PlanReport> {
        let (image_present, network_present, mut obs) = tokio::try_join!(
            self.docker.image_present(image),
            self.docker.network_exists(&self.config.network),
            observe(self.docker, self.config)
        )?;
        let kmt = match obs.lb.clone() {
            Some(lb) if lb.running() => self.keepalive_min_timeout(&mut obs, &lb).await?,
            // read when the deploy creates or starts it
            _ => true,
        };
        let plan = plan::deploy_plan(
            self.config,
            image,
            &state::new_release_id(),
            no_switch,
            &plan::HostFacts {
                image_present,
                network_present,
                observed: &obs,
                keepalive_min_timeout: kmt,
            },
        );
        let after = self.render_input(&plan.nginx_after)?;
        Ok(PlanReport {
            plan,
            active: obs.active_config.clone(),
            after,
        })
    }

    /// The config bgd would write now (for `bgd render`), without touching anything.
    pub async fn render_now(&self) -> Result<String> {
        let mut obs = observe(self.docker, self.config).await?;
        let kmt = match obs.lb.clone() {
            Some(lb) if lb.running() => self.keepalive_min_timeout(&mut obs, &lb).await?,
            _ => true,
        };
        let state = &obs.state;
        let live = state
            .live
            .as_ref()
            .map(|l| obs.pool(self.config, l.color, &l.release));
        let idle = state
            .idle
            .as_ref()
            .map(|i| obs.pool(self.config, i.release.color, &i.release.release));
        let role = state.idle.as_ref().map_or(Role::Parked, |i| i.role);
        self.render(
            obs.generation(),
            live.as_ref(),
            idle.as_ref().map(|p| (p, role)),
            kmt,
        )
    }
}
