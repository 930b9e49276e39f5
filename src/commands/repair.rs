//! `bgd repair`: rebuilds bgd's record from what nginx routes and the labels; says what it
//! decided. Changes no routing.

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
    let repaired = deploy::repair(&host).await?;
    let s = &repaired.state;
    let describe = |r: Option<&crate::model::Release>| {
        r.map_or("nothing".to_string(), |r| {
            format!("{} ({}, release {})", r.color, r.image, r.release)
        })
    };
    let idle = s.idle.as_ref().map_or("nothing".to_string(), |i| {
        format!("{} {}", i.role.as_str(), describe(Some(&i.release)))
    });
    let mut text = format!(
        "repaired the record of {} from nginx and the labels: live {}; idle {}; generation {}",
        config.app,
        describe(s.live.as_ref()),
        idle,
        s.generation
    );
    if repaired.was.is_empty() {
        text.push_str("\nthe record agreed with nginx already");
    } else {
        text.push_str(&format!("\nit was: {}", repaired.was.join("; ")));
    }
    if s.live
        .as_ref()
        .is_some_and(|l| l.image == deploy::NO_CONTAINER)
    {
        out.warn("nginx routes live traffic to a release whose containers are gone: traffic is failing; deploy a release now");
    }
    out.print(&text);
    let mut f = Map::new();
    f.insert("app".into(), json!(config.app));
    f.insert("live".into(), release_json(s.live.as_ref()));
    f.insert("idle".into(), idle_json(s.idle.as_ref()));
    f.insert("generation".into(), json!(s.generation));
    f.insert("was".into(), json!(repaired.was));
    out.result(true, 0, f);
    Ok(())
}
