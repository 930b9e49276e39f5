//! The switch window watched from the outside: from just before a switch's reload until
//! nginx's old workers have drained, bgd probes the live listener continuously, as users
//! would reach it: one loop on a fresh connection per check, one on a kept-alive connection.
//! Every answer must be the expected status from this app's server (any color: the switch
//! moves it); anything else, a reset or a timeout included, is a failed check. The report is
//! the checks, the failures and the longest time without a good answer.

use super::{Prober, Request, Verdict};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Pause between two checks of one loop: with two loops, at most a few hundred checks a
/// second, whatever the switch's length.
const PAUSE: Duration = Duration::from_millis(5);
/// Most checks one window makes (a drain bound of minutes stays bounded too).
const MAX_CHECKS: u64 = 20_000;
/// One check's limit.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// What a window saw.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowReport {
    pub checks: u64,
    pub failed: u64,
    /// The longest time without a good answer, in ms (from the window's start, between good
    /// answers, and up to its end; with `failing_before`, from the first good answer)
    pub longest_gap_ms: u64,
    /// How long the window lasted, in ms
    pub span_ms: u64,
    /// What the first failed check saw
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_failure: Option<String>,
    /// The window made its most checks before it ended (the rest went unwatched)
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub capped: bool,
    /// Failed checks that were the outage live traffic had before the switch: the window's
    /// first check (sent as the switch starts, answered before it takes) got a failed answer
    /// from bgd's config then, and these got that same answer (status, `X-Bgd-Color`,
    /// `X-Bgd-Generation`): before the switch took, or from an old nginx worker on a
    /// kept-alive connection. Not in `failed`, unless live traffic never answered well in
    /// the window or that config answered well at some point (then live traffic was not
    /// simply down before the switch, and every failure counts: also when that first answer
    /// came from the new config, which then failed and answered well by turns)
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failing_before: u64,
    /// What the first of those saw
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_failing_before: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl WindowReport {
    /// "812 checks, 0 failed, longest gap 14 ms"
    pub fn summary(&self) -> String {
        let before = match self.failing_before {
            0 => String::new(),
            n => format!(
                " ({n} more failed as live traffic did before the switch: the same answer from the config then)"
            ),
        };
        format!(
            "{} checks, {} failed{before}, longest gap {} ms{}",
            self.checks,
            self.failed,
            self.longest_gap_ms,
            if self.capped {
                " (capped: the rest of the drain went unwatched)"
            } else {
                ""
            }
        )
    }

    pub fn lossless(&self) -> bool {
        self.failed == 0
    }
}

/// Whether the connection a check's answer came on stays open for the next check: an answer
/// came, and nginx did not say it closes it (`Connection: close`, as an old worker that is
/// shutting down does).
fn keeps_connection(verdict: &Verdict) -> bool {
    verdict.answer.as_ref().is_ok_and(|a| {
        !a.header("connection")
            .is_some_and(|c| c.to_ascii_lowercase().contains("close"))
    })
}

/// Which of bgd's configs gave an answer: its status, `X-Bgd-Color` and `X-Bgd-Generation`
/// (an answer without both headers is not known to be bgd's).
type Answered = (u16, String, u64);

struct Tally {
    started: Instant,
    last_good: Instant,
    /// The failed answer the first check got: live traffic was failing before the switch
    /// (None as well once that config answered well)
    outage: Option<Answered>,
    /// A good answer came
    answered: bool,
    report: WindowReport,
}

impl Tally {
    /// Live traffic was not simply down before the switch after all: what was told apart
    /// counts as failed.
    fn no_outage(&mut self) {
        self.outage = None;
        let r = &mut self.report;
        r.failed += std::mem::take(&mut r.failing_before);
        if let Some(first) = r.first_failing_before.take() {
            r.first_failure.get_or_insert(first);
        }
    }
}

/// A window being watched; `end` stops it and says what it saw.
pub struct Window {
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    loops: Vec<tokio::task::JoinHandle<()>>,
}

