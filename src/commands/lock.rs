//! `bgd lock status` and `bgd lock release [--force]`, through the engine's lock API.

use crate::cli::LockAction;
use crate::config::Config;
use crate::deploy::{lock, Host};
use crate::docker::Docker;
use crate::lock::{Holder, LockState};
use crate::output::Output;
use anyhow::Result;
use serde_json::{json, Map, Value};

pub async fn run(
    config: &Config,
    docker: &Docker,
    action: &LockAction,
    out: &Output,
) -> Result<()> {
    let host = Host::new(config, docker, out, std::time::Duration::ZERO)?;
    let app = &config.app;
    let mut f = Map::new();
    f.insert("app".into(), json!(app));
    match action {
        LockAction::Status => {
            let held = lock::state(&host).await?;
            let note = match &held {
                LockState::Held(h) if h.provably_gone() => {
                    " (that process is gone: the next deploy takes the lock over)"
                }
                LockState::Unreadable => {
                    " (a run died while taking it? If none is in progress: `bgd lock release --force`)"
                }
                _ => "",
            };
            match &held {
                LockState::Free => out.print(&format!("the deploy lock of {app} is free")),
                held => out.print(&format!(
                    "the deploy lock of {app} is held by {}{note}",
                    held.describe()
                )),
            }
            f.insert("held".into(), json!(held.is_held()));
            f.insert("holder".into(), holder_json(held.holder()));
        }
        LockAction::Release { force } => {
            let released = lock::clear(&host, *force).await?;
            match &released {
                LockState::Free => out.print(&format!("the deploy lock of {app} is free")),
                held => out.print(&format!(
                    "released the deploy lock of {app} (it was held by {})",
                    held.describe()
                )),
            }
            f.insert("released".into(), holder_json(released.holder()));
        }
    }
    out.result(true, 0, f);
    Ok(())
}

fn holder_json(h: Option<&Holder>) -> Value {
    h.map_or(Value::Null, |h| {
        json!({"user": h.user, "host": h.host, "pid": h.pid, "ci": h.ci, "command": h.command, "since": h.since})
    })
}
