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
}

impl Holder {
    /// This process, running `command`.
    pub fn me(command: &str) -> Holder {
        let (user, host, ci) = crate::state::identity();
        Holder {
            token: token(),
            user,
            host,
            pid: std::process::id(),
            ci,
            command: command.to_string(),
            since: crate::state::now(),
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

    /// The holder ran on this machine and its process is gone: nothing can release the lock
    /// but a successor. Elsewhere nothing is provable, so the lock stands.
    pub fn provably_gone(&self) -> bool {
        let (_, host, _) = crate::state::identity();
        self.host == host
            && self.pid != std::process::id()
            && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
    }
}

fn token() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut x = nanos ^ ((std::process::id() as u128) << 64);
    // a few rounds of xorshift so consecutive runs differ in every digit
    for _ in 0..4 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    format!("{:016x}", x as u64)
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
        dead.host = "elsewhere".into();
        assert!(
            !dead.provably_gone(),
            "another machine's pid proves nothing"
        );
    }
}
