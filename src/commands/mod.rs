//! One file per command; `dispatch` is the one `match`. Handlers get plain values, never clap
//! types beyond the command's own fields.

mod completions;
mod deploy;
mod history;
mod init;
mod lock;
mod plan;
mod render;
mod repair;
mod reroute;
mod rollback;
mod status;
mod switch;
mod validate;

use crate::cli::{Cli, Command};
use crate::config::{self, Config};
use crate::error;
use crate::output::Output;
use anyhow::Result;

pub async fn dispatch(cli: &Cli, out: &Output) -> Result<()> {
    match &cli.command {
        Command::Init { force } => init::run(*force, out),
        Command::Completions { shell } => completions::run(*shell, out),
        Command::Validate => validate::run(&load(cli, out)?, out),
        Command::Deploy {
            image,
            no_switch,
            plan,
        } => {
            let request = crate::deploy::DeployRequest {
                image: image.clone(),
                no_switch: *no_switch,
            };
            deploy::run(&load(cli, out)?, &request, *plan, lock_wait(cli)?, out).await
        }
        Command::Rollback { verify } => {
            rollback::run(&load(cli, out)?, *verify, lock_wait(cli)?, out).await
        }
        Command::Status => status::run(&load(cli, out)?, out).await,
        Command::Repair => repair::run(&load(cli, out)?, lock_wait(cli)?, out).await,
        Command::Reroute => reroute::run(&load(cli, out)?, lock_wait(cli)?, out).await,
        Command::History { limit } => history::run(&load(cli, out)?, *limit, out).await,
        Command::Render => render::run(&load(cli, out)?, out).await,
        Command::Switch => switch::run(&load(cli, out)?, lock_wait(cli)?, out).await,
        Command::Lock { action } => lock::run(&load(cli, out)?, action, out).await,
    }
}

fn lock_wait(cli: &Cli) -> Result<std::time::Duration> {
    match &cli.lock_wait {
        None => Ok(std::time::Duration::ZERO),
        Some(text) => {
            config::parse_duration(text).map_err(|e| error::config(format!("--lock-wait: {e}")))
        }
    }
}

/// Loads the config and registers its secrets with the output before anything is printed.
fn load(cli: &Cli, out: &Output) -> Result<Config> {
    let config = config::load(&config::default_path(cli.file.as_deref()))?;
    out.add_secrets(config.secrets());
    Ok(config)
}
