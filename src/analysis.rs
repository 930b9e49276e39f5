//! How a candidate's traffic is judged beside the stable side's (pure): the mirror's copies
//! against live, a canary's share against the rest. The candidate fails when its 5xx rate
//! exceeds the stable side's by more than `max_error_increase` points, or its p95 is more than
//! `max_latency_ratio` times the stable side's (both p95s taken as at least `min_latency`).
//! Fewer than `min_requests` candidate requests give no verdict.

use crate::config::Analysis;
use crate::nginx::traffic::Summary;
use serde::{Deserialize, Serialize};

/// One judged window, as output, `--json` and the history carry it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Judged {
    /// "mirror", or "canary 10%"
    pub phase: String,
    /// "pass", "fail" or "inconclusive"
    pub verdict: String,
    /// Why, in words (the figures and the threshold a failure broke)
    pub reason: String,
    /// The live (stable) side
    pub stable: Summary,
    pub candidate: Summary,
    pub window_ms: u64,
}

impl Judged {
    pub fn failed(&self) -> bool {
        self.verdict == "fail"
    }

    /// "mirror: candidate 412 requests, 5xx 0.0%, p95 3.1 ms; live 4,120, 0.0%, 2.9 ms: pass"
    pub fn line(&self) -> String {
        format!(
            "{}: candidate {}; {} {}: {}",
            self.phase,
            figures(&self.candidate),
            if self.phase == "mirror" {
                "live"
            } else {
                "stable"
            },
            figures(&self.stable),
            self.reason
        )
    }
}

fn figures(s: &Summary) -> String {
    format!(
        "{} request(s), 5xx {:.1}%, p95 {}",
        s.requests,
        s.error_rate,
        s.p95_ms.map_or("-".to_string(), |p| format!("{p:.1} ms"))
    )
}

/// The verdict on `candidate` beside `stable` over one window.
pub fn judge(
    phase: &str,
    stable: Summary,
    candidate: Summary,
    a: &Analysis,
    window_ms: u64,
) -> Judged {
    let (verdict, reason) = verdict(&stable, &candidate, a);
    Judged {
        phase: phase.to_string(),
        verdict: verdict.to_string(),
        reason,
        stable,
        candidate,
        window_ms,
    }
}

fn verdict(stable: &Summary, candidate: &Summary, a: &Analysis) -> (&'static str, String) {
    let increase = candidate.error_rate - stable.error_rate;
    // judged on errors first: a few requests that all failed are a verdict already
    if candidate.requests > 0
        && increase > a.max_error_increase
        && candidate.errors >= a.min_requests.clamp(1, 5)
    {
        return (
            "fail",
            format!(
                "its 5xx rate is {:.1} points above the stable side's (more than max_error_increase: {})",
                increase, a.max_error_increase
            ),
        );
    }
    if candidate.requests < a.min_requests {
        return (
            "inconclusive",
            format!(
                "only {} request(s) reached the candidate, fewer than min_requests ({}): no verdict",
                candidate.requests, a.min_requests
            ),
        );
    }
    let floor = a.min_latency.as_secs_f64() * 1000.0;
    let c = candidate.p95_ms.unwrap_or(0.0).max(floor);
    let s = stable.p95_ms.unwrap_or(0.0).max(floor);
    if c > s * a.max_latency_ratio {
        return (
            "fail",
            format!(
                "its p95 is {:.1}x the stable side's (more than max_latency_ratio: {}; p95s under {} ms count as {} ms)",
                c / s,
                a.max_latency_ratio,
                floor,
                floor
            ),
        );
    }
    ("pass", "pass".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(requests: u64, errors: u64, p95_ms: f64) -> Summary {
        Summary {
            requests,
            errors,
            error_rate: if requests == 0 {
                0.0
            } else {
                errors as f64 * 100.0 / requests as f64
            },
            p95_ms: Some(p95_ms),
        }
    }

    fn judged(stable: Summary, candidate: Summary) -> Judged {
        judge("mirror", stable, candidate, &Analysis::default(), 60_000)
    }

    #[test]
    fn a_candidate_that_fails_a_fifth_of_its_requests_fails() {
        let j = judged(side(1000, 0, 3.0), side(100, 20, 3.0));
        assert_eq!(j.verdict, "fail", "{j:?}");
        assert!(j.reason.contains("20.0 points"), "{}", j.reason);
    }

    #[test]
    fn within_the_thresholds_it_passes() {
        // +0.5 points, and 1 ms against 3 ms is under the 20 ms floor
        let j = judged(side(1000, 5, 3.0), side(100, 1, 1.0));
        assert_eq!(j.verdict, "pass", "{j:?}");
        let j = judged(side(1000, 0, 1.0), side(100, 0, 3.0));
        assert_eq!(j.verdict, "pass", "{j:?}");
    }

    #[test]
    fn a_slow_candidate_fails_on_its_p95() {
        let j = judged(side(1000, 0, 30.0), side(100, 0, 75.0));
        assert_eq!(j.verdict, "fail", "{j:?}");
        assert!(j.reason.contains("2.5x"), "{}", j.reason);
        // under the floor both count as 20 ms
        let j = judged(side(1000, 0, 2.0), side(100, 0, 19.0));
        assert_eq!(j.verdict, "pass", "{j:?}");
    }

    #[test]
    fn too_few_requests_give_no_verdict_unless_they_failed() {
        let j = judged(side(1000, 0, 3.0), side(3, 0, 3.0));
        assert_eq!(j.verdict, "inconclusive", "{j:?}");
        let j = judged(side(1000, 0, 3.0), side(6, 6, 3.0));
        assert_eq!(j.verdict, "fail", "{j:?}");
        assert!(j
            .line()
            .starts_with("mirror: candidate 6 request(s), 5xx 100.0%"));
    }
}
