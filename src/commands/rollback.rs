//! `bgd rollback [--verify]`: traffic back to the parked release.

use crate::config::Config;
use crate::deploy::{self, Host};
use crate::docker::Docker;
use crate::output::Output;
use anyhow::Result;

pub async fn run(
    config: &Config,
    docker: &Docker,
    verify: bool,
    lock_wait: std::time::Duration,
    out: &Output,
) -> Result<()> {
    let t = std::time::Instant::now();
    out.detail(&format!(
        "connected to {} in {}ms",
        docker.host(),
        t.elapsed().as_millis()
    ));
    let host = Host::new(config, docker, out, lock_wait)?;
    let report = match deploy::rollback(&host, verify).await? {
        deploy::RolledBack::Switched(report) => report,
        deploy::RolledBack::CanaryStopped(report) => {
            out.print(&format!(
                "rolled back the canary: {}",
                super::deploy::canary_line(&report)
            ));
            out.result(true, 0, super::deploy::canary_fields(&report));
            return Ok(());
        }
    };
    let parked = report.parked.as_ref().map_or(String::new(), |p| {
        format!("; {} parked ({})", p.color, p.image)
    });
    out.print(&format!(
        "rolled back: live on {} ({}, release {}, generation {}){parked}",
        report.live.color, report.live.image, report.live.release, report.generation
    ));
    out.result(true, 0, super::deploy::report_fields(&report));
    Ok(())
}
