//! The steps bgd takes: their names, and the words that say what each will do. `plan`
//! decides which steps a command takes; `Run::execute` performs them in that order and
//! reports each one as it starts (with these words) and ends (the `step` events of
//! `--json`). `deploy --plan` prints the same list: a plan is the list rendered, never a
//! text written beside the engine.

use super::specs::{replica_specs, Freeing};
use crate::config::{Config, ParkMode};
use crate::model::{Color, Release};
use crate::output::fmt_duration;

/// What a step does. `name` is the `step` of its `--json` events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    /// pull the image (it is not on the Docker host)
    Pull,
    /// create the app network
    Network,
    /// create the nginx container, or connect it to the app network
    Lb,
    /// take the deploy lock, read the host and nginx's version
    Prepare,
    /// remove leftovers of killed runs; give the live release its own names back
    Tidy,
    /// rename the parked release aside while the candidate holds its color
    SetAside,
    /// create and start the candidate's replicas
    Start,
    /// start the replicas of a release parked stopped
    StartParked,
    /// route the preview listener to the release about to go live
    Preview,
    /// every replica passes readiness, one by one, this many times in a row
    Readiness { passes: u32 },
    /// requests to every candidate replica, after readiness (caches, JIT, pools)
    Warmup,
    /// the migration and both versions on a scratch copy of the data
    Rehearse,
    /// the migration hook
    Migrate,
    /// the live release still works after the migration
    Compatibility,
    /// the smoke probes through the preview listener
    Smoke,
    /// a share of live requests copied to the candidate, its answers judged against live's
    Mirror,
    /// a share of live clients on the candidate (0: none, the candidate idle); `judged`:
    /// then watched for `canary.step_for` and judged against the stable side
    Canary { share: u8, judged: bool },
    /// the candidate's containers are the ones the gates proved, and match bgd.yaml
    Drift,
    /// the validated, lossless switch, confirmed through the live listener
    Switch,
    /// remove the parked release set aside: the candidate holds its color for good
    DropParked,
    /// probe the new live color through the live listener for `switch.verify`
    Verify,
    /// stop the old color (park.mode: stopped)
    Park,
    /// route the live and idle releases to where their containers are now
    Reroute,
    /// the same routing, with the certificate bgd.yaml names now
    TlsReload,
    /// remove the waiting candidate; park again the release it set aside
    Discard,
}

impl StepKind {
    pub fn name(self) -> &'static str {
        match self {
            StepKind::Pull => "pull",
            StepKind::Network => "network",
            StepKind::Lb => "lb",
            StepKind::Prepare => "prepare",
            StepKind::Tidy => "tidy",
            StepKind::SetAside => "set-aside",
            StepKind::Start | StepKind::StartParked => "start",
            StepKind::Preview => "preview",
            StepKind::Readiness { .. } => "readiness",
            StepKind::Warmup => "warmup",
            StepKind::Rehearse => "rehearse",
            StepKind::Migrate => "migrate",
            StepKind::Compatibility => "compatibility",
            StepKind::Smoke => "smoke",
            StepKind::Mirror => "mirror",
            StepKind::Canary { .. } => "canary",
            StepKind::Drift => "drift",
            StepKind::Switch => "switch",
            StepKind::DropParked => "drop-parked",
            StepKind::Verify => "verify",
            StepKind::Park => "park",
            StepKind::Reroute => "reroute",
            StepKind::TlsReload => "tls-reload",
            StepKind::Discard => "discard",
        }
    }

    /// Whether a signal stops the run before this step. Letting the set-aside release go
    /// is not stopped: the candidate holds its color for good by then.
    pub fn interruptible(self) -> bool {
        self != StepKind::DropParked
    }

    /// Whether live traffic may already be on the new color when this step runs.
    pub fn after_switch(self) -> bool {
        matches!(
            self,
            StepKind::DropParked | StepKind::Verify | StepKind::Park
        )
    }
}

/// One step of a plan: what it is, and what it will do, in words an operator reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub kind: StepKind,
    pub text: String,
}

impl Step {
    pub fn new(kind: StepKind, text: impl Into<String>) -> Step {
        Step {
            kind,
            text: text.into(),
        }
    }
}