impl Window {
    /// Starts watching `url` (the live listener's readiness path), each answer to be
    /// `status`. With `nothing_live_before` (a first deploy), nginx's own "no live release"
    /// answer (`X-Bgd-Color: none`) is what the config before the switch says, not a failure.
    pub fn watch(prober: &Prober, url: String, status: u16, nothing_live_before: bool) -> Window {
        let now = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(Tally {
            started: now,
            last_good: now,
            outage: None,
            answered: false,
            report: WindowReport::default(),
        }));
        let loops = [false, true]
            .into_iter()
            .map(|keep_alive| {
                let (prober, url) = (prober.clone(), url.clone());
                let (stop, tally) = (stop.clone(), tally.clone());
                tokio::spawn(async move {
                    // the kept-alive loop's client holds a connection from its last check
                    let mut kept = false;
                    while !stop.load(Ordering::Relaxed) {
                        let req = Request::get(url.clone(), CHECK_TIMEOUT);
                        let verdict = if keep_alive {
                            let first = prober.probe_kept_alive(&req).await;
                            // a kept connection nginx closed (or reset) as the request went
                            // out, before any answer: a client sends it again on a new one.
                            // A timeout, an answer cut short, a TLS failure, another app's
                            // answer or a new connection closed unanswered is a failed check
                            let resend = kept && first.closed_unanswered;
                            kept = keeps_connection(&first);
                            if resend {
                                prober.probe(&req).await
                            } else {
                                first
                            }
                        } else {
                            prober.probe(&req).await
                        };
                        let failure = match &verdict.answer {
                            Ok(a) if a.status == status => None,
                            Ok(a) if nothing_live_before && a.color() == Some("none") => None,
                            Ok(a) => {
                                Some(format!("{url}: status {} (expected {status})", a.status))
                            }
                            Err(e) => Some(e.clone()),
                        };
                        // which of bgd's configs answered
                        let answered: Option<Answered> =
                            verdict.answer.as_ref().ok().and_then(|a| {
                                Some((a.status, a.color()?.to_string(), a.generation()?))
                            });
                        let full = {
                            let Ok(mut t) = tally.lock() else { return };
                            let now = Instant::now();
                            t.report.checks += 1;
                            if t.report.checks == 1 && failure.is_some() {
                                t.outage = answered.clone();
                            }
                            let same_config = |t: &Tally| {
                                t.outage
                                    .as_ref()
                                    .zip(answered.as_ref())
                                    .is_some_and(|((_, c, g), (_, ac, ag))| c == ac && g == ag)
                            };
                            match failure {
                                None => {
                                    if same_config(&t) {
                                        t.no_outage();
                                    }
                                    // gaps count from the first good answer when live
                                    // traffic was failing before the switch
                                    if t.answered || t.outage.is_none() {
                                        let gap =
                                            now.duration_since(t.last_good).as_millis() as u64;
                                        t.report.longest_gap_ms = t.report.longest_gap_ms.max(gap);
                                    }
                                    t.answered = true;
                                    t.last_good = now;
                                }
                                Some(why) if t.outage.is_some() && t.outage == answered => {
                                    t.report.failing_before += 1;
                                    t.report.first_failing_before.get_or_insert(why);
                                }
                                Some(why) => {
                                    t.report.failed += 1;
                                    t.report.first_failure.get_or_insert(why);
                                }
                            }
                            t.report.checks >= MAX_CHECKS
                        };
                        if full {
                            return;
                        }
                        tokio::time::sleep(PAUSE).await;
                    }
                })
            })
            .collect();
        Window { stop, tally, loops }
    }

    /// Stops watching (the checks in flight finish) and reports.
    pub async fn end(self) -> WindowReport {
        self.stop.store(true, Ordering::Relaxed);
        for l in self.loops {
            let _ = l.await;
        }
        let Ok(mut t) = self.tally.lock() else {
            return WindowReport::default();
        };
        // an outage there before the switch that never ended is not told apart: the switch
        // did not end it
        if !t.answered {
            t.no_outage();
        }
        let now = Instant::now();
        let mut report = t.report.clone();
        report.capped = report.checks >= MAX_CHECKS;
        // after the cap nothing was watched: no gap is known there
        if !report.capped {
            let tail = now.duration_since(t.last_good).as_millis() as u64;
            report.longest_gap_ms = report.longest_gap_ms.max(tail);
        }
        report.span_ms = now.duration_since(t.started).as_millis() as u64;
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_reads_as_one_line() {
        let r = WindowReport {
            checks: 812,
            failed: 0,
            longest_gap_ms: 14,
            span_ms: 1200,
            first_failure: None,
            capped: false,
            failing_before: 0,
            first_failing_before: None,
        };
        assert_eq!(r.summary(), "812 checks, 0 failed, longest gap 14 ms");
        assert!(r.lossless());
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["longest_gap_ms"], 14);
        assert!(json.get("first_failure").is_none());
    }

    #[test]
    fn a_connection_is_kept_after_an_answer_that_does_not_close_it() {
        let answered = |headers: &[(&str, &str)]| Verdict {
            answer: Ok(super::super::Answer {
                status: 200,
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                body: String::new(),
                peer_certificate: None,
            }),
            elapsed: Duration::ZERO,
            closed_unanswered: false,
        };
        assert!(keeps_connection(&answered(&[])));
        assert!(keeps_connection(&answered(&[("connection", "keep-alive")])));
        // an old worker shutting down answers and closes
        assert!(!keeps_connection(&answered(&[("connection", "close")])));
        assert!(!keeps_connection(&answered(&[("connection", "Close")])));
        let failed = Verdict {
            answer: Err("no answer within 2.0s".into()),
            elapsed: CHECK_TIMEOUT,
            closed_unanswered: false,
        };
        assert!(!keeps_connection(&failed));
    }

    /// A kept-alive connection the server closes as the next request comes, unanswered (as
    /// nginx's old workers do with idle connections at a reload): the request is sent again on
    /// a new connection and nothing fails.
    #[tokio::test]
    async fn a_kept_connection_closed_unanswered_is_sent_again() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let serve = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    if matches!(s.read(&mut buf).await, Ok(0) | Err(_)) {
                        return;
                    }
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .await;
                    // the next request on it is read, then the connection closed
                    let _ = s.read(&mut buf).await;
                });
            }
        });
        let prober = Prober::new(None, Vec::new(), None, Default::default()).unwrap();
        let w = Window::watch(&prober, format!("http://{addr}/health"), 200, false);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let r = w.end().await;
        serve.abort();
        assert!(r.checks > 10, "{r:?}");
        assert_eq!(r.failed, 0, "{r:?}");
    }

    /// Against a listener that answers 200 and then refuses: the failures are counted and
    /// the gap runs to the end.
    #[tokio::test]
    async fn failures_and_gaps_are_counted() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let serve = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let started = Instant::now();
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                if started.elapsed() > Duration::from_millis(150) {
                    return; // the listener goes: refused from now on
                }
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                        if started.elapsed() > Duration::from_millis(150) {
                            return; // kept-alive connections die with it
                        }
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                            .await;
                    }
                });
            }
        });
        let prober = Prober::new(None, Vec::new(), None, Default::default()).unwrap();
        let w = Window::watch(&prober, format!("http://{addr}/health"), 200, false);
        tokio::time::sleep(Duration::from_millis(400)).await;
        let r = w.end().await;
        serve.abort();
        assert!(r.checks > 10, "{r:?}");
        assert!(r.failed > 0, "{r:?}");
        assert!(r.first_failure.is_some(), "{r:?}");
        assert!(r.longest_gap_ms >= 200, "{r:?}");
        assert!(r.span_ms >= 400, "{r:?}");
    }

    /// A listener whose answers `answer` picks by the time since it started.
    async fn answering(
        answer: fn(Duration) -> &'static [u8],
    ) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let serve = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let started = Instant::now();
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                        let _ = s.write_all(answer(started.elapsed())).await;
                    }
                });
            }
        });
        (addr, serve)
    }

    async fn watched(answer: fn(Duration) -> &'static [u8], ms: u64) -> WindowReport {
        let (addr, serve) = answering(answer).await;
        let prober = Prober::new(None, Vec::new(), None, Default::default()).unwrap();
        let w = Window::watch(&prober, format!("http://{addr}/health"), 200, false);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        let r = w.end().await;
        serve.abort();
        r
    }

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nx-bgd-color: green\r\nx-bgd-generation: 2\r\ncontent-length: 0\r\n\r\n";
    /// nginx's answer while the live color's replicas are gone (generation 1)
    const DOWN_BEFORE: &[u8] = b"HTTP/1.1 502 Bad Gateway\r\nx-bgd-color: blue\r\nx-bgd-generation: 1\r\ncontent-length: 0\r\n\r\n";
    /// the new config failing
    const DOWN_AFTER: &[u8] = b"HTTP/1.1 502 Bad Gateway\r\nx-bgd-color: green\r\nx-bgd-generation: 2\r\ncontent-length: 0\r\n\r\n";
    /// the config before the switch answering well
    const UP_BEFORE: &[u8] =
        b"HTTP/1.1 200 OK\r\nx-bgd-color: blue\r\nx-bgd-generation: 1\r\ncontent-length: 0\r\n\r\n";
    /// a 502 that is not known to be bgd's config's (an outer proxy's, another server's)
    const BARE_502: &[u8] = b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n";

    /// Live failing from the window's first check until the switch mends it, and the old
    /// config's failure again now and then (an old worker on a kept-alive connection): that
    /// outage was there before, and is reported apart, not as the switch's failures.
    #[tokio::test]
    async fn an_outage_before_the_switch_is_not_the_switchs() {
        let r = watched(
            |t| match t.as_millis() {
                0..150 => DOWN_BEFORE,
                n if n % 40 < 5 => DOWN_BEFORE,
                _ => OK,
            },
            400,
        )
        .await;
        assert!(r.failing_before > 0, "{r:?}");
        assert_eq!(r.failed, 0, "{r:?}");
        assert!(r.lossless(), "{r:?}");
        assert!(
            r.first_failing_before
                .as_deref()
                .is_some_and(|f| f.contains("502")),
            "{r:?}"
        );
        assert!(r.first_failure.is_none(), "{r:?}");
        assert!(
            r.summary()
                .contains("as live traffic did before the switch"),
            "{r:?}"
        );
    }

    /// A failure from another config than the one failing before the switch is the switch's.
    #[tokio::test]
    async fn a_new_failure_after_an_outage_is_the_switchs() {
        let r = watched(
            |t| match t.as_millis() {
                0..100 => DOWN_BEFORE,
                100..200 => OK,
                _ => DOWN_AFTER,
            },
            300,
        )
        .await;
        assert!(r.failing_before > 0, "{r:?}");
        assert!(r.failed > 0, "{r:?}");
        assert!(!r.lossless(), "{r:?}");
        assert!(
            r.first_failure
                .as_deref()
                .is_some_and(|f| f.contains("502")),
            "{r:?}"
        );
    }

    /// A first failure from a config that answers well at other times was not an outage
    /// (a replica restarting, a busy app): every failure counts.
    #[tokio::test]
    async fn a_transient_first_failure_excuses_nothing() {
        let r = watched(
            |t| match t.as_millis() {
                0..60 => DOWN_BEFORE,
                60..120 => UP_BEFORE,
                n if n % 40 < 5 => DOWN_BEFORE,
                _ => OK,
            },
            300,
        )
        .await;
        assert!(r.failed > 0, "{r:?}");
        assert_eq!(r.failing_before, 0, "{r:?}");
        assert!(!r.lossless(), "{r:?}");
    }

    /// A failed answer without bgd's headers is not known to be the config's before the
    /// switch: it is never told apart.
    #[tokio::test]
    async fn an_answer_not_known_to_be_bgds_is_never_told_apart() {
        let r = watched(
            |t| match t.as_millis() {
                0..100 => BARE_502,
                n if n % 40 < 5 => BARE_502,
                _ => OK,
            },
            300,
        )
        .await;
        assert!(r.failed > 0, "{r:?}");
        assert_eq!(r.failing_before, 0, "{r:?}");
    }

    /// An outage the switch never ends is the switch's failure, all of it.
    #[tokio::test]
    async fn an_outage_that_never_ends_is_failed() {
        let r = watched(|_| DOWN_BEFORE, 200).await;
        assert!(r.failed > 0, "{r:?}");
        assert_eq!(r.failing_before, 0, "{r:?}");
        assert!(!r.lossless(), "{r:?}");
        assert!(
            r.first_failure
                .as_deref()
                .is_some_and(|f| f.contains("502")),
            "{r:?}"
        );
        assert!(r.longest_gap_ms >= 200, "{r:?}");
    }
}
