use crate::config::{self, Config};
use crate::deploy::{Engine, SwitchReport};
use crate::docker::Docker;
use crate::error;
use crate::output::{fmt_duration, Output};
use anyhow::Result;
use serde_json::{json, Map, Value};

pub async fn run(
    config: &Config,
    image: &str,
    lock_wait: std::time::Duration,
    out: &Output,
) -> Result<()> {
    config::check_image_ref(image).map_err(error::config)?;
    let docker = Docker::connect().await?;
    let engine = Engine::new(config, &docker, out, lock_wait)?;
    let report = engine.deploy(image).await?;
    let parked = report.parked.as_ref().map_or(String::new(), |p| {
        format!(
            "; {} parked ({}), `bgd rollback` returns to it",
            p.color, p.image
        )
    });
    out.print(&format!(
        "deployed {image}: live on {} (release {}, generation {}){parked}",
        report.live.color, report.live.release, report.generation
    ));
    out.detail(&format!("switch took {}", fmt_duration(report.switch_took)));
    out.result(true, 0, report_fields(&report));
    Ok(())
}

pub fn report_fields(r: &SwitchReport) -> Map<String, Value> {
    let mut f = Map::new();
    f.insert(
        "live".into(),
        json!({"color": r.live.color, "image": r.live.image, "release": r.live.release}),
    );
    f.insert(
        "parked".into(),
        r.parked.as_ref().map_or(
            Value::Null,
            |p| json!({"color": p.color, "image": p.image, "release": p.release}),
        ),
    );
    f.insert("generation".into(), json!(r.generation));
    f.insert("switch_ms".into(), json!(r.switch_took.as_millis() as u64));
    f
}
