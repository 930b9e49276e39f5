//! `bgd history [-n N]`: what happened on this host, by whom, as bgd recorded it there.

use crate::config::Config;
use crate::deploy::{observe, Host};
use crate::docker::Docker;
use crate::output::Output;
use crate::state::HistoryEntry;
use anyhow::Result;
use serde_json::{json, Map};

pub async fn run(config: &Config, docker: &Docker, limit: usize, out: &Output) -> Result<()> {
    let host = Host::new(config, docker, out, std::time::Duration::ZERO)?;
    let obs = observe(&host).await?;
    let start = obs.history.len().saturating_sub(limit);
    let entries = &obs.history[start..];
    if entries.is_empty() {
        out.print(&format!(
            "no history recorded for {} on this host",
            config.app
        ));
    } else {
        out.print(&entries.iter().map(line).collect::<String>());
    }
    let mut f = Map::new();
    f.insert("app".into(), json!(config.app));
    f.insert("entries".into(), json!(entries));
    out.result(true, 0, f);
    Ok(())
}

/// One entry: when, what, how it ended, where traffic went, the image, who, how long; the
/// first line of the message when it did not end well.
fn line(e: &HistoryEntry) -> String {
    let arrow = match (e.from, e.to) {
        // traffic did not move: the release waits in `to` as the candidate
        (_, Some(t)) if e.command.ends_with("--no-switch") => format!("{t} candidate"),
        (_, Some(t)) if e.command == "discard" => format!("{t} discarded"),
        (Some(f), Some(t)) => format!("{f} -> {t}"),
        (None, Some(t)) => format!("-> {t}"),
        _ => String::new(),
    };
    let mut text = format!(
        "{}  {:<18} {:<11} {:<15} {}  by {}  ({} ms)\n",
        e.at,
        e.command,
        e.outcome,
        arrow,
        e.image.as_deref().unwrap_or("-"),
        e.who,
        e.duration_ms
    );
    // a drill's times are its message, whatever its outcome
    if (e.outcome != "ok" || e.command == "drill") && !e.message.is_empty() {
        let first = e.message.lines().next().unwrap_or_default();
        text.push_str(&format!("    {first}\n"));
    }
    if let Some(w) = &e.switch_window {
        text.push_str(&format!("    switch window: {}\n", w.summary()));
    }
    if let Some(w) = &e.switch_back_window {
        text.push_str(&format!("    switch back window: {}\n", w.summary()));
    }
    if let Some(r) = &e.rehearsal {
        text.push_str(&format!("    rehearsal: {r}\n"));
    }
    text
}
