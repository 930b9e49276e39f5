//! `Run`: one command's state (what it observed, the record as it changes it, its history
//! entry, what to undo, the lock it holds) and the executor that performs a plan's steps in
//! order, reports each one, undoes what it did when a step fails before the switch, and
//! records the outcome.
//!
//! The steps themselves live by phase, each a function of `&mut Run`:
//! prepare.rs (pull, network, lb, prepare), candidate.rs (tidy, set aside, start, preview,
//! drop parked, undo), gates.rs (readiness, migrate, compatibility, smoke, drift) and
//! switch.rs (switch, verify, park, switch back).

use super::host::Host;
use super::observe::Observed;
use super::plan::DeployRequest;
use super::specs::Freeing;
use super::step::{Step, StepKind};
use super::{candidate, gates, lock, prepare, progressive, rehearse, switch};
use crate::error::{self, Failure};
use crate::lock::Holder;
use crate::model::{Pool, Release};
use crate::nginx::render::Features;
use crate::nginx::{Installed, LockUse, RecordWrite};
use crate::state::{self, AppState, HistoryEntry};
use anyhow::Result;
use std::time::{Duration, Instant};

/// Which command a run carries out.
#[derive(Debug, Clone)]
pub enum Command {
    Deploy(DeployRequest),
    Switch,
    Rollback,
    /// `bgd reroute`: the same colors, routed to where their containers are now
    Reroute,
    /// `bgd discard`: the waiting candidate goes, the release it set aside is parked again
    Discard,
    /// `bgd tls reload`: the same routing, with the certificate bgd.yaml names now
    TlsReload,
    /// `bgd canary N` (and `bgd rollback` during a canary: 0): the waiting candidate's share
    /// of live clients
    Canary(u8),
}

/// What a finished deploy, switch or rollback reports.
#[derive(Debug, Clone)]
pub struct SwitchReport {
    pub live: Release,
    pub parked: Option<Release>,
    pub generation: u64,
    /// From the start of the install exec to the drained handover (or the flag's exec)
    pub switch_took: Duration,
    /// nginx reloaded; false when the rollback flag moved live traffic
    pub reloaded: bool,
    /// What the live listener saw during the switch
    pub window: Option<crate::probe::window::WindowReport>,
    /// From the command's start to the new color confirmed live through `lb.url`
    pub confirmed_in: Option<Duration>,
    /// The candidate's traffic as judged (the mirror's window, each canary step's)
    pub analysis: Vec<crate::analysis::Judged>,
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
    /// `--canary N`: the candidate passed the gates and takes N% of live clients.
    Canary(CanaryReport),
}

/// Where a canary stands after a command set its share.
#[derive(Debug, Clone)]
pub struct CanaryReport {
    pub candidate: Release,
    pub stable: Release,
    /// 0: the candidate is idle, all of live traffic on the stable release
    pub share: u8,
    pub generation: u64,
    pub window: Option<crate::probe::window::WindowReport>,
}

/// The history entry of the running command, and the outcome a routing exec already
/// recorded on the host with the state (a switch records "ok", a switch back
/// "rolled-back"; the run's one history line is replaced, never added to).
pub struct Journal {
    pub entry: HistoryEntry,
    started: Instant,
    /// Something happened worth recording (the run got past `prepare`, or switched)
    pub active: bool,
    pub recorded: Option<String>,
    /// The entry changed after a routing exec recorded it (the switch window's report):
    /// `finish` writes it again
    pub amended: bool,
}

impl Journal {
    /// The entry as it stands now, with its duration.
    pub fn entry_now(&self) -> HistoryEntry {
        let mut entry = self.entry.clone();
        entry.duration_ms = self.started.elapsed().as_millis() as u64;
        entry
    }

    /// The entry ending with `result`.
    fn ended<T>(&self, result: &Result<T>, out: &crate::output::Output) -> HistoryEntry {
        let mut entry = self.entry_now();
        if let Err(e) = result {
            entry.exit_code = error::exit_code(e);
            entry.outcome = error::failure(e)
                .map_or("failed", Failure::outcome)
                .to_string();
            entry.message = out.redact(&format!("{e:#}"));
        }
        entry
    }
}

/// What a failure before the switch must undo: what this run did so far.
#[derive(Default)]
pub struct Undo {
    /// Candidate containers created
    pub candidates: Vec<String>,
    /// nginx routes the preview listener to the candidate
    pub preview_installed: bool,
    /// The parked release, renamed while the candidate holds its color's names
    pub set_aside: Option<SetAside>,
}

/// A parked release set aside during a deploy: its release and its containers as
/// (name now, name to give back).
pub struct SetAside {
    pub release: Release,
    pub containers: Vec<(String, String)>,
}

