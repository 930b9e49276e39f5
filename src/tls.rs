//! Certificates, read and judged (pure, no I/O): a PEM chain and its key must parse and
//! belong together; the leaf's subject, names and validity are what `status` shows and what a
//! deploy checks before it changes anything. The key is only ever held to compare it with the
//! certificate; nothing here formats it.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Under this many days left, `status` and every command that installs the certificate warn.
pub const WARN_DAYS: i64 = 14;

/// What a certificate says, as an operator reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// e.g. "CN=shop.example.com"
    pub subject: String,
    pub issuer: String,
    /// Unix seconds
    pub not_before: i64,
    pub not_after: i64,
    /// Its subject alternative names: DNS names, and IP addresses as text
    pub names: Vec<String>,
    /// SHA-256 of the leaf, hex
    pub fingerprint: String,
}

impl CertInfo {
    /// Whole days left at `now` (unix seconds); negative once expired.
    pub fn days_left(&self, now: i64) -> i64 {
        (self.not_after - now).div_euclid(86_400)
    }

    pub fn expired(&self, now: i64) -> bool {
        now >= self.not_after
    }

    /// `not_after` as `2027-02-24 12:00 UTC`.
    pub fn expires(&self) -> String {
        chrono::DateTime::from_timestamp(self.not_after, 0).map_or_else(
            || self.not_after.to_string(),
            |t| t.format("%Y-%m-%d %H:%M UTC").to_string(),
        )
    }

    /// Whether the certificate is valid for `host` (a `*.` name covers one label).
    pub fn covers(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.names.iter().any(|n| {
            let n = n.to_ascii_lowercase();
            match n.strip_prefix("*.") {
                Some(domain) => host
                    .split_once('.')
                    .is_some_and(|(label, rest)| !label.is_empty() && rest == domain),
                None => n == host,
            }
        })
    }

    /// The name bgd's probes use as the TLS server name when `lb.hosts` names none: the
    /// first DNS name (a wildcard's as `bgd-probe.<domain>`).
    pub fn probe_name(&self) -> Option<String> {
        let first = self
            .names
            .iter()
            .find(|n| n.parse::<std::net::IpAddr>().is_err())?;
        Some(crate::model::probe_host(first))
    }

    /// The one-line summary `status` prints.
    pub fn summary(&self, now: i64) -> String {
        let left = self.days_left(now);
        let when = if self.expired(now) {
            format!("EXPIRED {}", self.expires())
        } else {
            format!("expires {} (in {left} days)", self.expires())
        };
        format!("{}, {when}", self.subject)
    }
}

/// The certificates of a PEM file, leaf first.
pub fn read_chain(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("not a PEM certificate file ({e})"))?;
    if chain.is_empty() {
        return Err("holds no certificate (-----BEGIN CERTIFICATE-----)".into());
    }
    Ok(chain)
}

/// What the leaf certificate says.
pub fn info(leaf: &CertificateDer<'_>) -> Result<CertInfo, String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| format!("the certificate cannot be read ({e})"))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => names.push(d.to_string()),
                GeneralName::IPAddress(ip) => match ip.len() {
                    4 => names.push(
                        std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*ip).unwrap_or([0; 4]))
                            .to_string(),
                    ),
                    16 => names.push(
                        std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*ip).unwrap_or([0; 16]))
                            .to_string(),
                    ),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, leaf.as_ref());
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        names,
        fingerprint: digest.as_ref().iter().map(|b| format!("{b:02x}")).collect(),
    })
}

