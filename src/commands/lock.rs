use crate::cli::LockAction;
use crate::config::Config;
use crate::deploy::observe;
use crate::docker::Docker;
use crate::error::{self, Failure};
use crate::lock::Holder;
use crate::nginx::Nginx;
use crate::output::Output;
use anyhow::Result;
use serde_json::{json, Map, Value};

/// `bgd lock status` and `bgd lock release [--force]`.
pub async fn run(config: &Config, action: &LockAction, out: &Output) -> Result<()> {
    let docker = Docker::connect().await?;
    let obs = observe(&docker, config).await?;
    let holder = obs.lock.clone();
    match action {
        LockAction::Status => {
            match &holder {
                None => out.print(&format!("the deploy lock of {} is free", config.app)),
                Some(h) => out.print(&format!(
                    "the deploy lock of {} is held by {}{}",
                    config.app,
                    h.describe(),
                    if h.provably_gone() {
                        " (that process is gone: the next deploy takes the lock over)"
                    } else {
                        ""
                    }
                )),
            }
            let mut f = Map::new();
            f.insert("app".into(), json!(config.app));
            f.insert("held".into(), json!(holder.is_some()));
            f.insert("holder".into(), holder_json(holder.as_ref()));
            out.result(true, 0, f);
            Ok(())
        }
        LockAction::Release { force } => {
            let mut f = Map::new();
            f.insert("app".into(), json!(config.app));
            let Some(h) = holder else {
                out.print(&format!("the deploy lock of {} is free", config.app));
                f.insert("released".into(), Value::Null);
                out.result(true, 0, f);
                return Ok(());
            };
            if !force && !h.provably_gone() {
                return Err(Failure::Locked(format!(
                    "the deploy lock of {} is held by {}, which may still be running; if you are sure it is not, use `bgd lock release --force`",
                    config.app,
                    h.describe()
                ))
                .into());
            }
            if Nginx::new(&docker, &config.lb.container, &config.app)
                .unlock(None)
                .await?
                .is_err()
            {
                return Err(error::environment("the lock could not be removed"));
            }
            out.print(&format!(
                "released the deploy lock of {} (it was held by {})",
                config.app,
                h.describe()
            ));
            f.insert("released".into(), holder_json(Some(&h)));
            out.result(true, 0, f);
            Ok(())
        }
    }
}

fn holder_json(h: Option<&Holder>) -> Value {
    h.map_or(Value::Null, |h| {
        json!({"user": h.user, "host": h.host, "pid": h.pid, "ci": h.ci, "command": h.command, "since": h.since})
    })
}
