//! Error kinds that decide bgd's exit code. docs/exit-codes.md says the same.
//!
//! Code deep inside raises one of these; commands add context with anyhow. `exit_code` finds
//! the first kind in the chain, so context never changes the code a script sees. Decisions
//! about an error (record it? fall back? switch back?) match its kind with `failure`, never
//! its exit code.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Failure {
    /// Usage or config error; nothing was touched. Exit 2.
    #[error("{0}")]
    Config(String),
    /// The request cannot be carried out as asked (e.g. nothing parked to roll back to);
    /// nothing was touched. Exit 2.
    #[error("{0}")]
    Refused(String),
    /// The candidate failed a gate: readiness, migration, smoke or compatibility. Exit 3.
    #[error("{0}")]
    Rejected(String),
    /// Switched, verification failed, switched back. Exit 4.
    #[error("{0}")]
    RolledBack(String),
    /// Another operation holds the deploy lock. Exit 5.
    #[error("{0}")]
    Locked(String),
    /// Docker or nginx unreachable, image missing, a timeout. Exit 6.
    #[error("{0}")]
    Environment(String),
    /// bgd cannot confirm that a healthy color is live. Exit 7.
    #[error("{0}")]
    Unsafe(String),
    /// Stopped by a signal (its number) at a safe point. Exit 128 + the signal (130, 143).
    #[error("{1}")]
    Interrupted(i32, String),
    /// The command already reported its result (e.g. `status` finding live traffic unsafe):
    /// exit with this code, printing nothing more.
    #[error("exit {0}")]
    Reported(i32),
}

impl Failure {
    pub fn code(&self) -> i32 {
        match self {
            Failure::Config(_) | Failure::Refused(_) => 2,
            Failure::Rejected(_) => 3,
            Failure::RolledBack(_) => 4,
            Failure::Locked(_) => 5,
            Failure::Environment(_) => 6,
            Failure::Unsafe(_) => 7,
            Failure::Interrupted(signo, _) => 128 + signo,
            Failure::Reported(code) => *code,
        }
    }

    /// How the history names a command that ended with this failure.
    pub fn outcome(&self) -> &'static str {
        match self {
            Failure::Rejected(_) => "rejected",
            Failure::RolledBack(_) => "rolled-back",
            Failure::Interrupted(..) => "interrupted",
            _ => "failed",
        }
    }
}

/// The first `Failure` in an error chain, if any.
pub fn failure(err: &anyhow::Error) -> Option<&Failure> {
    err.chain().find_map(|e| e.downcast_ref::<Failure>())
}

/// The exit code for an error chain: the first `Failure` in it, else 1 (internal error).
pub fn exit_code(err: &anyhow::Error) -> i32 {
    failure(err).map_or(1, Failure::code)
}

/// A request refused before anything changed (nothing to record).
pub fn is_refused(err: &anyhow::Error) -> bool {
    matches!(failure(err), Some(Failure::Refused(_)))
}

pub fn is_interrupted(err: &anyhow::Error) -> bool {
    matches!(failure(err), Some(Failure::Interrupted(..)))
}

/// Another run holds the deploy lock (worth waiting for, or falling back from).
pub fn is_locked(err: &anyhow::Error) -> bool {
    matches!(failure(err), Some(Failure::Locked(_)))
}

pub fn config(msg: impl Into<String>) -> anyhow::Error {
    Failure::Config(msg.into()).into()
}
pub fn rejected(msg: impl Into<String>) -> anyhow::Error {
    Failure::Rejected(msg.into()).into()
}
/// Live traffic went to the candidate, failed its check and went back: exit 4.
pub fn rolled_back(msg: impl Into<String>) -> anyhow::Error {
    Failure::RolledBack(msg.into()).into()
}
pub fn environment(msg: impl Into<String>) -> anyhow::Error {
    Failure::Environment(msg.into()).into()
}
pub fn unsafe_state(msg: impl Into<String>) -> anyhow::Error {
    Failure::Unsafe(msg.into()).into()
}
pub fn refused(msg: impl Into<String>) -> anyhow::Error {
    Failure::Refused(msg.into()).into()
}
pub fn locked(msg: impl Into<String>) -> anyhow::Error {
    Failure::Locked(msg.into()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn context_keeps_the_code_and_the_kind() {
        let err = Err::<(), _>(rejected("smoke failed"))
            .context("deploy web")
            .unwrap_err();
        assert_eq!(exit_code(&err), 3);
        assert_eq!(failure(&err).map(Failure::outcome), Some("rejected"));
        assert_eq!(exit_code(&anyhow::anyhow!("boom")), 1);
        assert_eq!(exit_code(&environment("x")), 6);
        assert_eq!(exit_code(&unsafe_state("x")), 7);
        assert_eq!(exit_code(&config("x")), 2);
        assert!(is_refused(&refused("nothing parked").context("rollback")));
        assert!(!is_refused(&config("bad key")));
        let int: anyhow::Error = Failure::Interrupted(15, "stop".into()).into();
        assert!(is_interrupted(&int));
        assert_eq!(exit_code(&int), 143);
    }
}
