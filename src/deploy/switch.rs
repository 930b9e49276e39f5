//! The switch and what follows it: one validated, lossless reload that makes the target live
//! and records the new state in the same exec, confirmed through the live listener;
//! verification through the live listener; switching back when verification fails; parking
//! the old color.

use super::gates::{misrouted, smoke_probes, Listener};
use super::plan::{after_failed_verify, AfterFailedVerify};
use super::run::{Command, RollbackFlag, Run};
use super::specs::render_input;
use crate::config::ParkMode;
use crate::error::{self, Failure};
use crate::model::{Pool, Role};
use crate::nginx::{FlagTo, Installed, LockUse, RecordWrite};
use crate::output::fmt_duration;
use crate::probe::window::{Window, WindowReport};
use crate::probe::Expect;
use crate::state::{self, AppState, HistoryEntry, Idle};
use anyhow::Result;
use std::time::Instant;

/// What nginx routes: the live pool, and the idle one on the preview listener with its role.
#[derive(Debug, Clone, Default)]
pub struct Routing {
    pub live: Option<Pool>,
    pub preview: Option<(Pool, Role)>,
    /// The share of live traffic the candidate on the preview listener takes (a canary)
    pub canary: Option<u8>,
}

/// `switch`: live traffic goes to the target; the old live color becomes the preview
/// listener's (parked). The same exec records the new state and the history entry.
pub async fn switch(run: &mut Run<'_>) -> Result<String> {
    let target = run.target()?.color;
    let pool = run.pool()?.clone();
    let pool_for_flip = pool.clone();
    let old = run.live_pool.clone();
    run.journal.entry.message = format!("{target} live");
    // a promoted canary takes all of live traffic
    let to = Routing {
        live: Some(pool.clone()),
        preview: old.clone().map(|p| (p, Role::Parked)),
        canary: None,
    };
    let idle_role = run.state.idle.as_ref().map_or(Role::Parked, |i| i.role);
    let back = Routing {
        live: old,
        preview: Some((pool, idle_role)),
        canary: run.state.canary.as_ref().map(|c| c.share),
    };
    // a deploy's candidate, routed on the preview listener by a config that also routes
    // live traffic by its rollback flag: raising the flag is the switch, no reload
    // (the built-in template's: an `lb.template` copied from an older one may say the idle
    // release is a candidate whatever the flag, and its rollbacks would all reload)
    if run.flip.is_none()
        && matches!(run.command, Command::Deploy(_) | Command::Switch)
        && run.state.canary.is_none()
        && run.host.config.lb.template.is_none()
    {
        run.flip =
            super::rollback::candidate_flip(run.host, &pool_for_flip, run.state.generation).await;
    }
    let entry = run.journal.entry_now();
    let (installed, window) = match run.flip.take() {
        Some(flip) => flip_live(run, &flip, to, entry).await?,
        None => switch_live(run, to, back, "the switch", entry).await?,
    };
    let how = if installed.reloaded {
        ""
    } else {
        ", by the rollback flag: no reload"
    };
    run.switched = Some(installed);
    // a fast rollback took the lock for the switch's exec alone
    if let LockUse::Once(_) = run.lock {
        run.lock = LockUse::None;
    }
    run.confirmed_in = Some(run.elapsed());
    // the window is known once the drain ended, after the exec recorded the entry
    run.journal.entry.switch_window = Some(for_the_record(&window, run.host.out));
    // a switch by the flag recorded its window in its own exec
    run.journal.amended = !std::mem::take(&mut run.window_recorded);
    if !window.lossless() {
        let why = format!(
            "live traffic saw failures during the switch: {} (the first: {})",
            window.summary(),
            window.first_failure.as_deref().unwrap_or("?")
        );
        match run.command {
            // a drill judges it; a rollback has nothing after the switch to judge it
            Command::Rollback if run.window_judged_by_caller => {}
            Command::Rollback => return Err(error::rejected(why)),
            // judged first thing in `verify`, once a set-aside release is gone
            _ => run.window_failure = Some(why),
        }
    }
    Ok(format!(
        "live traffic on {target} (generation {}{how}); switch window: {}",
        run.state.generation,
        window.summary()
    ))
}

