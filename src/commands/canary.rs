//! `bgd canary PERCENT`: the share of live clients the waiting candidate takes (0: none;
//! 100: promote it, as `bgd promote`).

use crate::config::Config;
use crate::deploy::{self, Host};
use crate::docker::Docker;
use crate::output::Output;
use anyhow::Result;

pub async fn run(
    config: &Config,
    docker: &Docker,
    percent: u8,
    lock_wait: std::time::Duration,
    out: &Output,
) -> Result<()> {
    if percent == 100 {
        return super::switch::promote(config, docker, lock_wait, out).await;
    }
    let host = Host::new(config, docker, out, lock_wait)?;
    let report = deploy::canary(&host, percent).await?;
    out.print(&super::deploy::canary_line(&report));
    out.result(true, 0, super::deploy::canary_fields(&report));
    Ok(())
}