/// Reads a certificate chain and its key, and checks they belong together. Errors never
/// show the key.
pub fn check_pair(chain_pem: &str, key_pem: &str) -> Result<CertInfo, String> {
    let chain = read_chain(chain_pem)?;
    let leaf = info(&chain[0])?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|_| {
        "the key is not a PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC)".to_string()
    })?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|_| {
        "the key is of a kind bgd cannot read (RSA, ECDSA P-256/P-384 or Ed25519)".to_string()
    })?;
    let rest: Vec<CertificateDer<'static>> = chain[1..].to_vec();
    let certified = rustls::sign::CertifiedKey::new(chain, signing.clone());
    match certified.keys_match() {
        Ok(()) => Ok(leaf),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            // the key of a later certificate: the chain is in the wrong order
            let later = rest.into_iter().find(|c| {
                rustls::sign::CertifiedKey::new(vec![c.clone()], signing.clone())
                    .keys_match()
                    .is_ok()
            });
            Err(match later.as_ref().map(info) {
                Some(Ok(l)) => format!(
                    "the key belongs to {}, not to the first certificate of the file ({}): put the server's own certificate first, then its chain",
                    l.subject, leaf.subject
                ),
                _ => format!(
                    "the key does not belong to the certificate ({}): give the key the certificate was issued for",
                    leaf.subject
                ),
            })
        }
        // a key whose public half bgd cannot derive: nginx -t still checks the pair
        Err(_) => Ok(leaf),
    }
}

/// The certificates of a CA bundle (`lb.tls.ca`).
pub fn read_ca(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    read_chain(pem)
}

/// Now, in unix seconds.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(names: &[&str], days: i64) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, names[0]);
        let now = std::time::SystemTime::now();
        params.not_before = (now - std::time::Duration::from_secs(86_400 * 2)).into();
        params.not_after = if days >= 0 {
            (now + std::time::Duration::from_secs(86_400 * days as u64)).into()
        } else {
            (now - std::time::Duration::from_secs(86_400 * (-days) as u64)).into()
        };
        let c = params.self_signed(&key).unwrap();
        (c.pem(), key.serialize_pem())
    }

    #[test]
    fn a_pair_is_read_and_its_names_and_dates_shown() {
        let (c, k) = cert(&["shop.example.com", "*.shop.example.com", "127.0.0.1"], 30);
        let info = check_pair(&c, &k).unwrap();
        assert_eq!(info.subject, "CN=shop.example.com");
        assert_eq!(
            info.names,
            ["shop.example.com", "*.shop.example.com", "127.0.0.1"]
        );
        let now = now();
        assert!(!info.expired(now));
        assert!(
            (29..=30).contains(&info.days_left(now)),
            "{}",
            info.days_left(now)
        );
        assert!(info.covers("shop.example.com"));
        assert!(info.covers("WWW.shop.example.com"));
        assert!(!info.covers("a.b.shop.example.com"));
        assert!(!info.covers("example.com"));
        assert!(info.covers("127.0.0.1"));
        assert_eq!(info.probe_name().as_deref(), Some("shop.example.com"));
        assert!(info
            .summary(now)
            .starts_with("CN=shop.example.com, expires "));
        assert_eq!(info.fingerprint.len(), 64);
    }

    #[test]
    fn a_key_of_another_certificate_is_refused_without_showing_it() {
        let (c, _) = cert(&["a.example.com"], 30);
        let (_, other) = cert(&["a.example.com"], 30);
        let e = check_pair(&c, &other).unwrap_err();
        assert!(e.contains("does not belong"), "{e}");
        assert!(!e.contains("PRIVATE KEY"), "{e}");
        let e = check_pair(&c, "not a key").unwrap_err();
        assert!(e.contains("not a PEM private key"), "{e}");
        assert!(check_pair("garbage", &other).is_err());
        // the key given as the certificate
        assert!(check_pair(&other, &other).is_err());
        // the chain in the wrong order: named as such
        let (leaf, leaf_key) = cert(&["b.example.com"], 30);
        let e = check_pair(&format!("{c}{leaf}"), &leaf_key).unwrap_err();
        assert!(e.contains("put the server's own certificate first"), "{e}");
    }

    #[test]
    fn expiry_is_seen() {
        let (c, k) = cert(&["old.example.com"], -1);
        let info = check_pair(&c, &k).unwrap();
        assert!(info.expired(now()));
        assert!(info.summary(now()).contains("EXPIRED"));
        let wild = CertInfo {
            names: vec!["10.0.0.1".into(), "*.example.com".into()],
            ..info
        };
        assert_eq!(wild.probe_name().as_deref(), Some("bgd-probe.example.com"));
    }
}
