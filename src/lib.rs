//! bgd: blue-green deployments of containerised HTTP services on Docker hosts.
//!
//! The flow is one way: arguments (`cli`) -> config (`config`) -> observed host state
//! (`deploy::observe`) -> plan (`deploy::plan`, pure) -> steps (`deploy::run`) -> report
//! (`output`). bollard lives only in `docker`; nginx text is rendered by pure code in
//! `nginx::render`.

pub mod analysis;
pub mod cli;
pub mod commands;
pub mod config;
pub mod deploy;
pub mod docker;
pub mod error;
pub mod interrupt;
pub mod lock;
pub mod model;
pub mod nginx;
pub mod output;
pub mod probe;
pub mod state;
pub mod tls;

use output::{Mode, Output};

/// Runs a parsed command line and returns the process exit code (docs/exit-codes.md).
pub fn run(cli: cli::Cli) -> i32 {
    let mode = if cli.json {
        Mode::Json
    } else if cli.quiet {
        Mode::Quiet
    } else {
        Mode::Human
    };
    let out = Output::new(mode, cli.verbose, cli.command.name());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let err = anyhow::anyhow!("cannot start the async runtime: {e}");
            out.error(&err, 1);
            return 1;
        }
    };
    let mutating = matches!(
        cli.command,
        cli::Command::Deploy { .. }
            | cli::Command::Rollback { .. }
            | cli::Command::Switch
            | cli::Command::Canary { .. }
            | cli::Command::Promote
            | cli::Command::Repair
            | cli::Command::Reroute
            | cli::Command::Discard
            | cli::Command::Tls { .. }
            | cli::Command::Drill
            | cli::Command::Prune { .. }
    );
    match runtime.block_on(run_until_signalled(&cli, &out, mutating)) {
        Ok(()) => 0,
        Err(err) => {
            let code = error::exit_code(&err);
            if !matches!(error::failure(&err), Some(error::Failure::Reported(_))) {
                out.error(&err, code);
            }
            code
        }
    }
}

/// Runs the command; the first SIGINT/SIGTERM asks a deploy, switch or rollback to stop at its
/// next safe point (and undo), and stops any other command at once; a second one exits at once.
async fn run_until_signalled(cli: &cli::Cli, out: &Output, mutating: bool) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let work = commands::dispatch(cli, out);
    tokio::pin!(work);
    let (mut int, mut term) = match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(i), Ok(t)) => (i, t),
        _ => return work.await,
    };
    loop {
        let signo = tokio::select! {
            result = &mut work => return result,
            _ = int.recv() => 2,
            _ = term.recv() => 15,
        };
        if interrupt::received().is_some() || !mutating {
            if mutating {
                out.warn(&format!(
                    "{} again: stopping now without cleaning up; the next bgd run finds and removes what is left",
                    interrupt::name(signo)
                ));
            }
            std::process::exit(128 + signo);
        }
        interrupt::raise(signo);
        out.warn(&format!(
            "{}: stopping at the next safe point and undoing (send it again to stop at once)",
            interrupt::name(signo)
        ));
    }
}
