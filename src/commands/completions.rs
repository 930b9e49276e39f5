use crate::cli::Cli;
use crate::output::Output;
use anyhow::Result;
use clap::CommandFactory;

pub fn run(shell: clap_complete::Shell, _out: &Output) -> Result<()> {
    clap_complete::generate(shell, &mut Cli::command(), "bgd", &mut std::io::stdout());
    Ok(())
}
