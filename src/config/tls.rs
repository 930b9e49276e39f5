//! `lb.tls`: the certificate and key are read and checked against each other when the
//! config is loaded (a pair that does not belong together is a config error before anything
//! changes); whether the certificate has expired is judged by the commands that install it.

use super::checks::read_relative;
use super::raw::RawTls;
use super::validate::{issue, Checked};
use super::{Publish, Secret, Tls, TlsSource};
use std::path::Path;

pub(super) fn tls(
    raw: RawTls,
    dir: &Path,
    listen: u16,
    preview_listen: u16,
    publish: &[Publish],
) -> Checked<Tls> {
    if raw.redirect_port == Some(0) {
        return Err(issue("lb.tls.redirect_port", "must be between 1 and 65535"));
    }
    let source = match (
        raw.certificate,
        raw.key,
        raw.certificate_path,
        raw.key_path,
    ) {
        (Some(cert), Some(key), None, None) => match local(dir, &cert, &key) {
            Ok(source) => source,
            // said by the commands that install a config; the others go on with a warning
            Err(e) => TlsSource::Unreadable {
                why: format!("{}: {}", e.path, e.message),
            },
        },
        (None, None, Some(certificate_path), Some(key_path)) => {
            for (k, p) in [
                ("lb.tls.certificate_path", &certificate_path),
                ("lb.tls.key_path", &key_path),
            ] {
                let plain = p.starts_with('/')
                    && p.len() < 1024
                    && p
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "/._-+@".contains(c));
                if !plain {
                    return Err(issue(
                        k,
                        format!("{p:?} must be an absolute path in the nginx container (letters, digits and /._-+@)"),
                    ));
                }
            }
            TlsSource::Container {
                certificate_path,
                key_path,
            }
        }
        (None, None, None, None) => {
            return Err(issue(
                "lb.tls",
                "name the certificate and its key: certificate and key (files here, uploaded to nginx), or certificate_path and key_path (files already in the nginx container)",
            ))
        }
        _ => {
            return Err(issue(
                "lb.tls",
                "give certificate and key together (files here), or certificate_path and key_path together (in the nginx container), not a mix",
            ))
        }
    };
    let tls_listen = raw.listen.unwrap_or(443);
    if tls_listen == 0 {
        return Err(issue("lb.tls.listen", "must be between 1 and 65535"));
    }
    if tls_listen == listen || tls_listen == preview_listen {
        return Err(issue(
            "lb.tls.listen",
            format!("{tls_listen} clashes with lb.listen or lb.preview_listen: HTTPS needs a port of its own"),
        ));
    }
    let ca = raw
        .ca
        .map(|rel| {
            let (path, pem) = read_relative(dir, "lb.tls.ca", &rel)?;
            crate::tls::read_ca(&pem)
                .map_err(|e| issue("lb.tls.ca", format!("{}: {e}", path.display())))?;
            Ok((path, pem))
        })
        .transpose()?;
    let public_port = raw
        .redirect_port
        .or_else(|| {
            publish
                .iter()
                .find(|p| p.container_port == tls_listen)
                .and_then(|p| p.host_port)
        })
        .or(Some(tls_listen))
        .filter(|p| *p != 443);
    Ok(Tls {
        source,
        listen: tls_listen,
        redirect_http: raw.redirect_http.unwrap_or(false),
        hsts: raw.hsts.unwrap_or(false),
        http2: raw.http2.unwrap_or(true),
        ca,
        public_port,
    })
}

/// Reads and checks `certificate` and `key` (files where bgd runs).
fn local(dir: &Path, cert: &str, key: &str) -> Checked<TlsSource> {
    let (certificate, chain) = read_relative(dir, "lb.tls.certificate", cert)?;
    let (key_file, key) = read_relative(dir, "lb.tls.key", key)?;
    // uploaded readable by all: it must hold no key
    if chain.contains("PRIVATE KEY-----") {
        return Err(issue(
            "lb.tls.certificate",
            format!(
                "{} holds a private key: give the certificate chain alone (the key goes in lb.tls.key, uploaded with mode 0600)",
                certificate.display()
            ),
        ));
    }
    let info = crate::tls::check_pair(&chain, &key).map_err(|e| {
        issue(
            "lb.tls",
            format!("{} and {}: {e}", certificate.display(), key_file.display()),
        )
    })?;
    Ok(TlsSource::Local {
        certificate,
        key_file,
        chain,
        key: Secret::new(key),
        info,
    })
}
