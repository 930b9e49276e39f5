//! The gates a release passes before it takes traffic: readiness of every replica, the
//! migration and the old-version compatibility check, the smoke probes, and the drift check
//! right before the switch. Every probe goes through `probe::Prober` and is judged by
//! `Verdict::check`, color included.

use super::drift;
use super::observe::image_defaults;
use super::run::{Command, Run};
use super::specs::{migration_spec, pool_of};
use crate::config::Config;
use crate::docker::ContainerInfo;
use crate::error;
use crate::model::{Color, Pool, Release, Server, LABEL_APP, LABEL_MANAGED};
use crate::output::fmt_duration;
use crate::probe::{Expect, Prober, Request};
use anyhow::Result;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Per-request limit for smoke probes.
const SMOKE_TIMEOUT: Duration = Duration::from_secs(10);

/// `readiness`: every replica of the pool, `passes` times in a row each, one by one through
/// the preview listener (all replicas at once). A candidate that fails is rejected (exit 3); a
/// rollback's parked release that fails is not sent traffic (exit 6: traffic stays where it
/// is). A fast rollback's early probes (`Run::early_ready`) stand for its one pass when every
/// replica's answer passes.
pub async fn readiness(run: &mut Run<'_>, passes: u32) -> Result<String> {
    let host = run.host;
    let pool = run.pool()?.clone();
    let rollback = matches!(run.command, Command::Rollback);
    let ready = Ready {
        config: host.config,
        prober: &host.prober,
        pool: &pool,
        passes,
        out: host.out,
        docker: host.docker,
        nginx: host.nginx(),
        count: AtomicUsize::new(0),
        last_failures: Mutex::new(Vec::new()),
    };
    // a fast rollback probed each parked replica once already, while it listed them
    let early = run.early_ready.take();
    let result = match early {
        Some(early) if passes == 1 && ready.all_answered(&early) => Ok(()),
        _ => ready.wait().await,
    };
    match result {
        Err(e) if rollback && !error::is_interrupted(&e) => {
            // the parked release is not healthy: traffic stays where it is
            let stays = run.live_pool.as_ref().map_or("none", |l| l.color.as_str());
            return Err(error::environment(format!(
                "the parked release is not ready, traffic stays on {stays}: {e:#}"
            )));
        }
        result => result?,
    }
    Ok(format!(
        "all {} replica(s) of {} ready",
        pool.servers.len(),
        pool.color
    ))
}

/// One readiness wait over a pool: all replicas at once, under one deadline.
struct Ready<'a> {
    config: &'a Config,
    prober: &'a Prober,
    docker: &'a crate::docker::Docker,
    nginx: crate::nginx::Nginx<'a>,
    out: &'a crate::output::Output,
    pool: &'a Pool,
    passes: u32,
    count: AtomicUsize,
    /// The last failure of each replica not yet ready: (container, why)
    last_failures: Mutex<Vec<(String, String)>>,
}