pub struct Run<'a> {
    pub host: &'a Host<'a>,
    pub command: Command,
    pub obs: Observed,
    /// The record as this run changes it
    pub state: AppState,
    pub journal: Journal,
    pub undo: Undo,
    /// How installs relate to the deploy lock
    pub lock: LockUse,
    /// The lock `prepare` took, released when the run finishes
    pub holder: Option<Holder>,
    /// What this nginx can do
    pub features: Features,
    /// The live release when the run began, and its pool as nginx routes it
    pub old_live: Option<Release>,
    pub live_pool: Option<Pool>,
    /// How a deploy frees the idle color (decided once, from what `prepare` read)
    pub freeing: Freeing,
    /// The release this run makes live (the candidate, or the parked release), and its pool
    /// as the gates proved it
    pub target: Option<Release>,
    pub pool: Option<Pool>,
    /// Set once the switch happened
    pub switched: Option<Installed>,
    /// When the switch was confirmed through `lb.url`, from the command's start
    pub confirmed_in: Option<Duration>,
    /// A drill judges the switch window itself: a lossy one does not fail the rollback
    pub window_judged_by_caller: bool,
    /// What the switch window saw go wrong, judged by `verify` (after `drop-parked`)
    pub window_failure: Option<String>,
    /// A canary share was installed: the candidate may serve live clients, so a failure
    /// never removes it (the canary step puts live traffic back itself)
    pub canary_routed: bool,
    /// The switch can move live traffic by the active config's rollback flag, no reload
    pub flip: Option<RollbackFlag>,
    /// The switch's exec recorded the history entry with its window
    pub window_recorded: bool,
    /// A fast rollback's readiness probes of the parked replicas, sent while the containers
    /// were listed (replica number, verdict): the readiness step takes them when every
    /// replica's answer is what it expects, and probes as ever otherwise
    pub early_ready: Option<EarlyReady>,
}

/// Readiness probes of a pool's replicas sent before the readiness step, one per replica:
/// (replica number, verdict).
pub type EarlyReady = Vec<(u32, crate::probe::Verdict)>;

/// A switch by the active config's rollback flag: raise it (`on`) or lower it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackFlag {
    /// The flag's path in the nginx container
    pub flag: String,
    pub on: bool,
}

