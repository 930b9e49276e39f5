//! HTTP probes: a pure judge of responses against expectations, and a reqwest transport that
//! opens a fresh connection per request (a pooled connection could reach an old nginx worker
//! and see the old routing).

use crate::config::{Expect, SmokeProbe};
use std::time::Duration;

/// Header that routes a request on the preview listener to one replica ("green-2").
pub const PROBE_REPLICA_HEADER: &str = "X-Bgd-Probe-Replica";
/// Largest body bgd reads from a probe response.
const MAX_BODY: usize = 256 * 1024;

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// lower-case names
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
    /// `X-Bgd-Color`, `X-Bgd-Generation` as nginx added them.
    pub fn bgd_color(&self) -> Option<&str> {
        self.header("x-bgd-color")
    }
    pub fn bgd_generation(&self) -> Option<u64> {
        self.header("x-bgd-generation")?.trim().parse().ok()
    }
}

/// Judges a response against a smoke expectation. `Err` says what was expected and what came.
pub fn judge(expect: &Expect, resp: &Response) -> Result<(), String> {
    if !expect.status.contains(&resp.status) {
        let want: Vec<String> = expect.status.iter().map(u16::to_string).collect();
        return Err(format!(
            "expected status {}, got {}{}",
            want.join(" or "),
            resp.status,
            snippet(&resp.body)
        ));
    }
    if let Some(needle) = &expect.body_contains {
        if !resp.body.contains(needle.as_str()) {
            return Err(format!(
                "expected the body to contain {needle:?}{}",
                snippet(&resp.body)
            ));
        }
    }
    for (name, want) in &expect.headers {
        match resp.header(name) {
            Some(v) if v.contains(want.as_str()) => {}
            Some(v) => {
                return Err(format!(
                    "expected header {name} to contain {want:?}, got {v:?}"
                ))
            }
            None => return Err(format!("expected header {name}, it was absent")),
        }
    }
    Ok(())
}

fn snippet(body: &str) -> String {
    let t = body.trim();
    if t.is_empty() {
        return String::new();
    }
    let cut: String = t.chars().take(200).collect();
    let more = if t.chars().count() > 200 { "..." } else { "" };
    format!(" (body: {cut:?}{more})")
}

#[derive(Clone)]
pub struct Prober {
    client: reqwest::Client,
}

impl Prober {
    pub fn new() -> anyhow::Result<Prober> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(0)
            .user_agent(concat!("bgd/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Prober { client })
    }

    /// One request. `Err` is a transport failure, described for an operator.
    pub async fn request(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &str,
        timeout: Duration,
    ) -> Result<Response, String> {
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| format!("bad method {method}"))?;
        let mut req = self.client.request(method, url).timeout(timeout);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if !body.is_empty() {
            req = req.body(body.to_string());
        }
        let resp = req.send().await.map_err(|e| describe(&e, url, timeout))?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let bytes = resp.bytes().await.map_err(|e| describe(&e, url, timeout))?;
        let body = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_BODY)]).into_owned();
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    /// Sends a smoke probe to `base` (a listener URL) with any extra headers.
    pub async fn smoke(
        &self,
        base: &str,
        probe: &SmokeProbe,
        timeout: Duration,
    ) -> Result<Response, String> {
        let headers: Vec<(&str, &str)> = probe
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.request(
            &probe.method,
            &format!("{base}{}", probe.path),
            &headers,
            &probe.body,
            timeout,
        )
        .await
    }
}

fn describe(e: &reqwest::Error, url: &str, timeout: Duration) -> String {
    if e.is_timeout() {
        format!("{url}: no answer within {:.1}s", timeout.as_secs_f64())
    } else if e.is_connect() {
        format!("{url}: cannot connect (is the listener published and reachable from here?)")
    } else {
        let mut msg = format!("{url}: {e}");
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            msg.push_str(&format!(": {s}"));
            source = s.source();
        }
        msg
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn resp(status: u16, body: &str, headers: &[(&str, &str)]) -> Response {
        Response {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
                .collect(),
            body: body.into(),
        }
    }

    fn expect(status: &[u16], body: Option<&str>, headers: &[(&str, &str)]) -> Expect {
        Expect {
            status: status.to_vec(),
            body_contains: body.map(String::from),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn judges_status_body_headers() {
        let ok = resp(
            200,
            "version=v2",
            &[("Content-Type", "text/plain; charset=utf-8")],
        );
        assert!(judge(
            &expect(&[200], Some("v2"), &[("content-type", "text/plain")]),
            &ok
        )
        .is_ok());
        let e = judge(
            &expect(&[200, 204], None, &[]),
            &resp(502, "bad gateway", &[]),
        )
        .unwrap_err();
        assert!(
            e.contains("200 or 204") && e.contains("502") && e.contains("bad gateway"),
            "{e}"
        );
        let e = judge(&expect(&[200], Some("v3"), &[]), &ok).unwrap_err();
        assert!(e.contains("\"v3\"") && e.contains("version=v2"), "{e}");
        let e = judge(&expect(&[200], None, &[("X-Missing", "a")]), &ok).unwrap_err();
        assert!(e.contains("X-Missing"), "{e}");
    }

    #[test]
    fn reads_bgd_headers() {
        let r = resp(
            200,
            "",
            &[("X-Bgd-Color", "green"), ("X-Bgd-Generation", "12")],
        );
        assert_eq!(r.bgd_color(), Some("green"));
        assert_eq!(r.bgd_generation(), Some(12));
    }
}
