//! `bgd switch`: promotes the candidate left by `deploy --no-switch`.

use crate::config::Config;
use crate::deploy::{self, Host};
use crate::docker::Docker;
use crate::output::Output;
use anyhow::Result;

pub async fn run(
    config: &Config,
    docker: &Docker,
    lock_wait: std::time::Duration,
    out: &Output,
) -> Result<()> {
    switch(config, docker, lock_wait, out, "switched").await
}

/// `bgd promote`: the canary (or a waiting candidate) takes all of live traffic, as `switch`.
pub async fn promote(
    config: &Config,
    docker: &Docker,
    lock_wait: std::time::Duration,
    out: &Output,
) -> Result<()> {
    switch(config, docker, lock_wait, out, "promoted").await
}

async fn switch(
    config: &Config,
    docker: &Docker,
    lock_wait: std::time::Duration,
    out: &Output,
    done: &str,
) -> Result<()> {
    let host = Host::new(config, docker, out, lock_wait)?;
    let report = deploy::switch(&host).await?;
    out.print(&format!(
        "{done}: live on {} ({}, release {}, generation {}){}",
        report.live.color,
        report.live.image,
        report.live.release,
        report.generation,
        super::deploy::parked_note(&report)
    ));
    out.result(true, 0, super::deploy::report_fields(&report));
    Ok(())
}