/// The words of each step, from what the plan knows.
impl Step {
    /// The words of `discard`, from the record.
    pub fn discard(candidate: &Release, set_aside: Option<&Release>) -> Step {
        Step::new(
            StepKind::Discard,
            match set_aside {
                Some(p) => format!(
                    "remove the candidate {} ({}, release {}); give the parked release {} ({}) its names back and route the preview listener to it: one validated reload, live traffic untouched",
                    candidate.color, candidate.image, candidate.release, p.release, p.image
                ),
                None => format!(
                    "remove the candidate {} ({}, release {}) and route the preview listener to nothing: one validated reload, live traffic untouched",
                    candidate.color, candidate.image, candidate.release
                ),
            },
        )
    }

    pub fn reroute(config: &Config) -> Step {
        Step::new(
            StepKind::Reroute,
            format!(
                "route live traffic to the live release's running replicas where they are now (and the preview listener to the idle one's): one validated reload, confirmed through {}",
                config.lb.url
            ),
        )
    }

    pub fn tls_reload(config: &Config) -> Step {
        Step::new(
            StepKind::TlsReload,
            format!(
                "serve the certificate bgd.yaml names, the routing unchanged: one validated reload, confirmed through {}",
                config.lb.url
            ),
        )
    }

    pub fn prepare(config: &Config) -> Step {
        let text = format!("take the deploy lock of {} and read the host", config.app);
        Step::new(StepKind::Prepare, text)
    }

    /// Leftovers to remove and live containers to rename, if any.
    pub fn tidy(freeing: &Freeing) -> Option<Step> {
        let mut parts = Vec::new();
        if !freeing.remove.is_empty() {
            parts.push(format!(
                "remove containers that are neither live nor parked (a candidate, or left by a killed run): {}",
                freeing.remove.join(", ")
            ));
        }
        if !freeing.rename.is_empty() {
            let renames: Vec<String> = freeing
                .rename
                .iter()
                .map(|(now, own)| format!("{now} -> {own}"))
                .collect();
            parts.push(format!(
                "give the live release its own names back: {}",
                renames.join(", ")
            ));
        }
        (!parts.is_empty()).then(|| Step::new(StepKind::Tidy, parts.join("; ")))
    }

    pub fn set_aside(freeing: &Freeing) -> Option<Step> {
        let (parked, aside) = freeing.set_aside.as_ref()?;
        let names: Vec<&str> = aside.iter().map(|a| a.now.as_str()).collect();
        Some(Step::new(
            StepKind::SetAside,
            format!(
                "set the parked release {} ({}) aside while the candidate is gated, still running: {} (it comes back if the candidate is rejected)",
                parked.release,
                parked.image,
                names.join(", ")
            ),
        ))
    }

    pub fn start(config: &Config, candidate: &Release) -> Step {
        let names: Vec<String> = replica_specs(config, candidate)
            .into_iter()
            .map(|s| s.name)
            .collect();
        Step::new(
            StepKind::Start,
            format!(
                "start {} {} replica(s) of {} (release {}): {}",
                names.len(),
                candidate.color,
                candidate.image,
                candidate.release,
                names.join(", ")
            ),
        )
    }

    pub fn start_parked(parked: &Release, stopped: &[String]) -> Step {
        Step::new(
            StepKind::StartParked,
            format!(
                "start the parked {} replicas: {}",
                parked.color,
                stopped.join(", ")
            ),
        )
    }

    pub fn preview(config: &Config, color: Color, what: &str) -> Step {
        Step::new(
            StepKind::Preview,
            format!(
                "route the preview listener (port {}, {}) to {what} ({color})",
                config.lb.preview_listen, config.lb.preview_url
            ),
        )
    }

    pub fn readiness(config: &Config, color: Color, passes: u32) -> Step {
        let r = &config.readiness;
        Step::new(
            StepKind::Readiness { passes },
            format!(
                "readiness of every {color} replica: GET {} answers {}, {passes} time(s) in a row, every {}, all within {}",
                r.path,
                r.expect_status,
                fmt_duration(r.interval),
                fmt_duration(r.deadline)
            ),
        )
    }

