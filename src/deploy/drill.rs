//! `bgd drill`: the rollback drill. Traffic goes back to the parked release and forward
//! again, each flip a full rollback (readiness pass, validated reload watched from the
//! outside, confirmation through `lb.url`), each timed against `drill.rto`. It passes only
//! when both flips were lossless and within the RTO; the history records it as a drill,
//! beside the two rollbacks it made.

use super::host::Host;
use super::rollback::rollback_judged_by_caller;
use super::run::SwitchReport;
use crate::error::{self, Failure};
use crate::lock::Holder;
use crate::nginx::{LockUse, RecordWrite};
use crate::output::fmt_duration;
use crate::state::HistoryEntry;
use anyhow::Result;
use std::time::{Duration, Instant};

/// One flip of a drill.
#[derive(Debug, Clone)]
pub struct Flip {
    pub report: SwitchReport,
    /// From the command's start to the new color confirmed live
    pub took: Duration,
}

/// What a drill did.
#[derive(Debug, Clone)]
pub struct Drilled {
    pub back: Flip,
    pub forward: Flip,
    pub rto: Duration,
    /// What kept it from passing (empty: it passed)
    pub failures: Vec<String>,
}

pub async fn drill(host: &Host<'_>) -> Result<Drilled> {
    let rto = host.config.drill.rto;
    let started = Instant::now();
    let back = match flip(host, "back").await {
        Ok(f) => f,
        Err(e) if error::is_refused(&e) => return Err(e),
        Err(e) => {
            record_failure(
                host,
                &format!("rolling back failed: {e:#}"),
                error::exit_code(&e),
                started.elapsed(),
            )
            .await;
            return Err(e);
        }
    };
    // the release live before the drill, parked by the flip back: where forward must return
    let original = back.report.parked.clone();
    let forward = match flip(host, "forward").await {
        Ok(f) => f,
        Err(e) => {
            let what = format!(
                "the drill rolled back to {} ({}) but rolling forward failed",
                back.report.live.color, back.report.live.image
            );
            record_failure(host, &what, error::exit_code(&e), started.elapsed()).await;
            return Err(e.context(format!(
                "{what}: `bgd status` says what is live now; `bgd rollback` returns to the release before the drill if it is parked"
            )));
        }
    };
    let mut failures = Vec::new();
    if let Some(o) = original
        .as_ref()
        .filter(|o| o.release != forward.report.live.release)
    {
        failures.push(format!(
            "rolling forward went to {} ({}), not to {} ({}), the release live before the drill (another deploy in between?)",
            forward.report.live.release, forward.report.live.image, o.release, o.image
        ));
    }
    for (name, f) in [("back", &back), ("forward", &forward)] {
        if f.took > rto {
            failures.push(format!(
                "rolling {name} took {}, over drill.rto ({})",
                fmt_duration(f.took),
                fmt_duration(rto)
            ));
        }
        if let Some(w) = f.report.window.as_ref().filter(|w| !w.lossless()) {
            failures.push(format!(
                "rolling {name} was not lossless: {} (the first: {})",
                w.summary(),
                w.first_failure.as_deref().unwrap_or("?")
            ));
        }
    }
    let drilled = Drilled {
        back,
        forward,
        rto,
        failures,
    };
    record(host, &drilled, started.elapsed()).await;
    if drilled.failures.is_empty() {
        return Ok(drilled);
    }
    Err(Failure::RolledBack(format!(
        "the rollback drill failed: {}. Traffic is back on {} ({}), as before the drill",
        drilled.failures.join("; "),
        drilled.forward.report.live.color,
        drilled.forward.report.live.image
    ))
    .into())
}

/// One rollback, timed from its start to the other release confirmed live. Nothing parked
/// is exit 2, said as the drill's.
async fn flip(host: &Host<'_>, name: &str) -> Result<Flip> {
    let t = Instant::now();
    host.out.info(&format!("drill: rolling {name}"));
    let report = rollback_judged_by_caller(host).await.map_err(|e| {
        if error::is_refused(&e) {
            error::refused(format!(
                "nothing to drill: {e:#}. A drill needs a parked release"
            ))
        } else {
            e.context(format!("the drill's rollback {name} failed"))
        }
    })?;
    Ok(Flip {
        took: report.confirmed_in.unwrap_or_else(|| t.elapsed()),
        report,
    })
}

/// A drill that stopped half way: its history line says so, with the exit code the command
/// ends with (`exit_code`: its error's, which the context added to it keeps).
async fn record_failure(host: &Host<'_>, what: &str, exit_code: i32, took: Duration) {
    let entry = HistoryEntry {
        outcome: "failed".into(),
        exit_code,
        duration_ms: took.as_millis() as u64,
        message: host.out.redact(what),
        ..HistoryEntry::starting("drill")
    };
    write(host, &entry).await;
}

/// The drill's own history line, beside its two rollbacks'. A record that cannot be written
/// is a warning: the drill happened either way.
async fn record(host: &Host<'_>, d: &Drilled, took: Duration) {
    let passed = d.failures.is_empty();
    let entry = HistoryEntry {
        image: Some(d.forward.report.live.image.clone()),
        release: Some(d.forward.report.live.release.clone()),
        // a drill starts and ends on one color: its two rollbacks' entries say where it went
        from: None,
        to: Some(d.forward.report.live.color),
        outcome: if passed { "ok" } else { "failed" }.into(),
        exit_code: if passed { 0 } else { 4 },
        duration_ms: took.as_millis() as u64,
        message: host.out.redact(&format!(
            "back to {} in {}, forward in {} (drill.rto {}){}",
            d.back.report.live.image,
            fmt_duration(d.back.took),
            fmt_duration(d.forward.took),
            fmt_duration(d.rto),
            if passed {
                String::new()
            } else {
                format!(": {}", d.failures.join("; "))
            }
        )),
        ..HistoryEntry::starting("drill")
    };
    write(host, &entry).await;
}

/// Writes a drill's history line (the state untouched), under the deploy lock for that
/// write alone. A failure is a warning: the drill happened either way.
async fn write(host: &Host<'_>, entry: &HistoryEntry) {
    let written = async {
        let write = RecordWrite {
            state: None,
            replace_untrusted: false,
            history: serde_json::to_string(entry)?,
            run: entry.run.clone(),
        };
        host.nginx()
            .record(&write, &LockUse::Once(Holder::me("bgd drill")))
            .await
            .map_err(|e| host.nginx_failure(e, "recording the drill"))
    };
    if let Err(e) = written.await {
        host.out
            .warn(&format!("could not record the drill in the history: {e:#}"));
    }
}
