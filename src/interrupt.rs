//! SIGINT and SIGTERM. The first one asks the running command to stop at the next safe point:
//! the engine checks `check()` between steps and while it waits, and unwinds through its undo
//! path (a candidate is removed, the lock released). A switch already under way finishes: it is
//! one exec inside the nginx container. A second signal exits at once; the next bgd run finds
//! what was left and recovers.

use crate::error::Failure;
use std::sync::atomic::{AtomicI32, Ordering};

static SIGNAL: AtomicI32 = AtomicI32::new(0);

pub fn raise(signo: i32) {
    SIGNAL.store(signo, Ordering::SeqCst);
}

pub fn received() -> Option<i32> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

pub fn name(signo: i32) -> &'static str {
    match signo {
        2 => "SIGINT",
        15 => "SIGTERM",
        _ => "a signal",
    }
}

/// `Err` once a signal arrived: the caller stops here and undoes what it did.
pub fn check(at: &str) -> anyhow::Result<()> {
    match received() {
        None => Ok(()),
        Some(s) => Err(Failure::Interrupted(s, format!("interrupted by {} {at}", name(s))).into()),
    }
}
