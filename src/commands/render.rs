use crate::config::Config;
use crate::deploy::Engine;
use crate::docker::Docker;
use crate::output::Output;
use anyhow::Result;
use serde_json::{json, Map};

/// Prints the nginx config bgd would write now for the host's current state.
pub async fn run(config: &Config, out: &Output) -> Result<()> {
    let docker = Docker::connect().await?;
    let engine = Engine::new(config, &docker, out, std::time::Duration::ZERO)?;
    let text = engine.render_now().await?;
    out.print(&text);
    let mut f = Map::new();
    f.insert("config".into(), json!(text));
    out.result(true, 0, f);
    Ok(())
}