impl<'a> Run<'a> {
    pub fn new(host: &'a Host<'a>, command: Command) -> Run<'a> {
        let name = match &command {
            Command::Deploy(r) if r.no_switch => "deploy --no-switch",
            Command::Deploy(r) if r.canary.is_some() => "deploy --canary",
            Command::Deploy(_) => "deploy",
            Command::Switch => "switch",
            Command::Rollback => "rollback",
            Command::Reroute => "reroute",
            Command::Discard => "discard",
            Command::TlsReload => "tls reload",
            Command::Canary(0) => "canary 0",
            Command::Canary(_) => "canary",
        };
        let mut entry = HistoryEntry::starting(name);
        if let Command::Deploy(r) = &command {
            entry.image = Some(r.image.clone());
        }
        Run {
            host,
            command,
            obs: Observed::default(),
            state: AppState::default(),
            journal: Journal {
                entry,
                started: Instant::now(),
                active: false,
                recorded: None,
                amended: false,
            },
            undo: Undo::default(),
            lock: LockUse::None,
            holder: None,
            features: Features::ALL,
            old_live: None,
            live_pool: None,
            freeing: Freeing::default(),
            target: None,
            pool: None,
            switched: None,
            confirmed_in: None,
            window_judged_by_caller: false,
            window_failure: None,
            canary_routed: false,
            flip: None,
            window_recorded: false,
            early_ready: None,
        }
    }

    /// The run began at `started` (its history entry counts from there).
    pub fn started_at(mut self, started: Instant) -> Self {
        self.journal.started = started;
        self
    }

    /// How long since the command started.
    pub fn elapsed(&self) -> Duration {
        self.journal.started.elapsed()
    }

    /// The release this run makes live, and what the history says about it.
    pub fn set_target(&mut self, target: Release) {
        let entry = &mut self.journal.entry;
        entry.image = Some(target.image.clone());
        entry.release = Some(target.release.clone());
        entry.from = self.old_live.as_ref().map(|l| l.color);
        entry.to = Some(target.color);
        self.target = Some(target);
    }

    /// The target release; every step after `prepare` has one.
    pub fn target(&self) -> Result<&Release> {
        self.target
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("internal: a step ran before its release was known"))
    }

    /// The target's pool as the gates proved it.
    pub fn pool(&self) -> Result<&Pool> {
        self.pool
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("internal: a gate ran before the preview routing"))
    }

    /// Performs `steps` in order. When one fails, undoes what the run did (before the
    /// switch) or switches back (after it, when verification failed) and returns the error.
    pub async fn execute(&mut self, steps: &[Step]) -> Result<()> {
        for step in steps {
            let done = match self.interrupted_before(step.kind) {
                Err(e) => Err(e),
                Ok(()) => self.perform(step).await,
            };
            if let Err(e) = done {
                return Err(self.recover(e).await);
            }
        }
        Ok(())
    }

    fn interrupted_before(&self, kind: StepKind) -> Result<()> {
        if !kind.interruptible() {
            return Ok(());
        }
        let at = match (&self.switched, &self.target) {
            (Some(_), Some(t)) => format!("after the switch: {} is live", t.color),
            _ if kind.after_switch() => format!("before the {} step", kind.name()),
            _ => format!(
                "before the {} step; live traffic was not touched",
                kind.name()
            ),
        };
        crate::interrupt::check(&at)
    }

    /// One step: its start and end reported, its work done by the phase it belongs to.
    async fn perform(&mut self, step: &Step) -> Result<()> {
        let out = self.host.out;
        let name = step.kind.name();
        let t = Instant::now();
        out.step(name, &step.text);
        let done = match step.kind {
            StepKind::Pull => prepare::pull(self).await,
            StepKind::Network => prepare::network(self).await,
            StepKind::Lb => prepare::lb(self).await,
            StepKind::Prepare => prepare::prepare(self).await,
            StepKind::Tidy => candidate::tidy(self).await,
            StepKind::SetAside => candidate::set_aside(self).await,
            StepKind::Start => candidate::start(self).await,
            StepKind::StartParked => candidate::start_parked(self).await,
            StepKind::Preview => candidate::preview(self).await,
            StepKind::Readiness { passes } => gates::readiness(self, passes).await,
            StepKind::Warmup => gates::warmup(self).await,
            StepKind::Rehearse => rehearse::rehearse(self).await,
            StepKind::Migrate => gates::migrate(self).await,
            StepKind::Compatibility => gates::compatibility(self).await,
            StepKind::Smoke => gates::smoke(self).await,
            StepKind::Mirror => progressive::mirror(self).await,
            StepKind::Canary { share, judged } => progressive::canary(self, share, judged).await,
            StepKind::Drift => gates::drift(self).await,
            StepKind::Switch => switch::switch(self).await,
            StepKind::DropParked => candidate::drop_parked(self).await,
            StepKind::Verify => switch::verify(self).await,
            StepKind::Park => switch::park(self).await,
            StepKind::Reroute | StepKind::TlsReload => switch::reroute(self).await,
            StepKind::Discard => candidate::discard(self).await,
        };
        match done {
            Ok(message) => {
                out.done(name, &message, t.elapsed());
                Ok(())
            }
            Err(e) => {
                out.failed(name, &out.redact(&format!("{e:#}")), t.elapsed());
                Err(e)
            }
        }
    }

    /// A step failed with `e`: put things back as far as this run can, and say why it stopped.
    async fn recover(&mut self, e: anyhow::Error) -> anyhow::Error {
        if self.switched.is_none() {
            // A switch that could not be confirmed nor undone may leave nginx routing live
            // traffic to the candidate: nothing is removed, `bgd status` says what is live.
            if matches!(error::failure(&e), Some(Failure::Unsafe(_))) {
                return e;
            }
            // a canary share is installed (by this run, or before a `promote` or `canary N`
            // that failed a gate): all of live traffic back on the stable release
            let gated_canary = self.state.canary.is_some()
                && matches!(self.command, Command::Switch | Command::Canary(_));
            if self.canary_routed || gated_canary {
                let rejected = matches!(error::failure(&e), Some(Failure::Rejected(_)));
                return self.end_canary(e, rejected && gated_canary).await;
            }
            if let (Command::Deploy(_), true) = (&self.command, self.journal.active) {
                self.host
                    .out
                    .undoing(&self.host.out.redact(&format!("{e:#}")));
            }
            if self.undo.has_work() {
                candidate::undo(self).await;
            }
            return e;
        }
        // interrupted, or a switch that happened but could not be recorded: no switch back
        if error::is_interrupted(&e) || matches!(error::failure(&e), Some(Failure::Unsafe(_))) {
            return e;
        }
        match self.command {
            Command::Rollback => {
                let back_to = self
                    .target
                    .as_ref()
                    .map_or("it".into(), |t| t.color.to_string());
                error::unsafe_state(format!(
                    "rolled back to {back_to}, but it fails verification through lb.url: {e:#}\nCheck `bgd status`; `bgd rollback` again returns to the release you left"
                ))
            }
            Command::Deploy(_) | Command::Switch => switch::back_after_failed_verify(self, e).await,
            // nothing follows the reroute's install: its failures come before `switched`
            Command::Reroute | Command::Discard | Command::TlsReload | Command::Canary(_) => e,
        }
    }

    /// A step failed with `e` after a canary share was installed (`failed`: the canary broke
    /// its thresholds): a share still installed goes back to 0%, all of live traffic on the
    /// stable release. The candidate is never removed (it served live clients): it stays idle,
    /// `failed` marking it as the release that failed, which `switch` and `promote` refuse.
    pub async fn end_canary(&mut self, e: anyhow::Error, failed: bool) -> anyhow::Error {
        if self.state.canary.is_none() {
            return e;
        }
        let out = self.host.out;
        out.warn(&format!(
            "{}; sending all of live traffic back to the stable release",
            out.redact(&format!("{e:#}"))
        ));
        match switch::route_canary(self, None, failed).await {
            Ok(_) => e,
            Err(stop) => error::unsafe_state(format!(
                "{e:#}\nand ending the canary failed too: {stop:#}\nRun `bgd rollback` now (it sends the canary's share back to 0%), and check `bgd status`"
            )),
        }
    }

    /// Ends the run: records the outcome on the host (unless a routing exec already
    /// recorded this very outcome, or the run was refused) and releases the lock.
    pub async fn finish<T>(&mut self, result: &Result<T>) {
        let refused = result.as_ref().err().is_some_and(error::is_refused);
        let entry = self.journal.ended(result, self.host.out);
        if self.journal.active
            && !refused
            && (self.journal.recorded.as_ref() != Some(&entry.outcome) || self.journal.amended)
        {
            // unsafe: bgd does not know what nginx routes, so the state it holds may be wrong;
            // the state a routing exec recorded stays, and the history says what happened
            let unsafe_ = result
                .as_ref()
                .err()
                .is_some_and(|e| matches!(error::failure(e), Some(Failure::Unsafe(_))));
            // the run's last write releases its lock in the same exec
            if self.record(entry, !unsafe_).await {
                self.holder = None;
                self.lock = LockUse::None;
            }
        }
        if let Some(holder) = self.holder.take() {
            self.lock = LockUse::None;
            lock::release(self.host, &holder).await;
        }
    }

    /// Writes the state (with `with_state`) and the run's history line, atomically, under
    /// the lock (the fast rollback, which holds none, takes it for this write). It is the
    /// run's last write: a lock the run holds is released in the same exec. Returns whether
    /// it was.
    async fn record(&mut self, entry: HistoryEntry, with_state: bool) -> bool {
        let mut state = self.state.clone();
        state.updated_at = state::now();
        let lock = match (&self.lock, &self.holder) {
            (LockUse::None, None) => LockUse::Once(Holder::me("bgd rollback")),
            (LockUse::Held(token), Some(_)) => LockUse::Last(token.clone()),
            (lock, _) => lock.clone(),
        };
        let written = async {
            let write = RecordWrite {
                replace_untrusted: false,
                state: if with_state {
                    Some(state.to_record()?)
                } else {
                    None
                },
                history: serde_json::to_string(&entry)?,
                run: entry.run.clone(),
            };
            self.host
                .nginx()
                .record(&write, &lock)
                .await
                .map_err(|e| self.host.nginx_failure(e, "recording the outcome"))
        };
        match written.await {
            Ok(unlocked) => {
                self.journal.recorded = Some(entry.outcome);
                self.journal.amended = false;
                unlocked
            }
            Err(e) => {
                self.host.out.warn(&format!(
                    "could not record the outcome on the Docker host: {e:#}; `bgd status` shows what is live"
                ));
                false
            }
        }
    }

    /// The report of a run that made its target live.
    pub fn switch_report(&self) -> Result<SwitchReport> {
        Ok(SwitchReport {
            live: self.target()?.clone(),
            parked: self.old_live.clone(),
            generation: self.state.generation,
            switch_took: self.switched.as_ref().map_or(Duration::ZERO, |s| s.took),
            reloaded: self.switched.as_ref().is_none_or(|s| s.reloaded),
            window: self.journal.entry.switch_window.clone(),
            confirmed_in: self.confirmed_in,
            analysis: self.journal.entry.analysis.clone(),
        })
    }

    /// The report of a run that set a canary's share.
    pub fn canary_report(&self) -> Result<CanaryReport> {
        let stable = self
            .state
            .live
            .clone()
            .ok_or_else(|| anyhow::anyhow!("internal: a canary without a live release"))?;
        Ok(CanaryReport {
            candidate: self.target()?.clone(),
            stable,
            share: self.state.canary.as_ref().map_or(0, |c| c.share),
            generation: self.state.generation,
            window: self.journal.entry.switch_window.clone(),
        })
    }
}

impl Undo {
    pub fn has_work(&self) -> bool {
        !self.candidates.is_empty() || self.set_aside.is_some() || self.preview_installed
    }
}