/// The switch without a reload: the active config routes by its rollback flag, so raising or
/// lowering it (and recording `to`'s state and `entry` in the same exec) moves live traffic at
/// the next request, kept-alive connections included; no worker is replaced, nothing drains.
/// Watched like a reload, from just before the flag moves until `lb.url` confirms the new
/// color; if it does not, the same exec, still holding the lock, puts the flag back with the
/// state before it (exit 6), or exit 7 when that cannot be confirmed either.
async fn flip_live(
    run: &mut Run<'_>,
    flip: &RollbackFlag,
    to: Routing,
    entry: HistoryEntry,
) -> Result<(Installed, WindowReport)> {
    let (host, config) = (run.host, run.host.config);
    let before = run.state.clone();
    let mut after = state_after(&run.state, &to);
    after.flipped_at = flip.on.then_some(after.generation);
    let record = record_of(&after, &entry)?;
    // what the exec records if the switch cannot be confirmed and it puts the flag back
    let mut failed = entry.clone();
    failed.outcome = "failed".into();
    failed.exit_code = 6;
    failed.message =
        "the switch could not be confirmed through lb.url; the previous routing was put back"
            .into();
    let undo = record_of(&before, &failed)?;
    let live_color = to.live.as_ref().map(|p| p.color);
    let back_color = before.live.as_ref().map(|l| l.color);
    let live_after = live_color.map_or("nothing".to_string(), |c| c.to_string());
    let url = format!("{}{}", config.lb.url, config.readiness.path);
    let window = Window::watch(&host.prober, url, config.readiness.expect_status, false);
    // The exec waits, the flag moved, for bgd's word: the history line with what the window
    // saw (one exec records the switch and its window; a dropped line leaves the entry
    // without it), or, unconfirmed, to put the flag back
    let (moved_tx, moved) = tokio::sync::oneshot::channel();
    let (line_tx, line) = tokio::sync::oneshot::channel();
    let flipped = host.flip_routing(
        &flip.flag,
        FlagTo::raised(flip.on),
        &record,
        &run.lock,
        &live_after,
        Some(crate::nginx::Amend {
            moved: moved_tx,
            answer: line,
            undo: undo.clone(),
        }),
    );
    let out = host.out;
    let watched = async {
        let confirmed = match moved.await {
            Ok(()) => Some(host.confirm_live(live_color, run.state.generation).await),
            Err(_) => None,
        };
        let window = window.end().await;
        let mut sent = false;
        match &confirmed {
            Some(Ok(())) => {
                let mut amended = entry.clone();
                amended.switch_window = Some(for_the_record(&window, out));
                amended.duration_ms = run.elapsed().as_millis() as u64;
                if let Ok(text) = serde_json::to_string(&amended) {
                    sent = line_tx.send(text).is_ok();
                }
            }
            Some(Err(_)) => {
                let _ = line_tx.send(crate::nginx::UNDO.to_string());
            }
            None => {}
        }
        (confirmed, window, sent)
    };
    let (flipped, (confirmed, window, sent)) = tokio::join!(flipped, watched);
    let installed = flipped?;
    let confirmed = confirmed.unwrap_or_else(|| {
        Err(anyhow::anyhow!(
            "internal: the rollback flag moved but the exec did not say so"
        ))
    });
    if installed.undone {
        // the flag is back as it was, and (unless it could not be written) the record before
        // it with the failed entry
        if installed.unrecorded.is_none() {
            run.journal.recorded = Some(failed.outcome.clone());
        }
        run.state = before.clone();
        let unconfirmed = confirmed
            .err()
            .unwrap_or_else(|| anyhow::anyhow!("internal: a confirmed switch was put back"));
        if let Some(why) = &installed.unrecorded {
            return Err(error::unsafe_state(format!(
                "{unconfirmed:#}\nthe previous routing was put back, but bgd's record on the host could not be written ({why}): run `bgd repair`, then `bgd status`"
            )));
        }
        return match host.confirm_live(back_color, run.state.generation).await {
            Ok(()) => Err(unconfirmed.context(
                "the switch was undone: the previous routing is active again".to_string(),
            )),
            Err(e) => {
                // the history says so, not the exec's "put back" line (exit 6)
                run.journal.amended = true;
                Err(error::unsafe_state(format!(
                "{unconfirmed:#}\nthe previous routing was put back, but it could not be confirmed either: {e:#}\nCheck `bgd status` and `docker logs {}` now",
                config.lb.container
            )))
            }
        };
    }
    run.journal.recorded = Some(entry.outcome.clone());
    let Err(unconfirmed) = confirmed else {
        run.state = after;
        if let Some(why) = &installed.unrecorded {
            return Err(unrecorded(run, "the switch", why));
        }
        // the exec recorded the entry with its window: nothing to write again
        run.window_recorded = sent;
        return Ok((installed, window));
    };
    // the exec did not take the word to put the flag back (it lost the lock meanwhile, or
    // had stopped waiting): a second exec does it
    let restored = async {
        // a flag this run raised goes down with the marker it made: the idle release was
        // never confirmed live
        host.flip_routing(
            &flip.flag,
            if flip.on {
                FlagTo::LoweredUnmarked
            } else {
                FlagTo::Raised
            },
            &undo,
            &run.lock,
            &format!(
                "{live_after} or {}",
                back_color.map_or("nothing".into(), |c| c.to_string())
            ),
            None,
        )
        .await?;
        run.journal.recorded = Some(failed.outcome.clone());
        run.state = before.clone();
        host.confirm_live(back_color, run.state.generation).await
    }
    .await;
    match restored {
        Ok(()) => Err(unconfirmed.context(
            "the switch was undone: the previous routing is active again".to_string(),
        )),
        Err(e) => Err(error::unsafe_state(format!(
            "{unconfirmed:#}\nrestoring the previous routing also failed: {e:#}\nCheck `bgd status` and `docker logs {}` now",
            config.lb.container
        ))),
    }
}

