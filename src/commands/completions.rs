use crate::cli::Cli;
use crate::output::Output;
use anyhow::Result;
use clap::CommandFactory;
use serde_json::{json, Map};

/// Prints the completion script; with `--json` it travels in the result line (`script`), so
/// stdout stays JSON Lines.
pub fn run(shell: clap_complete::Shell, out: &Output) -> Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "bgd", &mut script);
    let script = String::from_utf8_lossy(&script).into_owned();
    out.print(&script);
    let mut f = Map::new();
    f.insert("shell".into(), json!(shell.to_string()));
    f.insert("script".into(), json!(script));
    out.result(true, 0, f);
    Ok(())
}
