//! Progressive delivery: the mirror (a share of live requests copied to the candidate by
//! nginx, its discarded answers compared with live's) and the canary (a share of live
//! clients on the candidate, sticky by cookie, set step by step and judged). Both are judged
//! on what nginx logged (`nginx::traffic`), never on bgd's own probes, by `analysis`.
//!
//! A canary share changes live routing: it is installed like a switch (validated, watched,
//! recorded in the same exec, confirmed through `lb.url`). From the first share on, a failure
//! does not remove the candidate (it serves live clients): `Run::end_canary` puts all of live
//! traffic back on the stable color and leaves the candidate idle.

use super::run::Run;
use super::specs::render_input;
use super::switch;
use crate::analysis::{self, Judged};
use crate::config::Analysis;
use crate::error;
use crate::model::{Color, Role};
use crate::nginx::render::MirrorRender;
use anyhow::Result;
use std::time::{Duration, Instant};

/// What is compared with what.
#[derive(Clone, Copy)]
enum Compare {
    /// The candidate's answers to mirrored copies against live's answers
    Mirror { live: Color },
    /// The canary color's live answers against the stable color's
    Canary { stable: Color, canary: Color },
}

/// `mirror`: nginx copies `warmup.mirror.share` of the live requests of the listed methods to
/// the candidate for `warmup.mirror.for`; then the mirror stops (one more reload) and the
/// candidate's answers are judged against live's (exit 3 on a breach). Skipped, with a note,
/// when nothing live serves.
pub async fn mirror(run: &mut Run<'_>) -> Result<String> {
    let (host, config) = (run.host, run.host.config);
    let Some(m) = config.warmup.mirror.as_ref() else {
        return Ok("no warmup.mirror".into());
    };
    let Some(live) = run.live_pool.clone().filter(|p| !p.servers.is_empty()) else {
        return Ok("skipped: nothing is live yet, so there is no live traffic to copy".into());
    };
    let pool = run.pool()?.clone();
    let generation = run.state.generation + 1;
    let mut input = render_input(
        config,
        generation,
        Some(&live),
        Some((&pool, Role::Candidate)),
        run.features,
        None,
    );
    input.mirror = Some(MirrorRender {
        share: m.share,
        methods: m.methods.clone(),
        timeout: m.timeout,
    });
    let text = host.render(&input)?;
    run.state.generation = generation;
    host.install(
        &text,
        "the mirror of live traffic to the candidate",
        None,
        &run.lock,
    )
    .await?;
    let watched = watch(
        run,
        generation,
        m.window,
        &m.analysis,
        Compare::Mirror { live: live.color },
        "mirror",
    )
    .await;
    // the mirror stops whatever the window said (a failed step's undo would stop it too)
    run.state.generation += 1;
    let text = host.render(&render_input(
        config,
        run.state.generation,
        Some(&live),
        Some((&pool, Role::Candidate)),
        run.features,
        None,
    ))?;
    let stopped = host
        .install(&text, "stopping the mirror", None, &run.lock)
        .await;
    let judged = watched?;
    stopped?;
    let fail_inconclusive = m.analysis.fail_inconclusive;
    conclude(run, judged, fail_inconclusive, |line| {
        error::rejected(format!(
            "the candidate failed on mirrored live traffic, {line}; live traffic was not touched"
        ))
    })
}

/// A canary step: the candidate takes `share` percent of live clients. With `judged`, the
/// step then watches `canary.step_for` and judges the candidate against the stable side: on
/// a breach all of live traffic goes back to the stable color (exit 4) and the candidate
/// stays idle, marked as failed.
pub async fn canary(run: &mut Run<'_>, share: u8, judged: bool) -> Result<String> {
    let config = run.host.config;
    let live = run.live_pool.clone().filter(|p| !p.servers.is_empty());
    let Some(live) = live else {
        return Err(error::refused(
            "a canary needs a live release with running replicas to share traffic with",
        ));
    };
    if run.pool.is_none() {
        // ending a canary without routing the preview first: the candidate's replicas as
        // they are (maybe none running)
        let candidate = run.target()?.clone();
        run.pool = Some(run.obs.pool(config, &candidate));
    }
    let canary_color = run.pool()?.color;
    if share == 0 {
        let window = switch::route_canary(run, None, false).await?;
        return Ok(format!(
            "all of live traffic on {} again; {canary_color} waits as the candidate (generation {}); switch window: {}",
            live.color,
            run.state.generation,
            window.summary()
        ));
    }
    // the record says which parked release the candidate set aside (`discard` gives it back)
    if let Some(aside) = run.undo.set_aside.as_ref() {
        run.state.set_aside = Some(aside.release.clone());
    }
    let window = set_share(run, share).await?;
    let set_text = format!(
        "{share}% of live clients on {canary_color}, the rest on {} (generation {}); switch window: {}",
        live.color,
        run.state.generation,
        window.summary()
    );
    if !judged {
        return Ok(set_text);
    }
    let compare = Compare::Canary {
        stable: live.color,
        canary: canary_color,
    };
    let phase = format!("canary {share}%");
    let generation = run.state.generation;
    let a = config.canary.analysis.clone();
    let judged = watch(run, generation, config.canary.step_for, &a, compare, &phase).await?;
    let stable = live.color;
    let concluded = conclude(run, judged, a.fail_inconclusive, |line| {
        error::rolled_back(format!(
            "the canary failed its analysis, {line}; all of live traffic is back on {stable}, {canary_color} waits as the failed candidate"
        ))
    });
    match concluded {
        Ok(line) => Ok(format!("{set_text}; {line}")),
        Err(e) => Err(run.end_canary(e, true).await),
    }
}