impl Ready<'_> {
    /// Whether `verdicts` (replica number, verdict) hold a passing answer of every replica of
    /// the pool, each from its current address.
    fn all_answered(&self, verdicts: &super::run::EarlyReady) -> bool {
        self.pool.servers.iter().all(|server| {
            let expect = self.expect(server);
            verdicts
                .iter()
                .any(|(n, v)| *n == server.replica && v.check(&expect).is_ok())
        })
    }

    /// A ready replica's answer: the status readiness expects, from the pool's color, and
    /// from the replica's current address.
    fn expect<'s>(&'s self, server: &'s Server) -> Expect<'s> {
        Expect {
            status: std::slice::from_ref(&self.config.readiness.expect_status),
            color: Some(self.pool.color),
            upstream: Some(&server.addr),
            ..Default::default()
        }
    }

    async fn wait(&self) -> Result<()> {
        let all = futures_util::future::try_join_all(self.pool.servers.iter().map(|s| self.one(s)));
        match tokio::time::timeout(self.config.readiness.deadline, all).await {
            Ok(result) => result.map(drop),
            Err(_) => Err(self.timed_out().await),
        }
    }

    /// One replica: `passes` consecutive passes; a replica whose container died fails at once.
    async fn one(&self, server: &Server) -> Result<()> {
        let r = &self.config.readiness;
        let preview = &self.config.lb.preview_url;
        let expect = self.expect(server);
        let mut streak = 0;
        loop {
            let verdict = self
                .prober
                .probe_replica(preview, &r.path, (self.pool.color, server), r.timeout)
                .await;
            crate::interrupt::check("during the readiness checks")?;
            match verdict.check(&expect) {
                Ok(_) => {
                    streak += 1;
                    if streak >= self.passes {
                        let n = self.count.fetch_add(1, Ordering::SeqCst) + 1;
                        self.out.progress(&format!(
                            "readiness of {} ({n}/{} replicas ready)",
                            self.pool.color,
                            self.pool.servers.len()
                        ));
                        return Ok(());
                    }
                }
                Err(why) => {
                    streak = 0;
                    let why = match unreachable(&verdict) {
                        Some(status) => self.cannot_connect(server, status).await,
                        None => {
                            let hint = misrouted(&verdict, self.pool.color);
                            format!("{}: {why}{hint}", r.path)
                        }
                    };
                    self.note_failure(&server.name, why);
                    self.fail_if_dead(&server.name).await?;
                }
            }
            tokio::time::sleep(r.interval).await;
        }
    }

    /// nginx could not reach the replica at all: say why (from the preview listener's error
    /// log) and what usually causes it, not "/health answered 502".
    async fn cannot_connect(&self, server: &Server, status: &str) -> String {
        let port = self.config.container.port;
        let reason = match self.nginx.unreachable_reason(&server.addr).await {
            Some(reason) => reason,
            None if status.contains("504") => "timed out".to_string(),
            None => "no answer".to_string(),
        };
        let mut msg = format!(
            "nginx could not connect to {} at {} ({reason})",
            server.name, server.addr
        );
        if reason.contains("refused") {
            msg.push_str(&format!(
                " — is the app listening on 0.0.0.0:{port}, not 127.0.0.1, inside its container?"
            ));
        } else {
            msg.push_str(&format!(
                " — is the app listening on port {port} (container.port)?"
            ));
        }
        msg
    }

    fn note_failure(&self, name: &str, why: String) {
        if let Ok(mut l) = self.last_failures.lock() {
            l.retain(|(n, _)| n != name);
            l.push((name.to_string(), why));
        }
    }

    /// A replica that died will not become ready: say so now, with its last output.
    async fn fail_if_dead(&self, name: &str) -> Result<()> {
        match self.docker.inspect(name).await? {
            Some(c) if !c.running() => {
                let logs = self.docker.logs_tail(name, 15).await;
                Err(error::rejected(format!(
                    "replica {name} is {} (exit code {}); its last output:\n{}",
                    c.state,
                    c.exit_code.unwrap_or(-1),
                    logs.trim()
                )))
            }
            _ => Ok(()),
        }
    }

    async fn timed_out(&self) -> anyhow::Error {
        let r = &self.config.readiness;
        let failures = self
            .last_failures
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default();
        let mut msg = format!(
            "{}/{} replicas of {} passed readiness ({} x {} {}) within {}",
            self.count.load(Ordering::SeqCst),
            self.pool.servers.len(),
            self.pool.color,
            self.passes,
            r.expect_status,
            r.path,
            fmt_duration(r.deadline)
        );
        if !failures.is_empty() {
            let detail: Vec<String> = failures
                .iter()
                .map(|(n, why)| format!("  {n}: {why}"))
                .collect();
            msg.push_str(&format!("; last failures:\n{}", detail.join("\n")));
        }
        if let Some((name, _)) = failures.first() {
            let logs = self.docker.logs_tail(name, 10).await;
            if !logs.trim().is_empty() {
                msg.push_str(&format!("\nlast output of {name}:\n{}", logs.trim()));
            }
        }
        error::rejected(msg)
    }
}

