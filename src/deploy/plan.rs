//! Pure decisions about what a command will do: which steps, in which order, each said in
//! words. `deploy`, `switch` and `rollback` execute exactly these lists; `deploy --plan` prints
//! them. No I/O: what the host looks like comes in as `Observed` and `Facts`.

use super::observe::Observed;
use super::specs::{free_idle_color, render_input, replica_specs, Freeing};
use super::step::{Step, StepKind};
use crate::config::{Config, ParkMode, PullPolicy};
use crate::docker::ContainerSpec;
use crate::error;
use crate::model::{Color, Pool, Release, Role, Server};
use crate::nginx::render::{Features, RenderInput};
use anyhow::Result;

/// What `bgd deploy` was asked to do.
#[derive(Debug, Clone)]
pub struct DeployRequest {
    pub image: String,
    /// stop after the gates; the candidate waits on the preview listener
    pub no_switch: bool,
    /// `--canary N`: after the gates, N percent of live clients on the candidate, which then
    /// waits for `bgd canary`, `bgd promote` or `bgd rollback`
    pub canary: Option<u8>,
}

/// What a deploy would meet on the host, read without changing anything.
pub struct Facts<'a> {
    pub image_present: bool,
    pub network_present: bool,
    pub obs: &'a Observed,
    /// What nginx can do (assumed whole when its container does not run)
    pub features: Features,
}

/// `deploy --plan`'s answer: the steps and what they would create, remove and write.
#[derive(Debug, Clone)]
pub struct DeployPlan {
    pub target: Color,
    /// The situation the plan starts from, and what happens around the steps
    pub notes: Vec<String>,
    pub steps: Vec<Step>,
    /// Reasons the deploy would stop or misbehave as things stand
    pub warnings: Vec<String>,
    pub create: Vec<ContainerSpec>,
    pub remove: Vec<String>,
    /// The config after the deploy; the new replicas' addresses are placeholders
    /// (`<name>:port`), as Docker assigns them when they start.
    pub nginx_after: RenderInput,
}

/// The steps before the deploy holds the lock: the image, the network, nginx, then `prepare`
/// (lock and read). Also the warnings about what would stop it.
pub fn prelude(config: &Config, image: &str, facts: &Facts) -> (Vec<Step>, Vec<String>) {
    let (lb, obs) = (&config.lb, facts.obs);
    let mut steps = Vec::new();
    let mut warnings = Vec::new();
    if !facts.image_present {
        steps.push(Step::new(
            StepKind::Pull,
            format!("pull {image} (it is not on the Docker host)"),
        ));
    } else if config.pull.policy == PullPolicy::Always {
        steps.push(Step::new(
            StepKind::Pull,
            format!("pull {image} (pull.policy: always)"),
        ));
    }
    if !facts.network_present {
        steps.push(Step::new(
            StepKind::Network,
            format!("create the network {}", config.network),
        ));
    }
    match (&obs.lb, &lb.image) {
        (Some(c), _) if !c.running() => warnings.push(format!(
            "the nginx container {} is {}: the deploy would stop with exit 6 until it is started",
            c.name, c.state
        )),
        (Some(c), _) if c.ip_on(&config.network).is_none() => steps.push(Step::new(
            StepKind::Lb,
            format!(
                "connect the nginx container {} to the network {}",
                c.name, config.network
            ),
        )),
        (Some(_), _) => {}
        (None, Some(img)) => steps.push(Step::new(
            StepKind::Lb,
            format!(
                "create the nginx container {} from {img} on {}, publishing {}",
                lb.container,
                config.network,
                published(config)
            ),
        )),
        (None, None) => warnings.push(format!(
            "there is no nginx container {} and lb.image is not set: the deploy would stop with exit 6",
            lb.container
        )),
    }
    if obs.lock.is_held() {
        warnings.push(format!(
            "the deploy lock is held by {}: the deploy would wait (--lock-wait) or exit 5",
            obs.lock.describe()
        ));
    }
    steps.push(Step::prepare(config));
    (steps, warnings)
}

fn published(config: &Config) -> String {
    let all: Vec<String> = config
        .lb
        .publish
        .iter()
        .map(|p| {
            format!(
                "{}{}{}",
                p.host_ip
                    .as_deref()
                    .map_or(String::new(), |ip| format!("{ip}:")),
                p.host_port.map_or(String::new(), |hp| format!("{hp}:")),
                p.container_port
            )
        })
        .collect();
    if all.is_empty() {
        "nothing".to_string()
    } else {
        all.join(", ")
    }
}

