//! Running bgd's in-container scripts and reading what they report, in one place. Each script
//! takes named inputs (`--key value`) and ends its output with one line
//! `BGD_OUTCOME <outcome> [key=value ...]`; lines before it are detail (nginx's own messages),
//! and `BGD_HOLDER <json>` names the holder of the deploy lock.

use super::NginxError;
use crate::docker::Docker;
use crate::lock::Holder;
use std::time::Duration;

/// The install script, after `find_nginx` (find-nginx.sh), which runs nginx wherever the
/// image put it.
const INSTALL_SH: &str = concat!(include_str!("find-nginx.sh"), include_str!("install.sh"));
/// Runs the container's nginx with the exec's arguments (`sh -c RUN_NGINX bgd-nginx -v`).
pub const RUN_NGINX: &str = concat!(
    include_str!("find-nginx.sh"),
    "find_nginx || { echo 'bgd: no nginx binary in this container' >&2; exit 127; }\n",
    "run_nginx \"$@\"\n"
);
const LOCK_SH: &str = include_str!("lock.sh");
const OUTCOME: &str = "BGD_OUTCOME ";
const HOLDER: &str = "BGD_HOLDER ";

#[derive(Debug, Clone, Copy)]
pub(super) enum Script {
    Install,
    Lock,
}

/// What a script reported.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Report {
    pub outcome: String,
    /// `key=value` pairs after the outcome
    pub fields: Vec<(String, String)>,
    /// The `BGD_HOLDER` line's JSON, when there was one
    holder: Option<String>,
    /// Everything else it printed, trimmed
    pub detail: String,
}

impl Script {
    fn text(self) -> (&'static str, &'static str) {
        match self {
            Script::Install => ("bgd-install", INSTALL_SH),
            Script::Lock => ("bgd-lock", LOCK_SH),
        }
    }

    /// Runs the script in `container` with `args` as `--key value` pairs.
    pub async fn run(
        self,
        docker: &Docker,
        container: &str,
        args: &[(&str, &str)],
        limit: Duration,
    ) -> Result<Report, NginxError> {
        self.run_answering(docker, container, args, limit, None)
            .await
    }

    /// `run`, answering the script once when it asks (`reply`).
    pub async fn run_answering(
        self,
        docker: &Docker,
        container: &str,
        args: &[(&str, &str)],
        limit: Duration,
        reply: Option<crate::docker::Reply>,
    ) -> Result<Report, NginxError> {
        let (name, text) = self.text();
        let mut cmd = vec!["sh", "-c", text, name];
        for (k, v) in args {
            cmd.push(k);
            cmd.push(v);
        }
        let out = docker.exec_answering(container, &cmd, limit, reply).await?;
        let printed = format!("{}{}", out.stdout, out.stderr);
        parse(&printed).ok_or_else(|| match out.exit_code {
            127 => NginxError::Broken(format!(
                "container {container} has no shell (sh): bgd needs sh and nginx in the nginx image ({})",
                printed.trim()
            )),
            code => NginxError::Unknown(format!(
                "bgd's {name} script in {container} stopped without saying why (exit {code}): {}",
                printed.trim()
            )),
        })
    }
}

impl Report {
    /// A numeric field, e.g. `stopped=2`.
    pub fn field<T: std::str::FromStr>(&self, key: &str) -> Option<T> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.parse().ok())
    }

    /// Why the record asked for was not written (`recorded=0`): the exec's `cannot write`
    /// lines, or a general word when it gave none. `None` when it was written.
    pub fn unrecorded(&self) -> Option<String> {
        if self.field::<u8>("recorded") != Some(0) {
            return None;
        }
        let said: Vec<&str> = self
            .detail
            .lines()
            .filter(|l| l.starts_with("cannot "))
            .collect();
        Some(if said.is_empty() {
            "the script could not write it".to_string()
        } else {
            said.join("; ")
        })
    }

    /// The lock holder it named, when readable.
    pub fn holder(&self) -> Option<Box<Holder>> {
        serde_json::from_str(self.holder.as_deref()?).ok()
    }

    /// An outcome the caller does not handle: the script could not do its work
    /// (`write-failed`, `failed`), or refused bgd's own input (`bad-input`, a bug in bgd).
    pub fn unexpected(&self, container: &str) -> NginxError {
        let msg = format!(
            "bgd's script in {container} reported {}: {}",
            self.outcome, self.detail
        );
        match self.outcome.as_str() {
            "write-failed" | "failed" => NginxError::Broken(msg),
            _ => NginxError::Bug(format!("{msg} (a bug in bgd: please report it)")),
        }
    }
}

/// Reads a script's output; `None` when it printed no outcome line.
pub(super) fn parse(text: &str) -> Option<Report> {
    let mut detail = Vec::new();
    let mut holder = None;
    let mut outcome = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(OUTCOME) {
            outcome = Some(rest.trim().to_string());
        } else if let Some(json) = line.strip_prefix(HOLDER) {
            holder = Some(json.trim().to_string()).filter(|j| !j.is_empty());
        } else {
            detail.push(line);
        }
    }
    let outcome = outcome?;
    let mut words = outcome.split_whitespace();
    let name = words.next()?.to_string();
    let fields = words
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Some(Report {
        outcome: name,
        fields,
        holder,
        detail: detail.join("\n").trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_outcomes_fields_holders_and_detail() {
        let r = parse("nginx: [emerg] unknown directive\nBGD_OUTCOME invalid\n").unwrap();
        assert_eq!(r.outcome, "invalid");
        assert_eq!(r.detail, "nginx: [emerg] unknown directive");
        let r = parse("BGD_OUTCOME applied stopped=2\n").unwrap();
        assert_eq!(r.field::<u32>("stopped"), Some(2));
        let json = r#"{"token":"t1","user":"u","host":"h","pid":7,"ci":null,"command":"bgd deploy x","since":"2026-01-01T00:00:00Z"}"#;
        let r = parse(&format!("BGD_HOLDER {json}\nBGD_OUTCOME held\n")).unwrap();
        assert_eq!(r.holder().map(|h| h.pid), Some(7));
        assert_eq!(r.detail, "");
        let r = parse("BGD_HOLDER \nBGD_OUTCOME held\n").unwrap();
        assert!(r.holder().is_none());
        assert_eq!(parse("sh: nginx: not found\n"), None);
    }
}