    /// The mirror, with `warmup.mirror` (said to be skipped when nothing live serves).
    pub fn mirror(config: &Config, color: Color, live_serves: bool) -> Option<Step> {
        let m = config.warmup.mirror.as_ref()?;
        let a = &m.analysis;
        Some(Step::new(
            StepKind::Mirror,
            if live_serves {
                format!(
                    "copy {}% of live {} requests to {color} for {} (nginx mirror; answers discarded), then judge its answers against live's: a 5xx rate more than {} point(s) above live's, or a p95 over {}x live's, rejects it",
                    m.share,
                    m.methods.join("/"),
                    fmt_duration(m.window),
                    a.max_error_increase,
                    a.max_latency_ratio
                )
            } else {
                "copy live requests to the candidate (warmup.mirror): skipped, nothing is live yet"
                    .to_string()
            },
        ))
    }

    /// One canary step: `share` percent of live clients on `color` (sticky by the bgd_canary
    /// cookie); judged, or not (a manual canary).
    pub fn canary(config: &Config, color: Color, share: u8, judged: bool) -> Step {
        let a = &config.canary.analysis;
        Step::new(
            StepKind::Canary { share, judged },
            match (share, judged) {
                (0, _) => format!(
                    "send all of live traffic to the stable color: one validated lossless reload; {color} stays idle as the candidate"
                ),
                (_, false) => format!(
                    "send {share}% of live clients to {color} (sticky by the bgd_canary cookie): one validated lossless reload; then `bgd canary N`, `bgd promote` or `bgd rollback`"
                ),
                (_, true) => format!(
                    "send {share}% of live clients to {color} for {} and judge it against the stable side: a 5xx rate more than {} point(s) above its, or a p95 over {}x its, sends all of live traffic back (exit 4)",
                    fmt_duration(config.canary.step_for),
                    a.max_error_increase,
                    a.max_latency_ratio
                ),
            },
        )
    }

    /// The warm-up, with `warmup.requests`.
    pub fn warmup(config: &Config, color: Color) -> Option<Step> {
        let w = &config.warmup;
        if w.requests.is_empty() {
            return None;
        }
        let each: Vec<String> = w
            .requests
            .iter()
            .map(|r| format!("{} {} x{}", r.method, r.path, r.count))
            .collect();
        Some(Step::new(
            StepKind::Warmup,
            format!(
                "warm up every {color} replica through the preview listener: {} each{}",
                each.join(", "),
                if w.must_pass {
                    "; a failed request rejects the candidate"
                } else {
                    "; failures are reported, not gating"
                }
            ),
        ))
    }

    /// The rehearsal, with `hooks.migrate.rehearse`: skipped (and said so) on a first deploy.
    pub fn rehearse(config: &Config, candidate: &Release, live: Option<&Release>) -> Option<Step> {
        let m = config.hooks.migrate.as_ref()?;
        let r = m.rehearse.as_ref()?;
        let Some(live) = live else {
            return Some(Step::new(
                StepKind::Rehearse,
                "skip the migration's rehearsal: nothing is live yet (a first deploy), so no old version must keep working".to_string(),
            ));
        };
        let mut copy = Vec::new();
        if !r.volumes.is_empty() {
            copy.push(format!(
                "copy the volume(s) {} to scratch volumes",
                r.volumes.join(", ")
            ));
        }
        if let Some(p) = &r.prepare {
            copy.push(format!(
                "run {:?} (live image) to make a scratch database",
                p.join(" ")
            ));
        }
        Some(Step::new(
            StepKind::Rehearse,
            format!(
                "rehearse the migration on a scratch copy before it touches shared data: {}; run the migration ({}) on it, then one replica of the live {} and one of the new {} on the migrated copy, each through readiness and the smoke probes; remove every scratch container and volume{} whatever happens",
                copy.join(" and "),
                candidate.image,
                live.image,
                candidate.image,
                r.cleanup
                    .as_ref()
                    .map_or(String::new(), |c| format!(" and run {:?}", c.join(" ")))
            ),
        ))
    }

