//! One file per command; `dispatch` is the one `match`. Handlers get plain values, never clap
//! types beyond the command's own fields.

mod canary;
mod completions;
mod deploy;
mod discard;
mod drill;
mod history;
mod init;
mod lock;
mod plan;
mod prune;
mod render;
mod repair;
mod reroute;
mod rollback;
mod status;
mod switch;
pub(crate) mod tls;
mod validate;

use crate::cli::{Cli, Command};
use crate::config::{self, Config};
use crate::docker::Docker;
use crate::error;
use crate::output::Output;
use anyhow::Result;

pub async fn dispatch(cli: &Cli, out: &Output) -> Result<()> {
    match &cli.command {
        Command::Init { force } => init::run(*force, out),
        Command::Completions { shell } => completions::run(*shell, out),
        Command::Validate => validate::run(&usable(load(cli, out)?, true, out)?, out),
        command => {
            // the config first (its errors say nothing of Docker), then the daemon
            let looks_only = matches!(
                command,
                Command::Status | Command::History { .. } | Command::Lock { .. }
            );
            let config = usable(load(cli, out)?, !looks_only, out)?;
            let docker = connect(cli, out).await?;
            let config = match docker.tcp_host() {
                Some(host) => {
                    let (config, warnings) = config.for_tcp_daemon(host);
                    for w in &warnings {
                        out.warn(w);
                    }
                    config
                }
                None => config,
            };
            let done = with_docker(cli, command, &config, &docker, out).await;
            // after the result: never in --json, whose result line is the last
            if !cli.json {
                out.detail(&format!("Docker API requests: {}", docker.calls()));
            }
            done
        }
    }
}

/// The commands that work on the Docker host.
async fn with_docker(
    cli: &Cli,
    command: &Command,
    config: &Config,
    docker: &Docker,
    out: &Output,
) -> Result<()> {
    match command {
        Command::Deploy {
            image,
            no_switch,
            canary,
            plan,
        } => {
            let request = crate::deploy::DeployRequest {
                image: image.clone(),
                no_switch: *no_switch,
                canary: *canary,
            };
            deploy::run(config, docker, &request, *plan, lock_wait(cli)?, out).await
        }
        Command::Rollback { verify } => {
            rollback::run(config, docker, *verify, lock_wait(cli)?, out).await
        }
        Command::Status => status::run(config, docker, out).await,
        Command::Drill => drill::run(config, docker, lock_wait(cli)?, out).await,
        Command::Repair => repair::run(config, docker, lock_wait(cli)?, out).await,
        Command::Reroute => reroute::run(config, docker, lock_wait(cli)?, out).await,
        Command::Discard => discard::run(config, docker, lock_wait(cli)?, out).await,
        Command::Tls { action } => match action {
            crate::cli::TlsAction::Reload => {
                tls::reload(config, docker, lock_wait(cli)?, out).await
            }
        },
        Command::Prune { plan } => prune::run(config, docker, *plan, lock_wait(cli)?, out).await,
        Command::History { limit } => history::run(config, docker, *limit, out).await,
        Command::Render => render::run(config, docker, out).await,
        Command::Switch => switch::run(config, docker, lock_wait(cli)?, out).await,
        Command::Promote => switch::promote(config, docker, lock_wait(cli)?, out).await,
        Command::Canary { percent } => {
            canary::run(config, docker, *percent, lock_wait(cli)?, out).await
        }
        Command::Lock { action } => lock::run(config, docker, action, out).await,
        Command::Init { .. } | Command::Completions { .. } | Command::Validate => Err(
            anyhow::anyhow!("internal: {} needs no Docker", command.name()),
        ),
    }
}

/// The daemon, found as the docker CLI finds it (`--context`, `DOCKER_HOST`, the current
/// context, the local socket), connected.
async fn connect(cli: &Cli, out: &Output) -> Result<Docker> {
    let env = |name: &str| std::env::var(name).ok();
    let resolved =
        crate::docker::endpoint::resolve(cli.context.as_deref(), &env).map_err(error::config)?;
    if let Some(warning) = &resolved.warning {
        out.warn(warning);
    }
    let endpoint = &resolved.endpoint;
    let docker = Docker::connect(endpoint)
        .await?
        .with_config_dir(crate::docker::endpoint::config_dir(&env));
    // which machine this acts on, said whenever it is not this one's own socket
    if !endpoint.host.starts_with("unix://") {
        out.info(&format!(
            "Docker host {} (from {})",
            endpoint.host, endpoint.source
        ));
    }
    Ok(docker)
}

fn lock_wait(cli: &Cli) -> Result<std::time::Duration> {
    match &cli.lock_wait {
        None => Ok(std::time::Duration::ZERO),
        Some(text) => {
            config::parse_duration(text).map_err(|e| error::config(format!("--lock-wait: {e}")))
        }
    }
}

/// `lb.tls`'s files must be usable by a command that installs a config (`strict`); one that
/// only looks warns and goes on.
fn usable(config: Config, strict: bool, out: &Output) -> Result<Config> {
    if let Some(why) = config.lb.tls_problem() {
        let msg = format!("{}: {why}", config.file.display());
        if strict {
            return Err(error::config(format!("{msg}. Nothing was changed")));
        }
        out.warn(&format!(
            "{msg}: a deploy, rollback or any other change refuses until it is fixed"
        ));
    }
    Ok(config)
}

/// Loads the config and registers its secrets with the output before anything is printed.
fn load(cli: &Cli, out: &Output) -> Result<Config> {
    let config = config::load(&config::default_path(cli.file.as_deref()))?;
    out.add_secrets(config.secrets());
    Ok(config)
}
