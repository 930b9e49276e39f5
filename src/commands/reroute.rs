//! `bgd reroute`: routes the live and idle releases again to where their containers are now.

use super::deploy::{idle_json, release_json};
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
    let r = deploy::reroute(&host).await?;
    let mut text = format!(
        "rerouted: live traffic on {} ({}, release {}) at {} (generation {})",
        r.live.color,
        r.live.image,
        r.live.release,
        r.replicas.join(", "),
        r.generation
    );
    if r.was.is_empty() {
        text.push_str("\nthe routing was right already");
    } else {
        text.push_str("\nit was:");
        for w in &r.was {
            text.push_str(&format!("\n  - {w}"));
        }
    }
    out.print(&text);
    let mut f = Map::new();
    f.insert("app".into(), json!(config.app));
    f.insert("live".into(), release_json(Some(&r.live)));
    f.insert("idle".into(), idle_json(r.idle.as_ref()));
    f.insert("replicas".into(), json!(r.replicas));
    f.insert("generation".into(), json!(r.generation));
    f.insert("was".into(), json!(r.was));
    out.result(true, 0, f);
    Ok(())
}
