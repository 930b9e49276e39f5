//! Deploying. Read in this order, which is the order a deploy runs in:
//!
//! - `host`: the adapters a command works through (`Host`)
//! - `observe`: the host -> `Observed` (containers by label, bgd's record, the active config)
//! - `plan`: pure, which steps a command takes, each said in words (`deploy --plan` prints
//!   this very list); `step` names them; `specs` are the pure container specs, pools and
//!   render input; `drift` compares containers with bgd.yaml
//! - `run`: `Run`, one command's state, and the executor of a plan's steps
//! - `prepare`, `candidate`, `gates`, `switch`: the steps, by phase
//! - `rollback`: the fast and full rollback; `lock`: the deploy lock; `status`: what status
//!   shows
//!
//! The commands in this file wire them: read, plan, execute, finish.

pub mod drift;
pub mod observe;
pub mod plan;
pub mod specs;
pub mod status;
pub mod step;

mod candidate;
pub mod drill;
mod gates;
mod host;
pub mod lock;
mod prepare;
mod progressive;
pub mod prune;
mod rehearse;
mod repair;
mod rollback;
pub mod routing;
mod run;
mod switch;
pub mod tls;

pub use host::Host;
pub use observe::{observe, Observed};
pub use plan::{DeployPlan, DeployRequest};
pub use repair::{repair, Repaired, NO_CONTAINER};
pub use rollback::{rollback, RolledBack};
pub use run::{CanaryReport, Deployed, SwitchReport};

use crate::model::Role;
use crate::nginx::render::Features;
use anyhow::Result;
use run::{Command, Run};
use step::Step;

/// `bgd deploy IMAGE`: the steps before the lock (image, network, nginx, `prepare`), then
/// the plan made from what `prepare` read under the lock. On failure before the switch the
/// candidate is removed and nginx routes live traffic as before; with `no_switch` it stops
/// after the gates and leaves the candidate on the preview listener.
pub async fn deploy(host: &Host<'_>, request: &DeployRequest) -> Result<Deployed> {
    let obs = Observed {
        lb: host.docker.inspect(&host.config.lb.container).await?,
        ..Default::default()
    };
    let (image_present, network_present) = tokio::try_join!(
        host.docker.image_present(&request.image),
        host.docker.network_exists(&host.config.network)
    )?;
    let facts = plan::Facts {
        image_present,
        network_present,
        obs: &obs,
        features: Features::ALL,
    };
    let (prelude, _) = plan::prelude(host.config, &request.image, &facts);
    let mut run = Run::new(host, Command::Deploy(request.clone()));
    let result = async {
        run.execute(&prelude).await?;
        plan::refuse_during_canary(&run.obs)?;
        let live_serves = run.live_pool.as_ref().is_some_and(|p| !p.servers.is_empty());
        if request.canary.is_some() && !live_serves {
            return Err(crate::error::refused(
                "--canary needs a live release with running replicas to share traffic with; deploy without --canary",
            ));
        }
        let candidate = run.target()?.clone();
        run.freeing = specs::free_idle_color(host.config, &run.obs, candidate.color);
        let steps = plan::deploy_steps(
            host.config,
            &run.obs,
            &candidate,
            &run.freeing,
            request.no_switch,
            request.canary,
        );
        run.execute(&steps).await?;
        if request.canary.is_some() {
            // the parked release stays aside, as with --no-switch
            run.state.set_aside = run.undo.set_aside.take().map(|a| a.release);
            return run.canary_report().map(Deployed::Canary);
        }
        if request.no_switch {
            // the parked release stays aside for `discard` (or `switch`, which removes it)
            run.state.set_aside = run.undo.set_aside.take().map(|a| a.release);
            let candidate = run.target()?.clone();
            run.journal.entry.message =
                format!("{} waits as the candidate (--no-switch)", candidate.color);
            return Ok(Deployed::Candidate {
                candidate,
                live: run.state.live.clone(),
                generation: run.state.generation,
            });
        }
        run.switch_report().map(Deployed::Switched)
    }
    .await;
    run.finish(&result).await;
    result
}

/// `bgd switch`: the candidate `deploy --no-switch` left is gated again (it waited for a
/// while: readiness, smoke, drift) and goes live with the same switch, verification and
/// parking as a deploy. The migration is not run again.
pub async fn switch(host: &Host<'_>) -> Result<SwitchReport> {
    let mut run = Run::new(host, Command::Switch);
    let result = async {
        run.execute(&[Step::prepare(host.config)]).await?;
        let candidate = plan::switch_target(&run.obs)?;
        run.set_target(candidate.clone());
        let steps = plan::switch(host.config, &run.obs, &candidate)?;
        run.execute(&steps).await?;
        run.switch_report()
    }
    .await;
    run.finish(&result).await;
    result
}

/// `bgd canary SHARE`: under the lock, the waiting candidate gets `share` percent of live
/// clients (0: none; it stays idle), in one validated, watched, recorded reload.
pub async fn canary(host: &Host<'_>, share: u8) -> Result<CanaryReport> {
    let mut run = Run::new(host, Command::Canary(share));
    let result = async {
        run.execute(&[Step::prepare(host.config)]).await?;
        let candidate = plan::canary_target(&run.obs, share)?;
        run.set_target(candidate.clone());
        let steps = plan::canary(host.config, &run.obs, &candidate, share)?;
        run.execute(&steps).await?;
        run.canary_report()
    }
    .await;
    run.finish(&result).await;
    result
}

