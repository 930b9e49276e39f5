//! The deploy lock: one `deploy`, `switch` or `rollback` of an app at a time, whichever machine
//! runs it. It lives on the Docker host, as a directory in bgd's space in the nginx container
//! (`mkdir` is atomic), holding a description of its holder.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Holder {
    /// Random per run: only the run that took the lock releases it without --force.
    pub token: String,
    pub user: String,
    pub host: String,
    pub pid: u32,
    pub ci: Option<String>,
    pub command: String,
    pub since: String,
    /// The holder's machine and PID namespace: its pid means something only where both
    /// are ours. Absent in locks taken by older bgd versions (nothing is provable then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_ns: Option<String>,
}

/// What the lock directory says.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum LockState {
    #[default]
    Free,
    Held(Holder),
    /// The directory exists but its holder cannot be read: a run died while taking it, or
    /// wrote something bgd does not understand
    Unreadable,
}

impl LockState {
    pub fn holder(&self) -> Option<&Holder> {
        match self {
            LockState::Held(h) => Some(h),
            _ => None,
        }
    }
    pub fn is_held(&self) -> bool {
        *self != LockState::Free
    }
    /// "alice@laptop (pid 4242, ...) since ..." or what is known when nothing is.
    pub fn describe(&self) -> String {
        match self {
            LockState::Free => "nobody".into(),
            LockState::Held(h) => h.describe(),
            LockState::Unreadable => "a run whose description cannot be read".into(),
        }
    }
}

impl Holder {
    /// This process, running `command`.
    pub fn me(command: &str) -> Holder {
        let (user, host, ci) = crate::state::identity();
        Holder {
            token: crate::state::new_run_id(),
            user,
            host,
            pid: std::process::id(),
            ci,
            command: command.to_string(),
            since: crate::state::now(),
            boot_id: boot_id(),
            pid_ns: pid_namespace(),
        }
    }

    /// "alice@laptop (pid 4242, `bgd deploy web:v3`, github run 77) since 2026-..."
    pub fn describe(&self) -> String {
        let ci = self
            .ci
            .as_deref()
            .map_or(String::new(), |c| format!(", {c}"));
        format!(
            "{}@{} (pid {}, `{}`{ci}) since {}",
            self.user, self.host, self.pid, self.command, self.since
        )
    }

    /// The holder ran on this machine (same host name and boot), in this PID namespace, and
    /// its process is gone: nothing can release the lock but a successor. Anywhere else (a
    /// container sharing the host name, another machine, a lock of an older bgd) a pid
    /// proves nothing, so the lock stands.
    pub fn provably_gone(&self) -> bool {
        let (_, host, _) = crate::state::identity();
        let here = |mine: Option<String>, theirs: &Option<String>| {
            mine.is_some() && mine.as_ref() == theirs.as_ref()
        };
        self.host == host
            && here(boot_id(), &self.boot_id)
            && here(pid_namespace(), &self.pid_ns)
            && self.pid != std::process::id()
            && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
    }
}

/// This boot of this machine (changes at every reboot).
fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(id.trim().to_string()).filter(|i| !i.is_empty())
}

/// This process's PID namespace, e.g. `pid:[4026531836]`.
fn pid_namespace() -> Option<String> {
    let ns = std::fs::read_link("/proc/self/ns/pid").ok()?;
    Some(ns.to_string_lossy().into_owned())
}

/// The message for exit 5.
pub fn held_by(app: &str, holder: Option<&Holder>) -> String {
    match holder {
        Some(h) => format!(
            "another bgd run holds the deploy lock of {app}: {}. Wait for it (or pass --lock-wait 5m); if that run is gone for good, clear it with `bgd lock release --force`",
            h.describe()
        ),
        None => format!(
            "another bgd run holds the deploy lock of {app} (its holder could not be read). If no run is in progress, clear it with `bgd lock release --force`"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_differ_and_holders_describe_themselves() {
        let a = Holder::me("bgd deploy web:v2");
        let b = Holder::me("bgd rollback");
        assert_ne!(a.token, b.token);
        assert!(a.describe().contains("bgd deploy web:v2"));
        assert!(!a.provably_gone(), "this process is alive");
        let mut dead = a.clone();
        dead.pid = 999_999_999;
        assert!(dead.provably_gone());
        let mut other_ns = dead.clone();
        other_ns.pid_ns = Some("pid:[1]".into());
        assert!(
            !other_ns.provably_gone(),
            "another PID namespace's pid proves nothing"
        );
        let mut old = dead.clone();
        old.boot_id = None;
        assert!(!old.provably_gone(), "an older bgd's lock proves nothing");
        dead.host = "elsewhere".into();
        assert!(
            !dead.provably_gone(),
            "another machine's pid proves nothing"
        );
    }
}
