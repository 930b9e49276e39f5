//! `lb.tls` on the host: the certificate the config names (from bgd.yaml's files, or read
//! from the nginx container), the one nginx serves now (named by the active config), and the
//! judgement a deploy or `bgd tls reload` makes before it changes anything.

use super::host::Host;
use crate::config::TlsSource;
use crate::error;
use crate::tls::{self, CertInfo};
use anyhow::Result;

/// What the certificate the config names says; None without `lb.tls`. A pair that cannot be
/// read or does not belong together is a config error.
pub async fn configured(host: &Host<'_>) -> Result<Option<CertInfo>> {
    let Some(t) = &host.config.lb.tls else {
        return Ok(None);
    };
    match &t.source {
        TlsSource::Local { info, .. } => Ok(Some(info.clone())),
        TlsSource::Container {
            certificate_path,
            key_path,
        } => {
            let nginx = host.nginx();
            let read = |path: &str| {
                let nginx = &nginx;
                let path = path.to_string();
                async move {
                    let data = nginx
                        .read_file(&path)
                        .await
                        .map_err(|e| host.nginx_failure(e, "reading the certificate"))?;
                    let data = data.ok_or_else(|| {
                        error::config(format!(
                            "{path} (lb.tls) is not in the nginx container {}: put it there (a volume, or docker cp), or give bgd the files (lb.tls.certificate, lb.tls.key). Nothing was changed",
                            host.config.lb.container
                        ))
                    })?;
                    Ok::<_, anyhow::Error>(String::from_utf8_lossy(&data).into_owned())
                }
            };
            let (chain, key) = tokio::try_join!(read(certificate_path), read(key_path))?;
            tls::check_pair(&chain, &key)
                .map(Some)
                .map_err(|e| {
                    error::config(format!(
                        "lb.tls: {certificate_path} and {key_path} in the nginx container: {e}. Nothing was changed"
                    ))
                })
        }
    }
}

/// The certificates nginx serves now for this app (those its active config names), by path.
pub async fn served(host: &Host<'_>, active: Option<&str>) -> Vec<(String, CertInfo)> {
    let mut found = Vec::new();
    for path in active.map(ssl_certificates).unwrap_or_default() {
        let Ok(Some(data)) = host.nginx().read_file(&path).await else {
            continue;
        };
        let pem = String::from_utf8_lossy(&data);
        if let Some(info) = tls::read_chain(&pem)
            .ok()
            .and_then(|chain| tls::info(&chain[0]).ok())
        {
            found.push((path, info));
        }
    }
    found
}

/// Before a deploy or `bgd tls reload` changes anything: an expired certificate (or a pair
/// in the container that does not belong together) is a config error; one that expires
/// within 14 days, or does not cover one of `lb.hosts`, is a warning.
pub async fn check(host: &Host<'_>) -> Result<()> {
    let Some(info) = configured(host).await? else {
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
    let uncovered: Vec<&str> = host
        .config
        .lb
        .hosts
        .iter()
        .filter(|h| !h.starts_with("*.") && !info.covers(h))
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

/// The `ssl_certificate` paths of a config (not the keys).
pub fn ssl_certificates(config: &str) -> Vec<String> {
    let mut paths: Vec<String> = Vec::new();
    for line in config.lines() {
        let code = line.split('#').next().unwrap_or("").trim();
        let mut words = code.split_whitespace();
        if words.next() == Some("ssl_certificate") {
            if let Some(p) = words.next() {
                let p = p.trim_end_matches(';').trim_matches('"').to_string();
                if !p.is_empty() && !paths.contains(&p) {
                    paths.push(p);
                }
            }
        }
    }
    paths
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_certificates_a_config_names() {
        let conf = "server {\n    ssl_certificate /etc/nginx/bgd/web/tls/ab.crt;\n    ssl_certificate_key /etc/nginx/bgd/web/tls/ab.key;\n    # ssl_certificate /old.crt;\n    ssl_certificate \"/other.crt\";\n}\n";
        assert_eq!(
            super::ssl_certificates(conf),
            ["/etc/nginx/bgd/web/tls/ab.crt", "/other.crt"]
        );
    }
}
