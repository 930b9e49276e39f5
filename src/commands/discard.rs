//! `bgd discard`: the candidate `deploy --no-switch` left waiting goes; the parked release it
//! set aside is parked again, so `rollback` works as before the `--no-switch`.

use super::deploy::release_json;
use crate::config::Config;
use crate::deploy::{self, Host};
use crate::docker::Docker;
use crate::output::Output;
use anyhow::Result;
use serde_json::{json, Map};

pub async fn run(
    config: &Config,
    docker: &Docker,
    lock_wait: std::time::Duration,
    out: &Output,
) -> Result<()> {
    let host = Host::new(config, docker, out, lock_wait)?;
    let d = deploy::discard(&host).await?;
    let c = &d.candidate;
    out.print(&match &d.parked {
        Some(p) => format!(
            "discarded the candidate {} ({}, release {}); {} ({}, release {}) is parked again: `bgd rollback` returns to it",
            c.color, c.image, c.release, p.color, p.image, p.release
        ),
        None => format!(
            "discarded the candidate {} ({}, release {}); nothing is parked",
            c.color, c.image, c.release
        ),
    });
    let mut f = Map::new();
    f.insert("app".into(), json!(config.app));
    f.insert("discarded".into(), release_json(Some(c)));
    f.insert("parked".into(), release_json(d.parked.as_ref()));
    f.insert("generation".into(), json!(d.generation));
    out.result(true, 0, f);
    Ok(())
}