/// Installs the canary at `share` (a validated, watched, recorded reload) and checks the
/// canary side answers through `lb.url`.
async fn set_share(run: &mut Run<'_>, share: u8) -> Result<crate::probe::window::WindowReport> {
    let window = switch::route_canary(run, Some(share), false).await?;
    // from here the candidate may serve live clients: a failure never removes it, it ends
    // the canary (`Run::end_canary`, from the executor)
    run.canary_routed = true;
    let canary = run.pool()?.color;
    run.host
        .confirm_canary(canary, run.state.generation)
        .await
        .map_err(|e| {
            e.context(format!(
                "the canary side ({canary}) does not answer through lb.url"
            ))
        })?;
    if !window.lossless() {
        return Err(error::environment(format!(
            "live traffic saw failures while the canary share was set: {} (the first: {})",
            window.summary(),
            window.first_failure.as_deref().unwrap_or("?")
        )));
    }
    Ok(window)
}

/// Watches traffic logged under `generation` for `window`, reading it back every few
/// seconds (the progress line shows the figures); ends early on a clear breach (enough
/// candidate requests, and a threshold broken).
async fn watch(
    run: &Run<'_>,
    generation: u64,
    window: Duration,
    a: &Analysis,
    compare: Compare,
    phase: &str,
) -> Result<Judged> {
    // the mirror's live side: only requests of the methods it copies
    let methods = match compare {
        Compare::Mirror { .. } => run
            .host
            .config
            .warmup
            .mirror
            .as_ref()
            .map(|m| &m.methods[..]),
        Compare::Canary { .. } => None,
    };
    let host = run.host;
    let started = Instant::now();
    let tick = (window / 10).clamp(Duration::from_secs(1), Duration::from_secs(5));
    let mut next = started + tick.min(window);
    loop {
        while Instant::now() < next {
            crate::interrupt::check(&format!(
                "during the {phase} window; live traffic goes back as it was"
            ))?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let elapsed = started.elapsed();
        let traffic = host
            .nginx()
            .traffic(generation, methods)
            .await
            .map_err(|e| host.nginx_failure(e, "reading what nginx logged of live traffic"))?;
        let (stable, candidate) = match compare {
            Compare::Mirror { live } => (traffic.live(live).summary(), traffic.mirror.summary()),
            Compare::Canary { stable, canary } => (
                traffic.live(stable).summary(),
                traffic.live(canary).summary(),
            ),
        };
        let judged = analysis::judge(phase, stable, candidate, a, elapsed.as_millis() as u64);
        let left = window.saturating_sub(elapsed);
        host.out
            .progress(&format!("{}; {}s left", judged.line(), left.as_secs()));
        if left.is_zero() || (judged.failed() && judged.candidate.requests >= a.min_requests) {
            return Ok(judged);
        }
        next = Instant::now() + tick.min(left);
    }
}

/// Keeps `judged` for the history and `--json`.
fn record(run: &mut Run<'_>, judged: Judged) {
    let mut fields = serde_json::Map::new();
    if let Ok(serde_json::Value::Object(o)) = serde_json::to_value(&judged) {
        fields = o;
    }
    run.host.out.event("analysis", fields);
    run.journal.entry.analysis.push(judged);
    run.journal.amended = true;
}

/// The step's message for a pass (or a warning for no verdict); the error `fail` makes
/// for a breach.
fn conclude(
    run: &mut Run<'_>,
    judged: Judged,
    fail_inconclusive: bool,
    fail: impl FnOnce(&str) -> anyhow::Error,
) -> Result<String> {
    let line = judged.line();
    let verdict = judged.verdict.clone();
    record(run, judged);
    match verdict.as_str() {
        "fail" => Err(fail(&line)),
        "inconclusive" if fail_inconclusive => Err(fail(&format!("{line} (inconclusive: fail)"))),
        "inconclusive" => {
            run.host
                .out
                .warn(&format!("{line}; not gating (too little traffic to judge)"));
            Ok(line)
        }
        _ => Ok(line),
    }
}
