//! `bgd prune [--plan]`: removes the images of this app's old releases (see
//! `deploy::prune`); `--plan` says what it would remove and why the rest stays.

use crate::config::Config;
use crate::deploy::prune::{self, Pruned};
use crate::deploy::Host;
use crate::docker::Docker;
use crate::error;
use crate::output::Output;
use anyhow::Result;
use serde_json::{json, Map};

pub async fn run(
    config: &Config,
    docker: &Docker,
    plan: bool,
    lock_wait: std::time::Duration,
    out: &Output,
) -> Result<()> {
    let host = Host::new(config, docker, out, lock_wait)?;
    let pruned = prune::prune(&host, !plan).await?;
    out.print(&report(config, &pruned, plan));
    let mut f = Map::new();
    f.insert("app".into(), json!(config.app));
    f.insert("plan".into(), json!(plan));
    f.insert("retain".into(), json!(config.retain));
    f.insert(
        if plan { "would_remove" } else { "removed" }.into(),
        json!(if plan {
            &pruned.plan.remove
        } else {
            &pruned.removed
        }),
    );
    f.insert(
        "kept".into(),
        json!(pruned
            .plan
            .keep
            .iter()
            .map(|(image, why)| json!({"image": image, "why": why}))
            .collect::<Vec<_>>()),
    );
    if !pruned.refused.is_empty() {
        // Docker would not remove some (a container started meanwhile): said, exit 6
        let why: Vec<String> = pruned
            .refused
            .iter()
            .map(|(i, e)| format!("{i}: {e}"))
            .collect();
        return Err(error::environment(format!(
            "{}; Docker refused: {}",
            prune::summary(&pruned),
            why.join("; ")
        )));
    }
    out.result(true, 0, f);
    Ok(())
}

/// What was (or would be) removed and what stays, for a person.
pub fn report(config: &Config, p: &Pruned, plan: bool) -> String {
    let gone = if plan { &p.plan.remove } else { &p.removed };
    let mut text = match (gone.is_empty(), plan) {
        (true, _) => format!(
            "nothing to prune for {} (retain: {})",
            config.app, config.retain
        ),
        (false, true) => format!("would remove {} image(s) of {}:", gone.len(), config.app),
        (false, false) => format!("removed {} image(s) of {}:", gone.len(), config.app),
    };
    for image in gone {
        text.push_str(&format!("\n  - {image}"));
    }
    if !p.plan.keep.is_empty() {
        text.push_str("\nkept:");
        for (image, why) in &p.plan.keep {
            text.push_str(&format!("\n  {image}  ({why})"));
        }
    }
    text
}
