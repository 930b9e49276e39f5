//! The engine's deploy lock API: take it (waiting up to `--lock-wait`, taking over a lock
//! whose holder is provably gone), release it, inspect it, clear it by force. `deploy`,
//! `switch`, `rollback` and `bgd lock` all go through here.

use super::host::Host;
use super::observe::observe;
use crate::error;
use crate::lock::{held_by, Holder, LockState};
use crate::nginx::NginxError;
use anyhow::Result;
use std::time::{Duration, Instant};

/// Takes the deploy lock for `command`, waiting up to `--lock-wait` while another run holds
/// it, and taking over a lock whose holder is provably gone (with a warning).
pub async fn acquire(host: &Host<'_>, command: &str) -> Result<Holder> {
    let me = Holder::me(command);
    let nginx = host.nginx();
    let app = &host.config.app;
    let deadline = Instant::now() + host.lock_wait;
    let mut said_waiting = false;
    loop {
        let other = match nginx.lock(&me).await {
            Ok(()) => return Ok(me),
            Err(NginxError::Locked(other)) => other,
            Err(e) => return Err(host.nginx_failure(e, "taking the deploy lock")),
        };
        if let Some(stale) = other.as_ref().filter(|h| h.provably_gone()) {
            host.out.warn(&format!(
                "taking over the deploy lock of {app}: its holder, {}, is no longer running",
                stale.describe()
            ));
            match nginx.take_over(&stale.token, &me).await {
                Ok(()) => return Ok(me),
                Err(NginxError::Locked(_)) => {}
                Err(e) => return Err(host.nginx_failure(e, "taking over the deploy lock")),
            }
        }
        if Instant::now() >= deadline {
            return Err(error::locked(held_by(app, other.as_deref())));
        }
        if !said_waiting {
            host.out.info(&format!(
                "waiting for the deploy lock of {app} ({})",
                other
                    .as_ref()
                    .map_or("holder unknown".into(), |h| h.describe())
            ));
            said_waiting = true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Releases the lock `me` holds; a lock no longer ours is left alone, with a warning.
pub async fn release(host: &Host<'_>, me: &Holder) {
    match host.nginx().unlock(Some(&me.token)).await {
        Ok(()) => {}
        Err(NginxError::Locked(other)) => host.out.warn(&format!(
            "the deploy lock was no longer ours to release (now held by {})",
            other.as_ref().map_or("unknown".into(), |h| h.describe())
        )),
        Err(e) => host.out.warn(&format!(
            "could not release the deploy lock: {e:#}; `bgd lock release --force` clears it"
        )),
    }
}

/// Who holds the deploy lock, if anyone.
pub async fn state(host: &Host<'_>) -> Result<LockState> {
    Ok(observe(host).await?.lock)
}

/// `bgd lock release [--force]`: removes the lock when its holder is provably gone, or with
/// `force` whatever holds it (half-written locks, and take-overs that died, included).
/// Returns what held it.
pub async fn clear(host: &Host<'_>, force: bool) -> Result<LockState> {
    let held = state(host).await?;
    let gone = held.holder().is_some_and(Holder::provably_gone);
    if held.is_held() && !force && !gone {
        return Err(error::locked(format!(
            "the deploy lock of {} is held by {}, which may still be running; if you are sure it is not, use `bgd lock release --force`",
            host.config.app,
            held.describe()
        )));
    }
    if !held.is_held() && !force {
        return Ok(held);
    }
    // without --force, only the stale holder seen above is removed: a run that took the lock
    // over meanwhile keeps it
    let token = if force {
        None
    } else {
        held.holder().map(|h| h.token.as_str())
    };
    match host.nginx().unlock(token).await {
        Ok(()) => Ok(held),
        Err(e) => Err(host.nginx_failure(e, "removing the deploy lock")),
    }
}
