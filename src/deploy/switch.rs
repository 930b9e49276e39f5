//! The switch and what follows it: one validated, lossless reload that makes the target live
//! and records the new state in the same exec, confirmed through the live listener;
//! verification through the live listener; switching back when verification fails; parking
//! the old color.

use super::gates::{misrouted, smoke_probes};
use super::plan::{after_failed_verify, AfterFailedVerify};
use super::run::Run;
use super::specs::render_input;
use crate::config::ParkMode;
use crate::error::{self, Failure};
use crate::model::{Pool, Role};
use crate::nginx::{Installed, LockUse};
use crate::output::fmt_duration;
use crate::probe::Expect;
use crate::state::{self, AppState, Idle};
use anyhow::Result;
use std::time::Instant;

/// What nginx routes: the live pool, and the idle one on the preview listener with its role.
#[derive(Debug, Clone, Default)]
pub struct Routing {
    pub live: Option<Pool>,
    pub preview: Option<(Pool, Role)>,
}

/// `switch`: live traffic goes to the target; the old live color becomes the preview
/// listener's (parked). The same exec records the new state and the history entry.
pub async fn switch(run: &mut Run<'_>) -> Result<String> {
    let target = run.target()?.color;
    let pool = run.pool()?.clone();
    let old = run.live_pool.clone();
    run.journal.entry.message = format!("{target} live");
    let to = Routing {
        live: Some(pool.clone()),
        preview: old.clone().map(|p| (p, Role::Parked)),
    };
    let idle_role = run.state.idle.as_ref().map_or(Role::Parked, |i| i.role);
    let back = Routing {
        live: old,
        preview: Some((pool, idle_role)),
    };
    let installed = switch_live(run, to, back, "the switch", true).await?;
    run.switched = Some(installed);
    // a fast rollback took the lock for the switch's exec alone
    if let LockUse::Once(_) = run.lock {
        run.lock = LockUse::None;
    }
    Ok(format!(
        "live traffic on {target} (generation {})",
        run.state.generation
    ))
}

/// Installs `to` (generation + 1), recording the state after it (and, with `record`, the
/// history entry) in the same exec, and confirms through `lb.url` that the new color and
/// generation serve. If nginx took the config but `lb.url` does not show it, `back` is
/// installed again: exit 6, or 7 when that fails as well.
async fn switch_live(
    run: &mut Run<'_>,
    to: Routing,
    back: Routing,
    what: &str,
    record: bool,
) -> Result<Installed> {
    let host = run.host;
    run.state.generation += 1;
    let text = render(run, &to)?;
    let after = state_after(&run.state, &to);
    let record = if record {
        let entry = run.journal.entry_now();
        Some((
            serde_json::to_string(&after)?,
            serde_json::to_string(&entry)?,
        ))
    } else {
        None
    };
    let recording = record.is_some();
    let installed = host.install(&text, what, record, &run.lock).await?;
    run.journal.recorded |= recording;
    let live_color = to.live.as_ref().map(|p| p.color);
    let Err(unconfirmed) = host.confirm_live(live_color, run.state.generation).await else {
        run.state = after;
        return Ok(installed);
    };
    run.state.generation += 1;
    let restored = async {
        let text = render(run, &back)?;
        host.install(
            &text,
            "restoring the routing before the switch",
            None,
            &run.lock,
        )
        .await?;
        let back_color = back.live.as_ref().map(|p| p.color);
        host.confirm_live(back_color, run.state.generation).await
    }
    .await;
    match restored {
        Ok(()) => Err(unconfirmed.context(format!(
            "{what} was undone: the previous routing is active again"
        ))),
        Err(e) => Err(error::unsafe_state(format!(
            "{unconfirmed:#}\nrestoring the previous routing also failed: {e:#}\nCheck `bgd status` and `docker logs {}` now",
            host.config.lb.container
        ))),
    }
}

fn render(run: &Run<'_>, routing: &Routing) -> Result<String> {
    let preview = routing.preview.as_ref().map(|(p, role)| (p, *role));
    run.host.render(&render_input(
        run.host.config,
        run.state.generation,
        routing.live.as_ref(),
        preview,
        run.kmt,
    ))
}

/// The record after `to` is in effect: the idle release of the new live color goes live,
/// the live one becomes idle with the preview's role.
fn state_after(state: &AppState, to: &Routing) -> AppState {
    let mut after = state.clone();
    let live_color = to.live.as_ref().map(|p| p.color);
    if let Some(idle) = state
        .idle
        .as_ref()
        .filter(|i| Some(i.release.color) == live_color)
    {
        after.live = Some(idle.release.clone());
        after.idle = state.live.clone().map(|release| Idle {
            release,
            role: to.preview.as_ref().map_or(Role::Parked, |(_, role)| *role),
        });
    }
    after.updated_at = state::now();
    after
}

