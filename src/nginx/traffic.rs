//! What nginx observed of an app's live traffic while a mirror or a canary runs, read back
//! from the traffic log the rendered config writes (pure: text in, figures out).
//!
//! A line is `bgd1 <leg> <msec> <proxy_host> <status> <method> <upstream_response_time>`:
//! `leg` is
//! `live` (a client's request, answered by the color `proxy_host` names) or `mirror` (the
//! candidate's answer to a copy, which nginx discarded).

use crate::model::Color;
use serde::{Deserialize, Serialize};

/// One side's requests as logged: how many, how many 5xx, and the upstream times (µs) of
/// those that got an answer from the app.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Side {
    pub requests: u64,
    pub errors: u64,
    latencies_us: Vec<u64>,
}

/// A side's figures, as reports and the history carry them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub requests: u64,
    /// Answers with a 5xx status (nginx's own 502/504 for an unreachable replica included)
    pub errors: u64,
    /// errors / requests, in percent (0 without requests)
    pub error_rate: f64,
    /// The 95th percentile of the app's response time (nginx's `$upstream_response_time`),
    /// in ms; absent without a timed answer
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p95_ms: Option<f64>,
}

/// The traffic log, split by side.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Traffic {
    /// Live requests answered by blue, and by green
    pub blue: Side,
    pub green: Side,
    /// The candidate's answers to mirrored copies
    pub mirror: Side,
    /// Lines that were not bgd's (a torn last line, another format)
    pub skipped: u64,
}

impl Traffic {
    /// The live requests `color` answered.
    pub fn live(&self, color: Color) -> &Side {
        match color {
            Color::Blue => &self.blue,
            Color::Green => &self.green,
        }
    }
}

impl Side {
    fn add(&mut self, status: u16, latency_us: Option<u64>) {
        self.requests += 1;
        if (500..600).contains(&status) {
            self.errors += 1;
        }
        if let Some(l) = latency_us {
            self.latencies_us.push(l);
        }
    }

    pub fn summary(&self) -> Summary {
        let mut l = self.latencies_us.clone();
        l.sort_unstable();
        let p95_ms = (!l.is_empty()).then(|| {
            // nearest rank: the smallest value with at least 95% of the values at or below it
            let rank = (l.len() * 95).div_ceil(100).max(1);
            l[rank - 1] as f64 / 1000.0
        });
        Summary {
            requests: self.requests,
            errors: self.errors,
            error_rate: if self.requests == 0 {
                0.0
            } else {
                self.errors as f64 * 100.0 / self.requests as f64
            },
            p95_ms,
        }
    }
}

/// Parses the traffic log of app `app` (its upstreams are `bgd_<ident>_<color>`); with
/// `methods`, live requests of other methods are left out (the mirror copies only those).
pub fn parse(text: &str, app: &str, methods: Option<&[String]>) -> Traffic {
    let prefix = format!("bgd_{}_", app.replace('-', "_"));
    let mut t = Traffic::default();
    for line in text.lines() {
        match parse_line(line, &prefix) {
            Some((leg, _, _, method, _))
                if leg == "live" && methods.is_some_and(|m| !m.iter().any(|m| m == method)) => {}
            Some((leg, color, status, _, latency)) => {
                let side = match (leg, color) {
                    ("mirror", _) => &mut t.mirror,
                    (_, Color::Blue) => &mut t.blue,
                    (_, Color::Green) => &mut t.green,
                };
                side.add(status, latency);
            }
            None if line.trim().is_empty() => {}
            None => t.skipped += 1,
        }
    }
    t
}

/// (leg, color, status, method, upstream time in µs)
type Parsed<'a> = (&'a str, Color, u16, &'a str, Option<u64>);

fn parse_line<'a>(line: &'a str, prefix: &str) -> Option<Parsed<'a>> {
    let mut fields = line.split_whitespace();
    if fields.next()? != "bgd1" {
        return None;
    }
    let leg = fields.next().filter(|l| *l == "live" || *l == "mirror")?;
    let _msec = fields.next()?;
    let color = match fields.next()?.strip_prefix(prefix)? {
        "blue" => Color::Blue,
        "green" => Color::Green,
        _ => return None,
    };
    let status: u16 = fields.next()?.parse().ok()?;
    let method = fields.next()?;
    // "0.004", "-", or one time per upstream tried: "0.001, 0.004" or "0.001 : 0.004"
    let rest: Vec<&str> = fields.collect();
    let mut total = 0u64;
    let mut timed = false;
    for part in rest.join(" ").split([',', ':']) {
        if let Ok(secs) = part.trim().parse::<f64>() {
            if secs.is_finite() && secs >= 0.0 {
                total += (secs * 1_000_000.0).round() as u64;
                timed = true;
            }
        }
    }
    Some((leg, color, status, method, timed.then_some(total)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_by_side_and_judged_by_status() {
        let log = "\
bgd1 live 1795715242.505 bgd_my_app_blue 200 GET 0.010
bgd1 live 1795715242.506 bgd_my_app_blue 502 GET -
bgd1 live 1795715242.507 bgd_my_app_green 200 GET 0.001, 0.003
bgd1 mirror 1795715242.508 bgd_my_app_green 500 GET 0.002
bgd1 mirror 1795715242.509 bgd_my_app_green 200 HEAD 0.004
bgd1 live 1795715242.510 bgd_other_blue 200 GET 0.001
bgd1 live 1795715242.511 bgd_my_app_blue 200 POST 0.900
bgd1 live 17957152
";
        let t = parse(
            log,
            "my-app",
            Some(&["GET".to_string(), "HEAD".to_string()]),
        );
        assert_eq!(t.blue.requests, 2);
        assert_eq!(t.blue.errors, 1);
        assert_eq!(t.blue.summary().p95_ms, Some(10.0));
        assert_eq!(t.blue.summary().error_rate, 50.0);
        assert_eq!(t.green.requests, 1);
        assert_eq!(t.green.summary().p95_ms, Some(4.0));
        assert_eq!(t.mirror.requests, 2);
        assert_eq!(t.mirror.errors, 1);
        assert_eq!(t.mirror.summary().p95_ms, Some(4.0));
        // another app's line and a torn one
        assert_eq!(t.skipped, 2);
        // a POST the mirror did not copy counts only when all methods do
        assert_eq!(parse(log, "my-app", None).blue.requests, 3);
    }

    #[test]
    fn p95_is_the_nearest_rank() {
        let mut side = Side::default();
        for ms in 1..=100u64 {
            side.add(200, Some(ms * 1000));
        }
        assert_eq!(side.summary().p95_ms, Some(95.0));
        assert_eq!(Side::default().summary().p95_ms, None);
        assert_eq!(Side::default().summary().error_rate, 0.0);
    }
}
