//! Values a smoke probe captures from its answer (`capture: {sid: "cookie:sid"}`) and later
//! probes use as `${sid}` in their path, headers and body: how a session made on the live
//! color is tried on the candidate. Pure; the values are secrets (a session is a login).

use super::Answer;
use std::collections::BTreeMap;

/// Where a captured value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capture {
    /// A cookie the answer sets (`Set-Cookie: NAME=value; ...`)
    Cookie(String),
    /// A response header's value
    Header(String),
    /// A JSON pointer into the body (`/token`, `/user/id`)
    Json(String),
}

impl Capture {
    /// `cookie:NAME`, `header:NAME`, `json:/pointer`.
    pub fn parse(spec: &str) -> Result<Capture, String> {
        let bad = || format!("{spec:?}: use \"cookie:NAME\", \"header:NAME\" or \"json:/pointer\"");
        let (kind, what) = spec.split_once(':').ok_or_else(bad)?;
        let token_ok = !what.is_empty()
            && what
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        match kind {
            "cookie" if token_ok => Ok(Capture::Cookie(what.to_string())),
            "header" if token_ok => Ok(Capture::Header(what.to_ascii_lowercase())),
            "json" if what.starts_with('/') || what.is_empty() => {
                Ok(Capture::Json(what.to_string()))
            }
            _ => Err(bad()),
        }
    }

    /// The value in `answer`, if it is there (a JSON string as its text, another JSON value
    /// as written).
    pub fn extract(&self, answer: &Answer) -> Option<String> {
        match self {
            Capture::Cookie(name) => answer
                .headers
                .iter()
                .filter(|(k, _)| k == "set-cookie")
                .find_map(|(_, v)| {
                    let first = v.split(';').next()?.trim();
                    let (n, value) = first.split_once('=')?;
                    (n.trim() == name).then(|| value.trim().to_string())
                }),
            Capture::Header(name) => answer.header(name).map(str::to_string),
            Capture::Json(pointer) => {
                let body: serde_json::Value = serde_json::from_str(&answer.body).ok()?;
                match body.pointer(pointer)? {
                    serde_json::Value::String(s) => Some(s.clone()),
                    serde_json::Value::Null => None,
                    other => Some(other.to_string()),
                }
            }
        }
        .filter(|v| !v.is_empty())
    }

    /// How a message names it: "the cookie sid".
    pub fn describe(&self) -> String {
        match self {
            Capture::Cookie(n) => format!("the cookie {n}"),
            Capture::Header(n) => format!("the header {n}"),
            Capture::Json(p) => format!("the JSON value at {p:?}"),
        }
    }
}

/// The names `${NAME}` in `text` refers to, in order.
pub fn references(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        names.push(after[..end].to_string());
        rest = &after[end + 1..];
    }
    names
}

/// `text` with each `${NAME}` replaced by its captured value (an unknown name is left as it
/// is: the config check makes sure every name is captured first).
pub fn substitute(text: &str, values: &BTreeMap<String, String>) -> String {
    // one pass: a value holding `${...}` is sent as it is, never expanded again
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                let name = &after[..end];
                match values.get(name) {
                    Some(v) => out.push_str(v),
                    None => out.push_str(&rest[start..start + 2 + end + 1]),
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(headers: &[(&str, &str)], body: &str) -> Answer {
        Answer {
            status: 200,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
                .collect(),
            body: body.into(),
            peer_certificate: None,
        }
    }

    #[test]
    fn captures_cookies_headers_and_json() {
        let a = answer(
            &[
                ("Set-Cookie", "theme=dark; Path=/"),
                ("Set-Cookie", "sid=abc123; Path=/; HttpOnly"),
                ("X-Token", "t-9"),
            ],
            r#"{"token":"j-1","user":{"id":42},"none":null}"#,
        );
        let got = |spec: &str| Capture::parse(spec).unwrap().extract(&a);
        assert_eq!(got("cookie:sid").as_deref(), Some("abc123"));
        assert_eq!(got("cookie:theme").as_deref(), Some("dark"));
        assert_eq!(got("cookie:missing"), None);
        assert_eq!(got("header:X-Token").as_deref(), Some("t-9"));
        assert_eq!(got("json:/token").as_deref(), Some("j-1"));
        assert_eq!(got("json:/user/id").as_deref(), Some("42"));
        assert_eq!(got("json:/none"), None);
        assert_eq!(got("json:/nope"), None);
        for bad in [
            "sid",
            "cookie:",
            "cookie:a b",
            "json:token",
            "form:x",
            "header:a;b",
        ] {
            assert!(Capture::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn references_and_substitution() {
        assert_eq!(
            references("/u/${id}?t=${token}&x=${id}"),
            ["id", "token", "id"]
        );
        assert!(references("/plain/$x/{y}").is_empty());
        let values = BTreeMap::from([("sid".to_string(), "abc".to_string())]);
        assert_eq!(
            substitute("sid=${sid}; other=${other}", &values),
            "sid=abc; other=${other}"
        );
    }
}
