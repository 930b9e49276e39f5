//! `bgd tls reload`: nginx serves the certificate bgd.yaml names now, the routing unchanged.

use crate::config::Config;
use crate::deploy::{self, Host};
use crate::docker::Docker;
use crate::output::Output;
use crate::tls::CertInfo;
use anyhow::Result;
use serde_json::{json, Map, Value};

pub async fn reload(
    config: &Config,
    docker: &Docker,
    lock_wait: std::time::Duration,
    out: &Output,
) -> Result<()> {
    let host = Host::new(config, docker, out, lock_wait)?;
    let r = deploy::tls_reload(&host).await?;
    let now = crate::tls::now();
    let mut text = match &r.now {
        Some(c) => format!(
            "nginx serves the certificate {} (generation {})",
            c.summary(now),
            r.generation
        ),
        None => format!("nginx reloaded (generation {})", r.generation),
    };
    let same = match (&r.now, &r.before) {
        (Some(n), Some(b)) => n.fingerprint == b.fingerprint,
        _ => false,
    };
    if same {
        text.push_str("\nit served that certificate already");
    } else if let Some(b) = &r.before {
        text.push_str(&format!("\nit was: {}", b.summary(now)));
    }
    out.print(&text);
    let mut f = Map::new();
    f.insert("app".into(), json!(config.app));
    f.insert("generation".into(), json!(r.generation));
    f.insert("certificate".into(), cert_json(r.now.as_ref(), now));
    f.insert("before".into(), cert_json(r.before.as_ref(), now));
    f.insert("changed".into(), json!(!same));
    out.result(true, 0, f);
    Ok(())
}

/// A certificate as `--json` shows it (status too).
pub fn cert_json(c: Option<&CertInfo>, now: i64) -> Value {
    c.map_or(Value::Null, |c| {
        json!({
            "subject": c.subject,
            "issuer": c.issuer,
            "names": c.names,
            "not_after": c.expires(),
            "days_left": c.days_left(now),
            "expired": c.expired(now),
            "sha256": c.fingerprint,
        })
    })
}