/// `verify`: for `switch.verify`, rounds of the smoke probes through `lb.url` and a readiness
/// probe of every live replica, `readiness.interval` apart (one round when `verify` is 0).
/// Every answer must come from the new live color. Any failure is the verdict.
pub async fn verify(run: &mut Run<'_>) -> Result<String> {
    let (host, config) = (run.host, run.host.config);
    let pool = run.pool()?.clone();
    let (window, r) = (config.switch.verify, &config.readiness);
    let t = Instant::now();
    let mut rounds = 0;
    loop {
        smoke_probes(run, &config.lb.url, pool.color, "live").await?;
        for server in &pool.servers {
            let verdict = host
                .prober
                .probe_replica(
                    &config.lb.preview_url,
                    &r.path,
                    (pool.color, server),
                    r.timeout,
                )
                .await;
            let expect = Expect {
                status: std::slice::from_ref(&r.expect_status),
                color: Some(pool.color),
                upstream: Some(&server.addr),
                ..Default::default()
            };
            verdict.check(&expect).map_err(|why| {
                let hint = misrouted(&verdict, pool.color);
                error::rejected(format!(
                    "live replica {}: {}: {why}{hint}",
                    server.name, r.path
                ))
            })?;
        }
        rounds += 1;
        crate::interrupt::check(&format!("after the switch: {} is live", pool.color))?;
        if t.elapsed() + r.interval > window {
            break;
        }
        tokio::time::sleep(r.interval).await;
    }
    Ok(format!(
        "{} verified through the live listener ({rounds} rounds)",
        pool.color
    ))
}

/// Post-switch verification failed: with `auto_rollback` and an old color that runs, switch
/// back (exit 4); otherwise say exactly what to run (exit 7).
pub async fn back_after_failed_verify(run: &mut Run<'_>, why: anyhow::Error) -> anyhow::Error {
    let host = run.host;
    let old = run.live_pool.clone();
    let pool = run.pool().cloned();
    let (AfterFailedVerify::SwitchBack(old_color), Some(old), Ok(pool)) =
        (after_failed_verify(host.config, old.as_ref()), old, pool)
    else {
        return error::unsafe_state(format!(
            "the switch happened but verification through lb.url failed: {why:#}\n{}",
            if run.live_pool.is_some() {
                "Roll back with: bgd rollback"
            } else {
                "There is no previous release to go back to; deploy a fixed image"
            }
        ));
    };
    host.out.warn(&format!(
        "verification after the switch failed: {why:#}; switching back"
    ));
    let to = Routing {
        live: Some(old.clone()),
        preview: Some((pool.clone(), Role::Candidate)),
    };
    let back = Routing {
        live: Some(pool),
        preview: Some((old, Role::Parked)),
    };
    // The failed release stays as the idle candidate for inspection on the preview listener.
    if let Err(e) = switch_live(run, to, back, "switching back", false).await {
        return error::unsafe_state(format!(
            "switching back failed: {e:#}\nRun `bgd status`, then `bgd rollback`"
        ));
    }
    Failure::RolledBack(format!(
        "verification after the switch failed, traffic is back on {old_color}: {why:#}"
    ))
    .into()
}

/// `park`: with `park.mode: stopped`, the old color is stopped after the drain, honouring
/// `container.stop_timeout`. A container that cannot be stopped is a warning, not a failure:
/// the switch is done.
pub async fn park(run: &mut Run<'_>) -> Result<String> {
    let (host, config) = (run.host, run.host.config);
    let Some(old) = run.old_live.clone() else {
        return Ok("nothing to park".into());
    };
    if config.park != ParkMode::Stopped {
        return Ok(format!("parked {} (running)", old.color));
    }
    // by id: a deploy may have renamed them since they were read (tidy)
    let containers: Vec<(String, String)> = run
        .obs
        .containers_of(&old)
        .iter()
        .map(|c| (c.id.clone(), c.name.clone()))
        .collect();
    let stops = containers
        .iter()
        .map(|(id, _)| host.docker.stop(id, config.container.stop_timeout));
    for ((_, name), r) in containers
        .iter()
        .zip(futures_util::future::join_all(stops).await)
    {
        if let Err(e) = r {
            host.out
                .warn(&format!("could not stop parked {name}: {e:#}"));
        }
    }
    Ok(format!(
        "parked {} (stopped, within {})",
        old.color,
        fmt_duration(config.container.stop_timeout)
    ))
}