/// The color a deploy starts its candidate in: the one that is not live.
pub fn target_color(obs: &Observed) -> Color {
    obs.state
        .live
        .as_ref()
        .map_or(Color::Blue, |l| l.color.other())
}

/// The steps of a deploy once it holds the lock, for `candidate` (its color is the target),
/// the idle color freed as `freeing` says.
pub fn deploy_steps(
    config: &Config,
    obs: &Observed,
    candidate: &Release,
    freeing: &Freeing,
    no_switch: bool,
    canary: Option<u8>,
) -> Vec<Step> {
    let target = candidate.color;
    let live = obs.state.live.as_ref();
    let live_pool = obs.live_pool(config);
    let mut steps: Vec<Step> = Step::tidy(freeing).into_iter().collect();
    steps.extend(Step::set_aside(freeing));
    steps.push(Step::start(config, candidate));
    steps.push(Step::preview(config, target, "the candidate"));
    steps.push(Step::readiness(config, target, config.readiness.successes));
    steps.extend(Step::rehearse(config, candidate, live));
    steps.extend(Step::migrate(config, candidate));
    // the old version against the migrated schema, when one serves
    let live_serves = live_pool.as_ref().is_some_and(|p| !p.servers.is_empty());
    if let (Some(_), Some(l), true) = (&config.hooks.migrate, live, live_serves) {
        steps.push(Step::compatibility(config, l.color));
    }
    steps.extend(Step::warmup(config, target));
    steps.extend(Step::smoke(config));
    steps.extend(Step::mirror(config, target, live_serves));
    steps.push(Step::drift(target));
    let drop_parked = Step::drop_parked(freeing, target);
    if no_switch {
        // the parked release stays set aside: `discard` gives it back, `switch` removes it
        return steps;
    }
    if let Some(share) = canary {
        // a manual canary: the candidate then waits, sharing live traffic
        steps.push(Step::canary(config, target, share, false));
        return steps;
    }
    // an automatic canary, with a live release to share traffic with
    let mut canary_steps = false;
    if live_serves {
        for &share in config.canary.steps.iter().filter(|&&s| s < 100) {
            steps.push(Step::canary(config, target, share, true));
            canary_steps = true;
        }
    }
    steps.push(candidate_switch(
        config,
        target,
        live_serves && !canary_steps,
    ));
    steps.extend(drop_parked);
    let on_failure = after_failed_verify(config, live_pool.as_ref()).describe();
    steps.push(Step::verify(config, target, &on_failure));
    steps.extend(live.and_then(|l| Step::park(config, l)));
    steps
}

/// What a failed verification after the switch leads to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AfterFailedVerify {
    /// switch back to the previous live color (exit 4)
    SwitchBack(Color),
    /// stop with exit 7, for this reason
    Stop(&'static str),
}

/// Switching back needs `switch.auto_rollback` and a previous live color that still runs.
pub fn after_failed_verify(config: &Config, old_live: Option<&Pool>) -> AfterFailedVerify {
    match old_live {
        None => AfterFailedVerify::Stop("nothing to go back to"),
        Some(p) if p.servers.is_empty() => {
            AfterFailedVerify::Stop("the previous release has no running replicas")
        }
        Some(_) if !config.switch.auto_rollback => AfterFailedVerify::Stop(
            "switch.auto_rollback is off: the message gives the rollback command",
        ),
        Some(p) => AfterFailedVerify::SwitchBack(p.color),
    }
}

impl AfterFailedVerify {
    pub fn describe(self) -> String {
        match self {
            AfterFailedVerify::SwitchBack(c) => format!("switch back to {c} (exit 4)"),
            AfterFailedVerify::Stop(why) => format!("stop with exit 7 ({why})"),
        }
    }
}

/// What is live and what is idle, in one line.
pub fn situation(obs: &Observed) -> String {
    let live = match &obs.state.live {
        Some(l) => format!("{} ({}, release {}) is live", l.color, l.image, l.release),
        None => "nothing is live yet".to_string(),
    };
    let idle = match &obs.state.idle {
        Some(i) => format!(
            "{} ({}, release {}) is {}",
            i.release.color,
            i.release.image,
            i.release.release,
            match i.role {
                Role::Parked => "parked",
                Role::Candidate => "the waiting candidate",
            }
        ),
        None => "nothing is idle".to_string(),
    };
    format!("{live}; {idle}")
}