/// `X-Bgd-Unreachable`: the preview listener says nginx itself could not reach the replica
/// (connection refused, reset, timed out), with the upstream status it saw.
pub fn unreachable(verdict: &crate::probe::Verdict) -> Option<&str> {
    match &verdict.answer {
        Ok(a) if a.status == 502 || a.status == 504 => a.header("x-bgd-unreachable"),
        _ => None,
    }
}

/// When a per-replica probe was answered by another color, nginx did not route it to the
/// replica at all: say where to look.
pub fn misrouted(verdict: &crate::probe::Verdict, color: Color) -> &'static str {
    match &verdict.answer {
        Ok(a) if a.color() != Some(color.as_str()) => {
            " (nginx did not route the probe to this replica: a custom lb.template must keep the X-Bgd-Probe-Replica map and the X-Bgd-* headers of the built-in one)"
        }
        _ => "",
    }
}

/// `migrate`: a one-off container from the new image, with the app's network, env and
/// volumes, its output streamed; a non-zero exit or a timeout rejects the candidate.
pub async fn migrate(run: &mut Run<'_>) -> Result<String> {
    let (host, target) = (run.host, run.target()?);
    let Some(migrate) = &host.config.hooks.migrate else {
        return Ok("no migration configured".into());
    };
    let shown = migrate.command.join(" ");
    let spec = migration_spec(host.config, target, &migrate.command);
    let mut tail: std::collections::VecDeque<String> = Default::default();
    let outcome = host
        .docker
        .run_to_completion(&spec, migrate.timeout, |line| {
            host.out.info(&format!("migrate | {line}"));
            if tail.len() == 15 {
                tail.pop_front();
            }
            tail.push_back(line.to_string());
        })
        .await?;
    let last = tail.into_iter().collect::<Vec<_>>().join("\n");
    match outcome {
        Some(0) => Ok(format!("migration done: {shown}")),
        Some(code) => Err(error::rejected(format!(
            "the migration `{shown}` failed with exit code {code}; traffic was not switched. Its last output:\n{last}"
        ))),
        None => Err(error::rejected(format!(
            "the migration `{shown}` did not finish within {} (hooks.migrate.timeout) and was stopped; traffic was not switched. Its last output:\n{last}",
            fmt_duration(migrate.timeout)
        ))),
    }
}

/// `compatibility`: after a migration, the live (old) release must still pass its smoke
/// probes through the live listener (with none, a readiness probe): the old version against
/// the migrated schema.
pub async fn compatibility(run: &mut Run<'_>) -> Result<String> {
    let (host, config) = (run.host, run.host.config);
    let Some(live) = run.live_pool.as_ref().map(|p| p.color) else {
        return Ok("nothing is live".into());
    };
    let checked = if config.smoke.is_empty() {
        let url = format!("{}{}", config.lb.url, config.readiness.path);
        let verdict = host
            .prober
            .probe(&Request::get(url, config.readiness.timeout))
            .await;
        verdict
            .check(&Expect {
                status: std::slice::from_ref(&config.readiness.expect_status),
                color: Some(live),
                ..Default::default()
            })
            .map(drop)
            .map_err(|why| error::rejected(format!("{}: {why}", config.readiness.path)))
    } else {
        let through = Listener {
            base: &config.lb.url,
            color: Some(live),
            name: "live",
            route: None,
            answered_by: None,
        };
        smoke_probes(run, through, Some(through)).await.map(drop)
    };
    checked.map_err(|e| {
        if error::is_interrupted(&e) {
            return e;
        }
        error::rejected(format!(
            "the migration is not backward-compatible: the live release ({live}) fails against the migrated schema: {e:#}\n\
             Traffic stays on {live}, whose users are being hurt right now if this is a shared database: roll the schema forward or fix it. \
             Migrations must keep the old version working (expand first, contract after the old version is gone; see docs/configuration.md)"
        ))
    })?;
    Ok(format!("{live} (live) still works after the migration"))
}