    pub fn migrate(config: &Config, candidate: &Release) -> Option<Step> {
        let m = config.hooks.migrate.as_ref()?;
        Some(Step::new(
            StepKind::Migrate,
            format!(
                "run the migration {:?} in a one-off container {}-migrate from {} (limit {})",
                m.command.join(" "),
                config.app,
                candidate.image,
                fmt_duration(m.timeout)
            ),
        ))
    }

    pub fn compatibility(config: &Config, live: Color) -> Step {
        let what = if config.smoke.is_empty() {
            "readiness probe".to_string()
        } else {
            format!("{} smoke probe(s)", config.smoke.len())
        };
        Step::new(
            StepKind::Compatibility,
            format!(
                "check that {live} (live) still passes the {what} through {} after the migration",
                config.lb.url
            ),
        )
    }

    /// The smoke probes, when there are any.
    pub fn smoke(config: &Config) -> Option<Step> {
        if config.smoke.is_empty() {
            return None;
        }
        let probes: Vec<String> = config
            .smoke
            .iter()
            .map(|p| match p.target {
                crate::config::ProbeTarget::Live => {
                    format!("{} ({} {}, on the live color)", p.name, p.method, p.path)
                }
                crate::config::ProbeTarget::Candidate => {
                    format!("{} ({} {})", p.name, p.method, p.path)
                }
            })
            .collect();
        let on_live = config
            .smoke
            .iter()
            .any(|p| p.target == crate::config::ProbeTarget::Live);
        let through = if on_live {
            format!(
                "through the preview listener (the candidate; those on the live color through {})",
                config.lb.url
            )
        } else {
            "through the preview listener".to_string()
        };
        Some(Step::new(
            StepKind::Smoke,
            format!("smoke probes {through}: {}", probes.join(", ")),
        ))
    }

    pub fn drift(color: Color) -> Step {
        Step::new(
            StepKind::Drift,
            format!("check that {color}'s containers match bgd.yaml (drift), did not restart and kept their addresses"),
        )
    }

    /// `to` is "to" for a deploy or switch, "back to" for a rollback.
    pub fn switch(config: &Config, color: Color, to: &str) -> Step {
        Step::new(
            StepKind::Switch,
            format!(
                "switch live traffic {to} {color}: one validated reload (nginx -t, atomic swap, reload), no old nginx worker left (drain up to {}), confirmed through {}",
                fmt_duration(config.switch.drain),
                config.lb.url
            ),
        )
    }

    /// The switch by the active config's rollback flag: no reload.
    pub fn switch_by_flag(config: &Config, color: Color, to: &str) -> Step {
        Step::new(
            StepKind::Switch,
            format!(
                "switch live traffic {to} {color} by the rollback flag (one file in the nginx container; no reload, nothing to drain), confirmed through {}",
                config.lb.url
            ),
        )
    }

    /// The parked release set aside, let go once `color` is live (or the candidate's).
    pub fn drop_parked(freeing: &Freeing, color: Color) -> Option<Step> {
        let (parked, _) = freeing.set_aside.as_ref()?;
        Some(Step::drop_set_aside(parked, color))
    }

    /// Removing the parked release set aside in `color`, which is live now.
    pub fn drop_set_aside(parked: &Release, color: Color) -> Step {
        Step::new(
            StepKind::DropParked,
            format!(
                "remove the release {} ({}) that was parked in {color}: {color} is live now",
                parked.release, parked.image
            ),
        )
    }

    pub fn verify(config: &Config, color: Color, on_failure: &str) -> Step {
        Step::new(
            StepKind::Verify,
            format!(
                "verify {color} through {} for {}: smoke probes and readiness of every replica; on failure {on_failure}",
                config.lb.url,
                fmt_duration(config.switch.verify)
            ),
        )
    }

    /// Stopping the old color, with `park.mode: stopped`.
    pub fn park(config: &Config, old: &Release) -> Option<Step> {
        (config.park == ParkMode::Stopped).then(|| {
            Step::new(
                StepKind::Park,
                format!(
                    "park {} ({}): stop it after the drain (park.mode: stopped)",
                    old.color, old.image
                ),
            )
        })
    }
}