/// What `bgd discard` did.
pub struct Discarded {
    pub candidate: crate::model::Release,
    /// The parked release given back, if the candidate had set one aside
    pub parked: Option<crate::model::Release>,
    pub generation: u64,
}

/// `bgd discard`: under the lock, the candidate `deploy --no-switch` left is removed and
/// the parked release it set aside is given back (`rollback` works again). Live traffic is
/// not touched. Refused (exit 2) when no candidate waits.
pub async fn discard(host: &Host<'_>) -> Result<Discarded> {
    let mut run = Run::new(host, Command::Discard);
    let result = async {
        run.execute(&[Step::prepare(host.config)]).await?;
        let candidate = plan::discard_target(&run.obs)?;
        run.set_target(candidate.clone());
        let step = Step::discard(&candidate, run.obs.state.set_aside.as_ref());
        run.execute(&[step]).await?;
        Ok(Discarded {
            candidate,
            parked: run.state.idle.as_ref().map(|i| i.release.clone()),
            generation: run.state.generation,
        })
    }
    .await;
    run.finish(&result).await;
    result
}

/// What `bgd reroute` did.
pub struct Rerouted {
    pub live: crate::model::Release,
    pub idle: Option<crate::state::Idle>,
    pub generation: u64,
    /// The running replicas of the live release nginx routes to now
    pub replicas: Vec<String>,
    /// What was wrong with the routing before (empty when nothing was)
    pub was: Vec<String>,
}

/// `bgd reroute`: under the lock, the same live and idle releases are routed again to
/// where their containers are now, in one validated reload, recorded and confirmed. Fixes
/// routing that went stale when containers restarted with other addresses (nginx < 1.27.3
/// routes by address).
pub async fn reroute(host: &Host<'_>) -> Result<Rerouted> {
    let mut run = Run::new(host, Command::Reroute);
    let result = async {
        run.execute(&[Step::prepare(host.config)]).await?;
        let found = status::routing(host, &run.obs).await?;
        let mut was = found.problems;
        was.extend(found.warnings);
        run.execute(&[Step::reroute(host.config)]).await?;
        let replicas = run
            .live_pool
            .as_ref()
            .map(|p| p.servers.iter().map(|s| s.name.clone()).collect())
            .unwrap_or_default();
        Ok(Rerouted {
            live: run.target()?.clone(),
            idle: run.state.idle.clone(),
            generation: run.state.generation,
            replicas,
            was,
        })
    }
    .await;
    run.finish(&result).await;
    result
}

/// `bgd tls reload`: what it applied.
#[derive(Debug, Clone)]
pub struct TlsReloaded {
    pub generation: u64,
    /// The certificate nginx presents now, and the one it presented before (None: the probe
    /// of `lb.url` saw none)
    pub now: Option<crate::tls::CertInfo>,
    pub before: Option<crate::tls::CertInfo>,
}

/// `bgd tls reload`: the routing as it is, with the certificate bgd.yaml names now, in one
/// validated lossless reload confirmed through `lb.url` (an expired certificate, or a key
/// that does not match, is refused before anything changes).
pub async fn tls_reload(host: &Host<'_>) -> Result<TlsReloaded> {
    let mut run = Run::new(host, Command::TlsReload);
    let result = async {
        if host.config.lb.tls.is_none() {
            return Err(crate::error::config(
                "bgd.yaml has no lb.tls: there is no certificate to reload",
            ));
        }
        run.execute(&[Step::prepare(host.config)]).await?;
        let before = tls::served(host).await;
        run.execute(&[Step::tls_reload(host.config)]).await?;
        Ok(TlsReloaded {
            generation: run.state.generation,
            now: tls::served(host).await,
            before,
        })
    }
    .await;
    run.finish(&result).await;
    result
}

/// `deploy --plan`'s answer.
#[derive(Debug, Clone)]
pub struct PlanReport {
    pub plan: DeployPlan,
    /// The config nginx has now, if bgd wrote one
    pub active: Option<String>,
    /// The config the deploy would leave active
    pub after: String,
}

/// What `deploy IMAGE` would do now (`deploy --plan`): read-only looks at the host, the
/// pure plan, and the nginx config the deploy would leave active. Touches nothing: no pull,
/// no network, no container, no lock, no history entry.
pub async fn plan(host: &Host<'_>, request: &DeployRequest) -> Result<PlanReport> {
    let (image_present, network_present, mut obs) = tokio::try_join!(
        host.docker.image_present(&request.image),
        host.docker.network_exists(&host.config.network),
        observe(host)
    )?;
    let features = host.features(&mut obs).await?;
    let facts = plan::Facts {
        image_present,
        network_present,
        obs: &obs,
        features,
    };
    let plan = plan::deploy(
        host.config,
        request,
        &crate::state::new_release_id(),
        &facts,
    );
    let after = host.render(&plan.nginx_after)?;
    Ok(PlanReport {
        plan,
        active: obs.active_config.clone(),
        after,
    })
}

/// The config bgd would write now (for `bgd render`), without touching anything.
pub async fn render_now(host: &Host<'_>) -> Result<String> {
    let mut obs = observe(host).await?;
    let features = host.features(&mut obs).await?;
    let config = host.config;
    let live = obs.live_pool(config);
    let idle = obs
        .state
        .idle
        .as_ref()
        .map(|i| obs.pool(config, &i.release));
    let role = obs.state.idle.as_ref().map_or(Role::Parked, |i| i.role);
    host.render(&specs::render_input(
        config,
        obs.generation(),
        live.as_ref(),
        idle.as_ref().map(|p| (p, role)),
        features,
        obs.state.canary.as_ref().map(|c| c.share),
    ))
}
