//! `bgd render`: the nginx config bgd would write now for the host's current state.

use crate::config::Config;
use crate::deploy::{self, Host};
use crate::docker::Docker;
use crate::output::Output;
use anyhow::Result;
use serde_json::{json, Map};

pub async fn run(config: &Config, docker: &Docker, out: &Output) -> Result<()> {
    let host = Host::new(config, docker, out, std::time::Duration::ZERO)?;
    let text = deploy::render_now(&host).await?;
    out.print(&text);
    let mut f = Map::new();
    f.insert("config".into(), json!(text));
    out.result(true, 0, f);
    Ok(())
}
