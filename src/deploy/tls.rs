//! `lb.tls` on the host: the certificate the config names (from bgd.yaml's files, or read
//! from the nginx container), the one nginx serves now (what it presents in the TLS handshake
//! of a probe of `lb.url`), and the judgement a deploy or `bgd tls reload` makes before it
//! changes anything.

use super::host::Host;
use crate::config::TlsSource;
use crate::error;
use crate::tls::{self, CertInfo};
use anyhow::Result;

/// What the certificate the config names says; None without `lb.tls`. A pair that cannot be
/// read or does not belong together is a config error. With `certificate_path`, the files
/// are read in the nginx container: the key too when `with_key` (to check the pair before
/// they are installed; `status` reads the certificate alone).
pub async fn configured(host: &Host<'_>, with_key: bool) -> Result<Option<CertInfo>> {
    let Some(t) = &host.config.lb.tls else {
        return Ok(None);
    };
    let (certificate_path, key_path) = match &t.source {
        TlsSource::Local { info, .. } => return Ok(Some(info.clone())),
        TlsSource::Unreadable { why } => return Err(error::config(why.clone())),
        TlsSource::Container {
            certificate_path,
            key_path,
        } => (certificate_path, key_path),
    };
    let chain = read_in_nginx(host, certificate_path, "certificate").await?;
    if !with_key {
        return tls::read_chain(&chain)
            .and_then(|c| tls::info(&c[0]))
            .map(Some)
            .map_err(|e| {
                error::config(format!(
                    "lb.tls: {certificate_path} in the nginx container: {e}"
                ))
            });
    }
    let key = read_in_nginx(host, key_path, "key").await?;
    tls::check_pair(&chain, &key).map(Some).map_err(|e| {
        error::config(format!(
            "lb.tls: {certificate_path} and {key_path} in the nginx container: {e}. Nothing was changed"
        ))
    })
}

/// A file named by `lb.tls` in the nginx container (a symlink followed).
async fn read_in_nginx(host: &Host<'_>, path: &str, what: &str) -> Result<String> {
    let data = host
        .nginx()
        .read_file(path)
        .await
        .map_err(|e| host.nginx_failure(e, &format!("reading the {what} {path}")))?
        .ok_or_else(|| {
            error::config(format!(
                "{path} (lb.tls, the {what}) is not a file bgd can read in the nginx container {}: put it there (a volume, or docker cp), or give bgd the files (lb.tls.certificate, lb.tls.key). Nothing was changed",
                host.config.lb.container
            ))
        })?;
    Ok(String::from_utf8_lossy(&data).into_owned())
}

/// The certificate nginx presents for this app now: the one a probe of `lb.url` was shown
/// (None over plain HTTP, or when the probe failed).
pub async fn served(host: &Host<'_>) -> Option<CertInfo> {
    let url = format!("{}{}", host.config.lb.url, host.config.readiness.path);
    let verdict = host
        .prober
        .probe(&crate::probe::Request::get(
            url,
            std::time::Duration::from_secs(2),
        ))
        .await;
    verdict
        .answer
        .ok()
        .and_then(|a| of_der(a.peer_certificate.as_deref()))
}

/// What a certificate presented in a handshake (DER) says.
pub fn of_der(der: Option<&[u8]>) -> Option<CertInfo> {
    let der = rustls::pki_types::CertificateDer::from(der?.to_vec());
    tls::info(&der).ok()
}

/// Before a deploy or `bgd tls reload` changes anything: an expired certificate (or a pair
/// in the container that does not belong together) is a config error; one that expires
/// within 14 days, or does not cover one of `lb.hosts`, is a warning.
pub async fn check(host: &Host<'_>) -> Result<()> {
    let Some(info) = configured(host, true).await? else {
        return Ok(());
    };
    let now = tls::now();
    if info.expired(now) {
        return Err(error::config(format!(
            "the certificate of lb.tls ({}) expired on {}: renew it, then deploy or `bgd tls reload`. Nothing was changed",
            info.subject,
            info.expires()
        )));
    }
    for w in warnings(host, &info, now) {
        host.out.warn(&w);
    }
    Ok(())
}

/// What an operator should know about a certificate the config names.
pub fn warnings(host: &Host<'_>, info: &CertInfo, now: i64) -> Vec<String> {
    let mut warnings = Vec::new();
    let left = info.days_left(now);
    if info.expired(now) {
        warnings.push(format!(
            "the certificate of lb.tls ({}) EXPIRED on {}: browsers refuse it. Renew it and run `bgd tls reload`",
            info.subject,
            info.expires()
        ));
    } else if left < tls::WARN_DAYS {
        warnings.push(format!(
            "the certificate of lb.tls ({}) expires in {left} days ({}): renew it and run `bgd tls reload`",
            info.subject,
            info.expires()
        ));
    }
    // each name (a wildcard by the name bgd's probes use for it)
    let names: Vec<String> = host
        .config
        .lb
        .hosts
        .iter()
        .map(|h| crate::model::probe_host(h))
        .collect();
    let uncovered: Vec<&str> = names
        .iter()
        .filter(|h| !info.covers(h))
        .map(String::as_str)
        .collect();
    if !uncovered.is_empty() {
        warnings.push(format!(
            "the certificate of lb.tls ({}) is not valid for {} (it names {}): browsers will refuse those names",
            info.subject,
            uncovered.join(", "),
            info.names.join(", ")
        ));
    }
    warnings
}