/// The whole plan of `deploy IMAGE` on a host, as `deploy --plan` shows it.
pub fn deploy(
    config: &Config,
    request: &DeployRequest,
    release_id: &str,
    facts: &Facts,
) -> DeployPlan {
    let obs = facts.obs;
    let target = target_color(obs);
    let candidate = Release {
        color: target,
        image: request.image.clone(),
        release: release_id.to_string(),
    };
    let freeing = free_idle_color(config, obs, target);
    let (mut steps, warnings) = prelude(config, &request.image, facts);
    steps.extend(deploy_steps(
        config,
        obs,
        &candidate,
        &freeing,
        request.no_switch,
        request.canary,
    ));
    let mut notes = vec![format!("now: {}", situation(obs))];
    let live = obs.state.live.as_ref();
    notes.push(match live {
        Some(l) => format!(
            "if a step before the switch fails, the candidate is removed, a parked release set aside comes back under its own names, and live traffic stays on {}",
            l.color
        ),
        None => "if a step fails, the candidate is removed".to_string(),
    });
    if request.no_switch {
        notes.push(format!(
            "--no-switch: {target} then waits as the candidate on the preview listener; `bgd switch` promotes it"
        ));
    } else if let Some(share) = request.canary {
        notes.push(format!(
            "--canary {share}: {target} then takes {share}% of live clients; `bgd canary N` changes the share, `bgd promote` makes it live for all, `bgd rollback` sends its share back to 0%"
        ));
    } else if let (Some(l), ParkMode::Running) = (live, config.park) {
        notes.push(format!(
            "park {} ({}): it keeps running, `bgd rollback` returns to it",
            l.color, l.image
        ));
    }
    notes.push("the outcome is recorded in the history on the Docker host".to_string());

    let mut remove = freeing.remove.clone();
    // the parked release goes once the candidate is live; with --no-switch it stays aside
    if !request.no_switch {
        remove.extend(
            freeing
                .set_aside
                .iter()
                .flat_map(|(_, aside)| aside.iter().map(|a| a.now.clone())),
        );
    }
    let create = replica_specs(config, &candidate);
    let placeholder = Pool {
        color: target,
        release: release_id.to_string(),
        servers: create
            .iter()
            .enumerate()
            .map(|(i, spec)| Server {
                replica: i as u32 + 1,
                name: spec.name.clone(),
                addr: format!("<{}>:{}", spec.name, config.container.port),
                dns: spec
                    .aliases
                    .first()
                    .map(|a| format!("{a}:{}", config.container.port)),
            })
            .collect(),
    };
    let live_pool = obs.live_pool(config);
    let generation = obs.generation();
    let kmt = facts.features;
    let nginx_after = if request.no_switch || request.canary.is_some() {
        // a canary's share is one more install after the preview's
        let preview = Some((&placeholder, Role::Candidate));
        render_input(
            config,
            generation + 1 + u64::from(request.canary.is_some()),
            live_pool.as_ref(),
            preview,
            kmt,
            request.canary,
        )
    } else {
        let parked = live_pool.as_ref().map(|p| (p, Role::Parked));
        render_input(
            config,
            generation + 2,
            Some(&placeholder),
            parked,
            kmt,
            None,
        )
    };
    DeployPlan {
        target,
        notes,
        steps,
        warnings,
        create,
        remove,
        nginx_after,
    }
}

/// The candidate `bgd switch` promotes; refused when none waits.
pub fn switch_target(obs: &Observed) -> Result<Release> {
    if let (Some(i), true) = (&obs.state.idle, obs.state.candidate_failed) {
        return Err(error::refused(format!(
            "not switching to {} ({}): it failed verification after its switch and traffic was switched back; inspect it on the preview listener, then deploy a fixed release (`bgd discard` removes it)",
            i.release.color, i.release.image
        )));
    }
    let Some(candidate) = obs
        .state
        .idle
        .clone()
        .filter(|i| i.role == Role::Candidate)
        .map(|i| i.release)
    else {
        let why = match &obs.state.idle {
            Some(i) => format!(
                "the idle color {} holds the parked release {} ({}); `bgd rollback` sends traffic to it",
                i.release.color, i.release.release, i.release.image
            ),
            None => "no candidate is waiting (`bgd deploy --no-switch IMAGE` leaves one)".into(),
        };
        return Err(error::refused(format!("nothing to switch to: {why}")));
    };
    Ok(candidate)
}