/// Sets the canary's share of live traffic: `Some(share)` percent of live clients on the
/// idle candidate, or `None`, all of them on the live color and the candidate idle (`failed`
/// marks it as the release that failed, which `switch` refuses). A validated, watched reload
/// that records the new state in the same exec, confirmed through `lb.url` (as a client of
/// the stable side); put back as it was when that fails.
pub async fn route_canary(
    run: &mut Run<'_>,
    share: Option<u8>,
    failed: bool,
) -> Result<WindowReport> {
    let live = run
        .live_pool
        .clone()
        .ok_or_else(|| error::refused("a canary needs a live release to share traffic with"))?;
    let pool = run.pool()?.clone();
    let before = run.state.canary.as_ref().map(|c| c.share);
    // if the new share cannot be confirmed, the routing put back never gives the candidate
    // more than either: ending a canary never brings it back
    let back_share = match (before, share) {
        (Some(b), Some(s)) => Some(b.min(s)),
        _ => None,
    };
    let to = Routing {
        live: Some(live.clone()),
        preview: Some((pool.clone(), Role::Candidate)),
        canary: share,
    };
    let back = Routing {
        live: Some(live.clone()),
        preview: Some((pool.clone(), Role::Candidate)),
        canary: back_share,
    };
    let what = match share {
        Some(s) => format!("the canary at {s}%"),
        None => "the end of the canary".to_string(),
    };
    run.journal.entry.message = match share {
        Some(s) => format!("{s}% of live clients on {}", pool.color),
        None if failed => format!(
            "all of live traffic back on {}; {} failed as a canary",
            live.color, pool.color
        ),
        None => format!(
            "all of live traffic on {}; {} waits as the candidate",
            live.color, pool.color
        ),
    };
    run.state.candidate_failed = failed;
    let entry = run.journal.entry_now();
    let (_, window) = switch_live(run, to, back, &what, entry).await?;
    run.journal.entry.switch_window = Some(for_the_record(&window, run.host.out));
    run.journal.amended = true;
    Ok(window)
}