/// `warmup`: each `warmup.requests` entry `count` times to every candidate replica, through
/// the preview listener's per-replica routes, a few at a time. Failures (no answer, a 4xx or
/// 5xx) are reported; with `warmup.must_pass` they reject the candidate.
pub async fn warmup(run: &mut Run<'_>) -> Result<String> {
    let (host, config) = (run.host, run.host.config);
    let pool = run.pool()?.clone();
    let timeout = config.readiness.timeout.max(Duration::from_secs(5));
    let mut jobs = Vec::new();
    for server in &pool.servers {
        for r in &config.warmup.requests {
            for _ in 0..r.count {
                jobs.push((server, r));
            }
        }
    }
    let total = jobs.len();
    let mut failed = 0usize;
    let mut first: Option<String> = None;
    let mut latencies: Vec<Duration> = Vec::with_capacity(total);
    for chunk in jobs.chunks(8) {
        crate::interrupt::check("during the warm-up")?;
        let sent = chunk.iter().map(|(server, r)| {
            let key = server.probe_key(pool.color);
            async move {
                let req = Request {
                    method: &r.method,
                    url: format!("{}{}", config.lb.preview_url, r.path),
                    headers: vec![(crate::probe::PROBE_REPLICA_HEADER, key.as_str())],
                    body: "",
                    timeout,
                };
                (server, r, host.prober.probe(&req).await)
            }
        });
        for (server, r, verdict) in futures_util::future::join_all(sent).await {
            latencies.push(verdict.elapsed);
            let why = match &verdict.answer {
                Ok(a) if a.status < 400 => None,
                Ok(a) => Some(format!("status {}", a.status)),
                Err(e) => Some(e.clone()),
            };
            if let Some(why) = why {
                failed += 1;
                first.get_or_insert(format!("{} {} on {}: {why}", r.method, r.path, server.name));
            }
        }
    }
    latencies.sort();
    let pct = |p: usize| {
        latencies.get((latencies.len() * p / 100).min(latencies.len().saturating_sub(1)))
    };
    let ms = |d: Option<&Duration>| d.map_or(0, |d| d.as_millis());
    let summary = format!(
        "{total} warm-up request(s) to {} replica(s), {failed} failed (p50 {} ms, p95 {} ms)",
        pool.servers.len(),
        ms(pct(50)),
        ms(pct(95))
    );
    match first {
        Some(f) if config.warmup.must_pass => Err(error::rejected(format!(
            "the warm-up failed (warmup.must_pass): {summary}; the first: {f}"
        ))),
        Some(f) => {
            host.out
                .warn(&format!("warm-up: {failed} of {total} request(s) failed (the first: {f}); not gating (warmup.must_pass: false)"));
            Ok(summary)
        }
        None => Ok(summary),
    }
}

/// Makes a request through `lb.url` one of a canary's stable side: `bgd_canary=99` added to
/// its cookies (a bucket no share below 100% takes).
fn stable_side(headers: &mut Vec<(String, String)>) {
    let stable = super::host::STABLE_COOKIE;
    match headers
        .iter_mut()
        .find(|(k, _)| k.eq_ignore_ascii_case("cookie"))
    {
        Some((_, v)) => *v = format!("{v}; {stable}"),
        None => headers.push(("Cookie".into(), stable.into())),
    }
}

/// `smoke`: every smoke probe, answered by the candidate's color through the preview
/// listener (or, `target: live`, by the live color through `lb.url`), in order, with the
/// values earlier probes captured.
pub async fn smoke(run: &mut Run<'_>) -> Result<String> {
    let config = run.host.config;
    let target = run.target()?.color;
    let candidate = Listener {
        base: &config.lb.preview_url,
        color: Some(target),
        name: "preview",
        route: None,
        answered_by: None,
    };
    let live = run.live_pool.as_ref().map(|p| Listener {
        base: &config.lb.url,
        color: Some(p.color),
        name: "live",
        route: None,
        answered_by: None,
    });
    let skipped = smoke_probes(run, candidate, live).await?;
    let mut text = format!(
        "{} smoke probe(s) passed on {target}",
        config.smoke.len() - skipped.len()
    );
    if !skipped.is_empty() {
        text.push_str(&format!(
            "; skipped, as nothing is live yet (target: live, or a value such a probe captures): {}",
            skipped.join(", ")
        ));
    }
    Ok(text)
}

