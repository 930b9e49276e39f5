//! `bgd drill`: the rollback drill, reported for people and for `--json`.

use super::deploy::release_json;
use crate::config::Config;
use crate::deploy::drill::{drill, Flip};
use crate::deploy::Host;
use crate::docker::Docker;
use crate::output::{fmt_duration, Output};
use anyhow::Result;
use serde_json::{json, Map, Value};

pub async fn run(
    config: &Config,
    docker: &Docker,
    lock_wait: std::time::Duration,
    out: &Output,
) -> Result<()> {
    let host = Host::new(config, docker, out, lock_wait)?;
    let d = drill(&host).await?;
    let line = |name: &str, f: &Flip| {
        format!(
            "  {name:<8} to {} ({}) in {}; switch window: {}",
            f.report.live.color,
            f.report.live.image,
            fmt_duration(f.took),
            f.report
                .window
                .as_ref()
                .map_or("not watched".to_string(), |w| w.summary())
        )
    };
    out.print(&format!(
        "drill passed: both flips lossless and within drill.rto ({})\n{}\n{}",
        fmt_duration(d.rto),
        line("back", &d.back),
        line("forward", &d.forward)
    ));
    let mut f = Map::new();
    f.insert("app".into(), json!(config.app));
    f.insert("back".into(), flip_json(&d.back));
    f.insert("forward".into(), flip_json(&d.forward));
    f.insert("rto_ms".into(), json!(d.rto.as_millis() as u64));
    f.insert("passed".into(), json!(true));
    out.result(true, 0, f);
    Ok(())
}

fn flip_json(f: &Flip) -> Value {
    json!({
        "live": release_json(Some(&f.report.live)),
        "took_ms": f.took.as_millis() as u64,
        "switch_ms": f.report.switch_took.as_millis() as u64,
        "reloaded": f.report.reloaded,
        "switch_window": f.report.window,
        "generation": f.report.generation,
    })
}