/// The steps of `bgd switch` once it holds the lock: the waiting candidate is gated again and
/// promoted. Refused when its containers are gone; rejected when they stopped.
pub fn switch(config: &Config, obs: &Observed, candidate: &Release) -> Result<Vec<Step>> {
    let containers = obs.containers_of(candidate);
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
    let target = candidate.color;
    let mut steps = vec![
        Step::preview(config, target, "the candidate"),
        Step::readiness(config, target, config.readiness.successes),
    ];
    steps.extend(Step::smoke(config));
    steps.push(Step::drift(target));
    // a canary's promotion reloads: its config has no flag
    let live_serves = obs.live_pool(config).is_some_and(|p| !p.servers.is_empty());
    steps.push(candidate_switch(
        config,
        target,
        live_serves && obs.state.canary.is_none(),
    ));
    if let Some(aside) = obs.state.set_aside.as_ref() {
        steps.push(Step::drop_set_aside(aside, target));
    }
    let on_failure = after_failed_verify(config, obs.live_pool(config).as_ref()).describe();
    steps.push(Step::verify(config, target, &on_failure));
    steps.extend(obs.state.live.as_ref().and_then(|l| Step::park(config, l)));
    Ok(steps)
}

/// A deploy while a canary runs would replace the candidate that serves live clients.
pub fn refuse_during_canary(obs: &Observed) -> Result<()> {
    match (&obs.state.canary, &obs.state.idle) {
        (Some(c), Some(i)) => Err(error::refused(format!(
            "a canary runs: {} ({}) takes {}% of live clients. Promote it (`bgd promote`) or send its share back to 0% (`bgd rollback`) before deploying",
            i.release.color, i.release.image, c.share
        ))),
        _ => Ok(()),
    }
}

/// The candidate whose canary share `bgd canary SHARE` sets (the idle candidate, not one
/// that failed, beside a live release); refused otherwise.
pub fn canary_target(obs: &Observed, share: u8) -> Result<Release> {
    if obs.state.live.is_none() {
        return Err(error::refused(
            "no canary without a live release: nothing serves live traffic to share",
        ));
    }
    if share == 0 && obs.state.canary.is_none() {
        return Err(error::refused(
            "no canary runs: all of live traffic is on the live release already",
        ));
    }
    if share > 0 {
        if let (Some(i), true) = (&obs.state.idle, obs.state.candidate_failed) {
            return Err(error::refused(format!(
                "not sending live traffic to {} ({}): it failed (its canary analysis, or verification after its switch); deploy a fixed release (`bgd discard` removes it)",
                i.release.color, i.release.image
            )));
        }
    }
    match obs.state.idle.as_ref() {
        Some(i) if i.role == Role::Candidate => Ok(i.release.clone()),
        Some(i) => Err(error::refused(format!(
            "no candidate waits: the idle color {} holds the parked release {} ({}). Start a canary with `bgd deploy --canary N IMAGE`",
            i.release.color, i.release.release, i.release.image
        ))),
        None => Err(error::refused(
            "no candidate waits: start a canary with `bgd deploy --canary N IMAGE`",
        )),
    }
}

/// The steps of `bgd canary SHARE` once it holds the lock: the candidate routed on the
/// preview listener, a readiness pass (unless the share goes to 0) and the new share.
pub fn canary(
    config: &Config,
    obs: &Observed,
    candidate: &Release,
    share: u8,
) -> Result<Vec<Step>> {
    let containers = obs.containers_of(candidate);
    let down: Vec<String> = containers
        .iter()
        .filter(|c| !c.running())
        .map(|c| format!("{} is {}", c.name, c.state))
        .collect();
    if share > 0 && (containers.is_empty() || !down.is_empty()) {
        return Err(error::rejected(format!(
            "the candidate {} ({}) is not running ({}); live traffic was not changed. Start its containers (docker start), or drop it: {}`bgd discard`",
            candidate.color,
            candidate.image,
            if down.is_empty() {
                "its containers are gone".to_string()
            } else {
                down.join(", ")
            },
            if obs.state.canary.is_some() {
                "`bgd rollback` (its share to 0%), then "
            } else {
                ""
            }
        )));
    }
    let target = candidate.color;
    // ending a canary must work whatever became of the candidate's containers: no preview
    // routing, no readiness, just all of live traffic on the stable release
    if share == 0 {
        return Ok(vec![Step::canary(config, target, 0, false)]);
    }
    Ok(vec![
        Step::preview(config, target, "the candidate"),
        Step::readiness(config, target, 1),
        Step::canary(config, target, share, false),
    ])
}