/// A window as the history keeps it: what its first failure said, scrubbed of secrets.
fn for_the_record(window: &WindowReport, out: &crate::output::Output) -> WindowReport {
    let mut recorded = window.clone();
    recorded.first_failure = recorded.first_failure.map(|f| out.redact(&f));
    recorded
}

/// Installs a routing change while the live listener is watched from just before the
/// reload until the old workers have drained.
async fn install_watched(
    run: &Run<'_>,
    text: &str,
    what: &str,
    record: RecordWrite,
    live_after: &str,
) -> (Result<Installed>, WindowReport) {
    let (host, config) = (run.host, run.host.config);
    let url = format!("{}{}", config.lb.url, config.readiness.path);
    let nothing_live = run.state.live.is_none();
    let window = Window::watch(
        &host.prober,
        url,
        config.readiness.expect_status,
        nothing_live,
    );
    let installed = host
        .install_routing(text, what, Some(record), &run.lock, live_after)
        .await;
    (installed, window.end().await)
}

/// Installs `to` (generation + 1) and records, in the same exec, the state after it and
/// `entry` (this run's history line), then confirms through `lb.url` that the new color and
/// generation serve. If nginx took the config but `lb.url` does not show it, `back` is
/// installed again with the state before it (exit 6), or exit 7 when that fails as well.
/// A switch nginx applied but bgd could not record is exit 7: the record would lie.
async fn switch_live(
    run: &mut Run<'_>,
    to: Routing,
    back: Routing,
    what: &str,
    entry: HistoryEntry,
) -> Result<(Installed, WindowReport)> {
    let host = run.host;
    let before = run.state.clone();
    run.state.generation += 1;
    let text = render(run, &to)?;
    let after = state_after(&run.state, &to);
    let record = record_of(&after, &entry)?;
    let live_color = to.live.as_ref().map(|p| p.color);
    let live_after = live_color.map_or("nothing".to_string(), |c| c.to_string());
    let (installed, window) = install_watched(run, &text, what, record, &live_after).await;
    let installed = installed?;
    run.journal.recorded = Some(entry.outcome.clone());
    let Err(unconfirmed) = host.confirm_live(live_color, run.state.generation).await else {
        run.state = after;
        if let Some(why) = &installed.unrecorded {
            return Err(unrecorded(run, what, why));
        }
        return Ok((installed, window));
    };
    // put the routing back, and the record with it
    run.state.generation += 1;
    // the record of `back` (a canary's share put back may be lower than before: never higher)
    let mut back_state = state_after(&before, &back);
    back_state.generation = run.state.generation;
    let mut failed = entry;
    failed.outcome = "failed".into();
    failed.exit_code = 6;
    failed.message =
        format!("{what} could not be confirmed through lb.url; the previous routing was put back");
    let restored = async {
        let text = render(run, &back)?;
        let record = record_of(&back_state, &failed)?;
        let back_live = back
            .live
            .as_ref()
            .map_or("nothing".to_string(), |p| p.color.to_string());
        host.install_routing(
            &text,
            "restoring the routing before the switch",
            Some(record),
            &run.lock,
            &format!("{live_after} or {back_live}"),
        )
        .await?;
        run.journal.recorded = Some(failed.outcome.clone());
        run.state = back_state.clone();
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

/// `reroute`: the same live and idle releases, routed to where their containers are now
/// (after containers restarted with other addresses under an nginx that routes by address).
/// One validated reload that records the new generation in the same exec, confirmed through
/// `lb.url`. Refused when no live replica runs: that would route live traffic to nothing.
pub async fn reroute(run: &mut Run<'_>) -> Result<String> {
    let (host, config) = (run.host, run.host.config);
    let (Some(live), Some(pool)) = (run.state.live.clone(), run.live_pool.clone()) else {
        return Err(error::refused(
            if matches!(run.command, Command::TlsReload) {
                format!(
                "nothing is live for {}: there is no live server to reload the certificate of (the next deploy serves it)",
                config.app
            )
            } else {
                format!(
                    "nothing is live for {}: there is no routing to repair (deploy a release)",
                    config.app
                )
            },
        ));
    };
    let replicas = run.obs.containers_of(&live);
    if pool.servers.is_empty() {
        let names: Vec<&str> = replicas.iter().map(|c| c.name.as_str()).collect();
        return Err(error::environment(format!(
            "no replica of the live release {} ({}) runs with an address on {}: rerouting would send live traffic nowhere, so nginx was left as it is. Start them (docker start {}) and reroute again, or `bgd rollback`",
            live.color,
            live.image,
            config.network,
            if names.is_empty() { "<none left>".to_string() } else { names.join(" ") }
        )));
    }
    if pool.servers.len() < replicas.len() {
        host.out.warn(&format!(
            "only {}/{} replicas of the live {} run: nginx routes live traffic to those",
            pool.servers.len(),
            replicas.len(),
            live.color
        ));
    }
    run.set_target(live.clone());
    let preview = run
        .state
        .idle
        .as_ref()
        .map(|i| (run.obs.pool(config, &i.release), i.role));
    let to = Routing {
        live: Some(pool.clone()),
        preview,
        canary: run.state.canary.as_ref().map(|c| c.share),
    };
    run.state.generation += 1;
    let tls_reload = matches!(run.command, Command::TlsReload);
    run.journal.entry.message = if tls_reload {
        let (cert, _) = config
            .lb
            .tls
            .as_ref()
            .map(|t| t.files_in_nginx(&config.app))
            .unwrap_or_default();
        format!(
            "the certificate reloaded ({cert}); live traffic on {} as before",
            live.color
        )
    } else {
        format!(
            "live traffic on {}'s {} running replica(s) where they are now",
            live.color,
            pool.servers.len()
        )
    };
    let what = if tls_reload {
        "the certificate reload"
    } else {
        "the reroute"
    };
    let text = render(run, &to)?;
    let entry = run.journal.entry_now();
    let record = record_of(&run.state, &entry)?;
    let installed = host
        .install_routing(
            &text,
            what,
            Some(record),
            &run.lock,
            &format!(
                "{} (the same release, maybe at other addresses)",
                live.color
            ),
        )
        .await?;
    run.journal.recorded = Some(entry.outcome.clone());
    if let Some(why) = &installed.unrecorded {
        return Err(unrecorded(run, what, why));
    }
    host.confirm_live(Some(live.color), run.state.generation)
        .await
        .map_err(|e| {
            error::environment(format!(
                "nginx took the rerouted config, but {} does not show it: {e:#}",
                config.lb.url
            ))
        })?;
    if tls_reload {
        return Ok(format!(
            "nginx serves the certificate bgd.yaml names; live traffic on {} as before (generation {})",
            live.color, run.state.generation
        ));
    }
    let targets: Vec<&str> = pool.servers.iter().map(|s| s.name.as_str()).collect();
    Ok(format!(
        "live traffic on {} ({}) where it is now: {} (generation {})",
        live.color,
        live.release,
        targets.join(", "),
        run.state.generation
    ))
}

/// The record an install writes: `state` (as of now) and `entry`.
fn record_of(state: &AppState, entry: &HistoryEntry) -> Result<RecordWrite> {
    let mut state = state.clone();
    state.updated_at = state::now();
    Ok(RecordWrite {
        state: Some(state.to_record()?),
        replace_untrusted: false,
        history: serde_json::to_string(entry)?,
        run: entry.run.clone(),
    })
}

/// nginx took the switch but bgd's record could not be written: the record now says the
/// wrong color is live, so the run stops with exit 7 and says how to mend it.
fn unrecorded(run: &Run<'_>, what: &str, why: &str) -> anyhow::Error {
    let live = run.state.live.as_ref().map_or("nothing".into(), |l| {
        format!("{} ({}, release {})", l.color, l.image, l.release)
    });
    error::unsafe_state(format!(
        "{what} happened: nginx routes live traffic to {live}, but bgd's record on the host could not be written ({why}). Run `bgd repair` to rebuild it from nginx and the containers (it changes no routing), then `bgd status`"
    ))
}

fn render(run: &Run<'_>, routing: &Routing) -> Result<String> {
    let preview = routing.preview.as_ref().map(|(p, role)| (p, *role));
    run.host.render(&render_input(
        run.host.config,
        run.state.generation,
        routing.live.as_ref(),
        preview,
        run.features,
        routing.canary,
    ))
}

/// The record after `to` is in effect: the idle release of the new live color goes live,
/// the live one becomes idle with the preview's role.
fn state_after(state: &AppState, to: &Routing) -> AppState {
    let mut after = state.clone();
    after.canary = match (to.canary, &state.canary) {
        (Some(share), Some(c)) if c.share == share => Some(c.clone()),
        (Some(share), _) => Some(state::Canary {
            share,
            since: state::now(),
        }),
        (None, _) => None,
    };
    let live_color = to.live.as_ref().map(|p| p.color);
    if let Some(idle) = state
        .idle
        .as_ref()
        .filter(|i| Some(i.release.color) == live_color)
    {
        after.live = Some(idle.release.clone());
        // a release set aside by the candidate is removed right after the switch
        after.set_aside = None;
        // only a switch back leaves a candidate behind: the release that failed verification
        after.candidate_failed =
            matches!(to.preview.as_ref(), Some((_, role)) if *role == Role::Candidate);
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
    if let Some(why) = run.window_failure.take() {
        return Err(error::rejected(why));
    }
    let pool = run.pool()?.clone();
    let (window, r) = (config.switch.verify, &config.readiness);
    let t = Instant::now();
    let mut rounds = 0;
    loop {
        let live = Listener {
            base: &config.lb.url,
            color: Some(pool.color),
            name: "live",
            route: None,
            answered_by: None,
        };
        smoke_probes(run, live, Some(live)).await?;
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
        canary: None,
    };
    let back = Routing {
        live: Some(pool),
        preview: Some((old, Role::Parked)),
        canary: None,
    };
    // The failed release stays as the idle candidate for inspection on the preview listener;
    // the switch back records it so, with this run's outcome, in its own exec.
    let message =
        format!("verification after the switch failed, traffic is back on {old_color}: {why:#}");
    let mut entry = run.journal.entry_now();
    entry.outcome = "rolled-back".into();
    entry.exit_code = 4;
    entry.message = host.out.redact(&message);
    let t = Instant::now();
    host.out.step(
        "switch-back",
        &format!("switch live traffic back to {old_color}"),
    );
    let window = match switch_live(run, to, back, "switching back", entry).await {
        Ok((_, window)) => {
            run.journal.entry.switch_back_window = Some(for_the_record(&window, host.out));
            run.journal.amended = true;
            window
        }
        Err(e) => {
            host.out.failed(
                "switch-back",
                &host.out.redact(&format!("{e:#}")),
                t.elapsed(),
            );
            return error::unsafe_state(format!(
                "switching back failed: {e:#}\nRun `bgd status`, then `bgd rollback`"
            ));
        }
    };
    host.out.done(
        "switch-back",
        &format!(
            "live traffic back on {old_color} (generation {}); switch window: {}",
            run.state.generation,
            window.summary()
        ),
        t.elapsed(),
    );
    Failure::RolledBack(message).into()
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