/// Where a smoke probe goes: a listener's URL, the color that must answer, and how messages
/// name it.
#[derive(Clone, Copy)]
pub struct Listener<'a> {
    pub base: &'a str,
    /// The color nginx must say answered (None: a rehearsal container, of no color)
    pub color: Option<Color>,
    pub name: &'a str,
    /// A per-replica route of the preview listener (`X-Bgd-Probe-Replica`)
    pub route: Option<&'a str>,
    /// The `X-Bgd-Color` that must answer when `color` is None (a rehearsal container)
    pub answered_by: Option<&'a str>,
}

/// Runs every smoke probe in order: `target: candidate` ones against `candidate`,
/// `target: live` ones against `live` (skipped, and named in the result, when it is None).
/// Values a probe captures fill later probes' `${NAME}`; they are secrets from then on.
pub async fn smoke_probes(
    run: &Run<'_>,
    candidate: Listener<'_>,
    live: Option<Listener<'_>>,
) -> Result<Vec<String>> {
    use crate::config::ProbeTarget;
    use crate::probe::session::substitute;
    let host = run.host;
    let mut values: std::collections::BTreeMap<String, String> = Default::default();
    // which probe captured each value, and whether through the live color
    let mut from: std::collections::BTreeMap<String, (String, bool)> = Default::default();
    let mut skipped = Vec::new();
    for probe in &host.config.smoke {
        crate::interrupt::check("during the smoke probes")?;
        let used: Vec<String> = [probe.path.as_str(), probe.body.as_str()]
            .into_iter()
            .chain(probe.headers.values().map(String::as_str))
            .flat_map(crate::probe::session::references)
            .collect();
        // a live probe with nothing live, or one needing a value such a probe would have taken
        let needs_skipped = used.iter().any(|n| !values.contains_key(n));
        let to = match (probe.target, live) {
            (ProbeTarget::Live, None) => None,
            (ProbeTarget::Live, Some(l)) => Some(l),
            (ProbeTarget::Candidate, _) => Some(candidate),
        };
        let Some(to) = to.filter(|_| !needs_skipped) else {
            skipped.push(probe.name.clone());
            continue;
        };
        let path = substitute(&probe.path, &values);
        let body = substitute(&probe.body, &values);
        let mut headers: Vec<(String, String)> = probe
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), substitute(v, &values)))
            .collect();
        if to.name == "live" {
            // during a canary, as a client of the stable side (the live color)
            stable_side(&mut headers);
        }
        let mut request = Request {
            method: &probe.method,
            url: format!("{}{path}", to.base),
            headers: headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
            body: &body,
            timeout: SMOKE_TIMEOUT,
        };
        if let Some(route) = to.route {
            request
                .headers
                .push((crate::probe::PROBE_REPLICA_HEADER, route));
        }
        let verdict = host.prober.probe(&request).await;
        let expect = Expect {
            status: &probe.expect.status,
            color: to.color,
            body_contains: probe.expect.body_contains.as_deref(),
            headers: Some(&probe.expect.headers),
            ..Default::default()
        };
        // what it captures is a secret before anything about the answer is printed; as for
        // env_file values, only one of 4 characters or more: masking a shorter string would
        // mask ordinary text everywhere (docs/configuration.md says so)
        if let Ok(a) = &verdict.answer {
            let found: Vec<String> = probe
                .capture
                .iter()
                .filter_map(|(_, how)| how.extract(a))
                .filter(|v| v.len() >= 4)
                .collect();
            host.out.add_secrets(found);
        }
        let answer = verdict.check(&expect).map_err(|why| {
            let mut msg = format!(
                "smoke probe {:?} ({} {} through the {} listener): {why}",
                probe.name, probe.method, probe.path, to.name
            );
            // a value from the live color, refused by the other one: sessions are per container
            let from_live: Vec<&str> = used
                .iter()
                .filter_map(|n| from.get(n))
                .filter(|(_, live)| *live)
                .map(|(p, _)| p.as_str())
                .collect();
            if !from_live.is_empty() && to.color != live.map_or(to.color, |l| l.color) {
                msg.push_str(&format!(
                    "\na session made on the live color (by probe {:?}) is not valid on the candidate: users would be logged out at the switch. Keep session state outside the containers (a shared store: database, Redis, signed cookies)",
                    from_live[0]
                ));
            }
            error::rejected(msg)
        })?;
        if let Some(want) = to.answered_by.filter(|w| answer.color() != Some(*w)) {
            return Err(error::rejected(format!(
                "smoke probe {:?} ({} {} through the {} listener): answered for {:?}, not by {want} (a custom lb.template without the rehearsal routes?)",
                probe.name,
                probe.method,
                probe.path,
                to.name,
                answer.color().unwrap_or("none")
            )));
        }
        for (name, how) in &probe.capture {
            let value = how.extract(answer).ok_or_else(|| {
                error::rejected(format!(
                    "smoke probe {:?} ({} {} through the {} listener): its answer has no {} to capture as {name}",
                    probe.name, probe.method, probe.path, to.name, how.describe()
                ))
            })?;
            values.insert(name.clone(), value);
            from.insert(
                name.clone(),
                (probe.name.clone(), probe.target == ProbeTarget::Live),
            );
        }
    }
    Ok(skipped)
}