/// The candidate `bgd discard` removes; refused when none waits, and while it takes a share
/// of live clients (a canary).
pub fn discard_target(obs: &Observed) -> Result<Release> {
    if let (Some(c), Some(i)) = (&obs.state.canary, &obs.state.idle) {
        return Err(error::refused(format!(
            "not discarding {} ({}): it takes {}% of live clients as a canary. `bgd rollback` first sends its share back to 0%",
            i.release.color, i.release.image, c.share
        )));
    }
    match obs.state.idle.as_ref() {
        Some(i) if i.role == Role::Candidate => Ok(i.release.clone()),
        Some(i) => Err(error::refused(format!(
            "nothing to discard: no candidate waits; the idle color {} holds the parked release {} ({}), which `bgd rollback` returns to",
            i.release.color, i.release.release, i.release.image
        ))),
        None => Err(error::refused(
            "nothing to discard: no candidate waits (`bgd deploy --no-switch IMAGE` leaves one)",
        )),
    }
}

/// The parked release a rollback returns to; refused when there is none.
pub fn rollback_target(obs: &Observed) -> Result<Release> {
    let Some(parked) = obs.state.idle.clone().filter(|i| i.role == Role::Parked) else {
        let why = match &obs.state.idle {
            Some(i) if obs.state.candidate_failed => format!(
                "the idle color {} holds the release that failed verification ({}); traffic is already back on the release before it. `bgd discard` removes the failed one; the release parked before that deploy is gone",
                i.release.color, i.release.image
            ),
            Some(i) => format!(
                "the idle color {} holds a candidate ({}), not a parked release; `bgd switch` promotes it, {}",
                i.release.color,
                i.release.image,
                match &obs.state.set_aside {
                    Some(p) => format!(
                        "`bgd discard` removes it and gives back the parked release {} ({}), to roll back to",
                        p.release, p.image
                    ),
                    None => "`bgd discard` removes it, the next deploy replaces it".to_string(),
                }
            ),
            None => "no release is parked".to_string(),
        };
        return Err(error::refused(format!("nothing to roll back to: {why}")));
    };
    Ok(parked.release)
}

/// The steps of `bgd rollback` to `parked` once it holds the lock (the full path). Refused
/// when its containers are gone.
pub fn rollback(
    config: &Config,
    obs: &Observed,
    parked: &Release,
    verify: bool,
) -> Result<Vec<Step>> {
    let containers = obs.containers_of(parked);
    if containers.is_empty() {
        return Err(error::refused(format!(
            "nothing to roll back to: the parked {} containers of release {} are gone",
            parked.color, parked.release
        )));
    }
    let stopped: Vec<String> = containers
        .iter()
        .filter(|c| !c.running())
        .map(|c| c.name.clone())
        .collect();
    let mut steps = Vec::new();
    if !stopped.is_empty() {
        steps.push(Step::start_parked(parked, &stopped));
    }
    steps.push(Step::preview(config, parked.color, "the parked release"));
    steps.extend(rollback_switch(
        config,
        parked,
        obs.state.live.as_ref(),
        verify,
        false,
    ));
    Ok(steps)
}

/// The switch to a candidate the preview listener routes to: by the rollback flag when the
/// preview config routes live traffic by one (the built-in template does while a live
/// release serves beside the candidate, nothing else routed), else a validated reload. The
/// switch itself asks nginx (`/__bgd`) and reloads when the flag is not there.
fn candidate_switch(config: &Config, target: Color, live_serves: bool) -> Step {
    if live_serves && config.lb.template.is_none() {
        Step::switch_by_flag(config, target, "to")
    } else {
        Step::switch(config, target, "to")
    }
}

/// The rollback's switch and what follows it: one readiness pass over the parked replicas,
/// the switch (`by_flag`: by the active config's rollback flag), parking the old color,
/// verification on request. The fast path is only these.
pub fn rollback_switch(
    config: &Config,
    parked: &Release,
    old_live: Option<&Release>,
    verify: bool,
    by_flag: bool,
) -> Vec<Step> {
    let switch = if by_flag {
        Step::switch_by_flag(config, parked.color, "back to")
    } else {
        Step::switch(config, parked.color, "back to")
    };
    let mut steps = vec![Step::readiness(config, parked.color, 1), switch];
    steps.extend(old_live.and_then(|l| Step::park(config, l)));
    if verify {
        steps.push(Step::verify(config, parked.color, "stop with exit 7"));
    }
    steps
}
