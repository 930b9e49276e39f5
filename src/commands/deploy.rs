//! `bgd deploy IMAGE` (and `--no-switch`, `--plan`): wires the engine and reports.

use super::plan;
use crate::config::{self, Config};
use crate::deploy::{self, CanaryReport, DeployRequest, Deployed, Host, SwitchReport};
use crate::docker::Docker;
use crate::error;
use crate::model::Release;
use crate::output::{fmt_duration, Output};
use anyhow::Result;
use serde_json::{json, Map, Value};

pub async fn run(
    config: &Config,
    docker: &Docker,
    request: &DeployRequest,
    show_plan: bool,
    lock_wait: std::time::Duration,
    out: &Output,
) -> Result<()> {
    config::check_image_ref(&request.image).map_err(error::config)?;
    let host = Host::new(config, docker, out, lock_wait)?;
    if show_plan {
        let report = deploy::plan(&host, request).await?;
        plan::print(config, &request.image, &report, out);
        return Ok(());
    }
    let image = &request.image;
    match deploy::deploy(&host, request).await? {
        Deployed::Switched(report) => {
            out.print(&format!(
                "deployed {image}: live on {} (release {}, generation {}){}",
                report.live.color,
                report.live.release,
                report.generation,
                parked_note(&report)
            ));
            out.detail(&format!("switch took {}", fmt_duration(report.switch_took)));
            let mut fields = report_fields(&report);
            if config.prune == crate::config::PruneMode::Auto {
                // the deploy stands whatever happens here
                match deploy::prune::prune(&host, true).await {
                    Ok(p) => {
                        out.info(&format!("prune: {}", deploy::prune::summary(&p)));
                        fields.insert("pruned".into(), json!(p.removed));
                    }
                    Err(e) => out.warn(&format!(
                        "the deploy succeeded, but pruning old images failed: {e:#}; run `bgd prune` later"
                    )),
                }
            }
            out.result(true, 0, fields);
        }
        Deployed::Canary(report) => {
            out.print(&format!(
                "deployed {image} as a canary: {}",
                canary_line(&report)
            ));
            out.result(true, 0, canary_fields(&report));
        }
        Deployed::Candidate {
            candidate,
            live,
            generation,
        } => {
            let serving = live
                .as_ref()
                .map_or("nothing is live yet".to_string(), |l| {
                    format!("{} ({}) keeps serving live traffic", l.color, l.image)
                });
            out.print(&format!(
                "candidate ready: {image} on {} (release {}) passed the gates and waits on the preview listener {}; {serving}.\n\
                 Promote it with `bgd switch`, or drop it with `bgd discard` (which gives back the parked release; until then `bgd rollback` refuses); the next deploy replaces it.",
                candidate.color, candidate.release, config.lb.preview_url
            ));
            let mut f = Map::new();
            f.insert("candidate".into(), release_json(Some(&candidate)));
            f.insert("live".into(), release_json(live.as_ref()));
            f.insert("preview_url".into(), json!(config.lb.preview_url));
            f.insert("generation".into(), json!(generation));
            out.result(true, 0, f);
        }
    }
    Ok(())
}

pub fn release_json(r: Option<&Release>) -> Value {
    r.map_or(
        Value::Null,
        |r| json!({"color": r.color, "image": r.image, "release": r.release}),
    )
}

/// The idle release as JSON: a release with its `role`, or null.
pub fn idle_json(idle: Option<&crate::state::Idle>) -> Value {
    idle.map_or(Value::Null, |i| {
        let mut v = release_json(Some(&i.release));
        v["role"] = json!(i.role.as_str());
        v
    })
}

/// "; blue parked (web:v1), `bgd rollback` returns to it", or nothing on a first deploy.
pub fn parked_note(r: &SwitchReport) -> String {
    r.parked.as_ref().map_or(String::new(), |p| {
        format!(
            "; {} parked ({}), `bgd rollback` returns to it",
            p.color, p.image
        )
    })
}

pub fn report_fields(r: &SwitchReport) -> Map<String, Value> {
    let mut f = Map::new();
    f.insert("live".into(), release_json(Some(&r.live)));
    f.insert("parked".into(), release_json(r.parked.as_ref()));
    f.insert("generation".into(), json!(r.generation));
    f.insert("switch_ms".into(), json!(r.switch_took.as_millis() as u64));
    f.insert("reloaded".into(), json!(r.reloaded));
    f.insert("switch_window".into(), json!(r.window));
    if !r.analysis.is_empty() {
        f.insert("analysis".into(), json!(r.analysis));
    }
    f
}

/// Where a canary stands, in words.
pub fn canary_line(r: &CanaryReport) -> String {
    if r.share == 0 {
        format!(
            "all of live traffic on {} ({}); {} ({}) waits as the candidate: `bgd canary N` sends it a share again, `bgd discard` removes it",
            r.stable.color, r.stable.image, r.candidate.color, r.candidate.image
        )
    } else {
        format!(
            "canary at {}%: {} ({}) takes {}% of live clients, {} ({}) the rest (generation {}). Next: `bgd canary N` to change the share, `bgd promote` to make it live for all, `bgd rollback` to send its share back to 0%",
            r.share,
            r.candidate.color,
            r.candidate.image,
            r.share,
            r.stable.color,
            r.stable.image,
            r.generation
        )
    }
}

pub fn canary_fields(r: &CanaryReport) -> Map<String, Value> {
    let mut f = Map::new();
    f.insert("canary".into(), release_json(Some(&r.candidate)));
    f.insert("live".into(), release_json(Some(&r.stable)));
    f.insert("share".into(), json!(r.share));
    f.insert("generation".into(), json!(r.generation));
    f.insert("switch_window".into(), json!(r.window));
    f
}