/// `drift`: just before the release takes traffic, its containers are the ones the gates
/// proved (running, same addresses, not restarted since) and match bgd.yaml (no drift:
/// changed by hand, or bgd.yaml changed since they were started). Exit 3 otherwise.
pub async fn drift(run: &mut Run<'_>) -> Result<String> {
    let (host, target) = (run.host, run.target()?.clone());
    let pool = run.pool()?;
    // the release's containers as the daemon has them now: listed, and only they inspected
    let labels = [
        (LABEL_MANAGED, "true"),
        (LABEL_APP, host.config.app.as_str()),
    ];
    let listed = host.docker.list_brief(&labels).await?;
    let inspected = listed
        .iter()
        .filter(|c| c.is_of(&target))
        .map(|c| host.docker.inspect(&c.name));
    let all: Vec<ContainerInfo> = futures_util::future::try_join_all(inspected)
        .await?
        .into_iter()
        .flatten()
        .collect();
    let now: Vec<&ContainerInfo> = all.iter().filter(|c| c.is_of(&target)).collect();
    let mut problems = moved_or_restarted(host.config, &target, pool, &now);
    let images = image_defaults(host.docker, &now).await?;
    problems.extend(drift::color_drift(host.config, &target, &now, &images));
    if !problems.is_empty() {
        return Err(error::rejected(format!(
            "the candidate {} ({}) is not what the gates proved, so traffic was not switched:\n  - {}\n\
             If bgd.yaml changed since the candidate started, or someone changed its containers by hand, deploy again",
            target.color,
            target.image,
            problems.join("\n  - ")
        )));
    }
    Ok(format!("{}'s containers match bgd.yaml", target.color))
}

/// How `now` (the release's containers, inspected again) differ from the pool the gates
/// proved: stopped, restarted, moved, gone.
fn moved_or_restarted(
    config: &Config,
    release: &Release,
    proved: &Pool,
    now: &[&ContainerInfo],
) -> Vec<String> {
    let mut problems = Vec::new();
    for c in now {
        if !c.running() {
            problems.push(format!(
                "{} is {} (exit code {})",
                c.name,
                c.state,
                c.exit_code.unwrap_or(-1)
            ));
        } else if c.restart_count > 0 {
            problems.push(format!(
                "{} restarted {} time(s) since it was started",
                c.name, c.restart_count
            ));
        }
    }
    let pool_now = pool_of(config, release, now);
    for s in &proved.servers {
        match pool_now.servers.iter().find(|n| n.replica == s.replica) {
            Some(n) if n.addr == s.addr => {}
            Some(n) => problems.push(format!(
                "{} moved from {} to {} since the gates",
                s.name, s.addr, n.addr
            )),
            None if now.iter().any(|c| c.name == s.name) => {}
            None => problems.push(format!("{} is gone", s.name)),
        }
    }
    problems
}
