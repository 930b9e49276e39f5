//! The gates a release must pass: readiness of every replica, the migration and the
//! old-version compatibility check, smoke probes, the candidate check right before the switch,
//! and the verification through the live listener after it.

use super::*;

impl Engine<'_> {
    /// Readiness of every replica of `pool`, one by one through the preview listener:
    /// `successes` consecutive passes each, all within `readiness.deadline`.
    pub(super) async fn wait_ready(&self, pool: &Pool, successes: u32) -> Result<()> {
        let r = &self.config.readiness;
        let total = pool.servers.len();
        let ready = std::sync::atomic::AtomicUsize::new(0);
        let last_failure: std::sync::Mutex<Vec<(String, String)>> = Default::default();
        let one = |server: &Server| {
            let name = server.name.clone();
            let key = format!("{}-{}", pool.color, server.replica);
            let url = format!("{}{}", self.config.lb.preview_url, r.path);
            let (ready, last_failure) = (&ready, &last_failure);
            async move {
                let mut streak = 0;
                loop {
                    let verdict = match self
                        .prober
                        .request("GET", &url, &[(PROBE_REPLICA_HEADER, &key)], "", r.timeout)
                        .await
                    {
                        Ok(resp) if resp.bgd_color() != Some(pool.color.as_str()) => Err(format!(
                            "the preview listener answered for color {:?}, not {}",
                            resp.bgd_color().unwrap_or("none"),
                            pool.color
                        )),
                        Ok(resp) if resp.status == r.expect_status => Ok(()),
                        Ok(resp) => Err(format!(
                            "{} answered {} (expected {})",
                            r.path, resp.status, r.expect_status
                        )),
                        Err(e) => Err(e),
                    };
                    crate::interrupt::check("during the readiness checks")?;
                    match verdict {
                        Ok(()) => {
                            streak += 1;
                            if streak >= successes {
                                let n = ready.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                                self.out.progress(&format!(
                                    "readiness of {} ({n}/{total} replicas ready)",
                                    pool.color
                                ));
                                return Ok(());
                            }
                        }
                        Err(why) => {
                            streak = 0;
                            if let Ok(mut l) = last_failure.lock() {
                                l.retain(|(n, _)| *n != name);
                                l.push((name.clone(), why));
                            }
                            // A replica that died will not become ready: say so now.
                            if let Some(c) = self.docker.inspect(&name).await? {
                                if !c.running() {
                                    let logs = self.docker.logs_tail(&name, 15).await;
                                    return Err(error::rejected(format!(
                                        "replica {name} is {} (exit code {}); its last output:\n{}",
                                        c.state,
                                        c.exit_code.unwrap_or(-1),
                                        logs.trim()
                                    )));
                                }
                            }
                        }
                    }
                    tokio::time::sleep(r.interval).await;
                }
            }
        };
        let all = futures_util::future::try_join_all(pool.servers.iter().map(one));
        match tokio::time::timeout(r.deadline, all).await {
            Ok(result) => result.map(|_| ()),
            Err(_) => {
                let failures = last_failure.lock().map(|l| l.clone()).unwrap_or_default();
                let detail: Vec<String> = failures
                    .iter()
                    .map(|(n, why)| format!("  {n}: {why}"))
                    .collect();
                let mut msg = format!(
                    "{}/{total} replicas of {} passed readiness ({} x {} {}) within {}",
                    ready.load(std::sync::atomic::Ordering::SeqCst),
                    pool.color,
                    successes,
                    r.expect_status,
                    r.path,
                    fmt_duration(r.deadline)
                );
                if !detail.is_empty() {
                    msg.push_str(&format!("; last failures:\n{}", detail.join("\n")));
                }
                if let Some((name, _)) = failures.first() {
                    let logs = self.docker.logs_tail(name, 10).await;
                    if !logs.trim().is_empty() {
                        msg.push_str(&format!("\nlast output of {name}:\n{}", logs.trim()));
                    }
                }
                Err(error::rejected(msg))
            }
        }
    }

    /// `hooks.migrate`: a one-off container from the new image, with the app's network, env and
    /// volumes, its output streamed; a non-zero exit or a timeout rejects the candidate.
    pub(super) async fn run_migration(
        &self,
        migrate: &crate::config::Migrate,
        image: &str,
        release: &str,
    ) -> Result<()> {
        let t = Instant::now();
        let shown = migrate.command.join(" ");
        self.out
            .step("migrate", &format!("running the migration: {shown}"));
        let spec = plan::migration_spec(self.config, image, release, &migrate.command);
        let mut tail: std::collections::VecDeque<String> = Default::default();
        let outcome = self
            .docker
            .run_to_completion(&spec, migrate.timeout, |line| {
                self.out.info(&format!("migrate | {line}"));
                if tail.len() == 15 {
                    tail.pop_front();
                }
                tail.push_back(line.to_string());
            })
            .await?;
        let last = tail.into_iter().collect::<Vec<_>>().join("\n");
        match outcome {
            Some(0) => {
                self.out.done("migrate", &format!("migration done: {shown}"), t.elapsed());
                Ok(())
            }
            Some(code) => Err(error::rejected(format!(
                "the migration `{shown}` failed with exit code {code}; traffic was not switched. Its last output:\n{last}"
            ))),
            None => Err(error::rejected(format!(
                "the migration `{shown}` did not finish within {} (hooks.migrate.timeout) and was stopped; traffic was not switched. Its last output:\n{last}",
                fmt_duration(migrate.timeout)
            ))),
        }
    }

    /// After a migration, the live (old) release must still pass its smoke probes through the
    /// live listener: the old version against the migrated schema.
    pub(super) async fn compatibility_gate(&self, live: Color) -> Result<()> {
        let t = Instant::now();
        self.out.step(
            "compatibility",
            &format!("checking that {live} (live) still works after the migration"),
        );
        let checked = if self.config.smoke.is_empty() {
            let url = format!("{}{}", self.config.lb.url, self.config.readiness.path);
            match self
                .prober
                .request("GET", &url, &[], "", self.config.readiness.timeout)
                .await
            {
                Ok(r) if r.status == self.config.readiness.expect_status => Ok(()),
                Ok(r) => Err(error::rejected(format!(
                    "{} answered {}",
                    self.config.readiness.path, r.status
                ))),
                Err(e) => Err(error::rejected(e)),
            }
        } else {
            self.smoke(&self.config.lb.url, live, "live").await
        };
        checked.map_err(|e| {
            error::rejected(format!(
                "the migration is not backward-compatible: the live release ({live}) fails against the migrated schema: {e:#}\n\
                 Traffic stays on {live}, whose users are being hurt right now if this is a shared database: roll the schema forward or fix it. \
                 Migrations must keep the old version working (expand first, contract after the old version is gone; see docs/configuration.md)"
            ))
        })?;
        self.out.done(
            "compatibility",
            &format!("{live} (live) still works after the migration"),
            t.elapsed(),
        );
        Ok(())
    }

    /// Runs every smoke probe against `base`, expecting nginx to route to `color`.
    async fn smoke(&self, base: &str, color: Color, listener: &str) -> Result<()> {
        for probe in &self.config.smoke {
            crate::interrupt::check("during the smoke probes")?;
            let resp = self
                .prober
                .smoke(base, probe, SMOKE_TIMEOUT)
                .await
                .map_err(|e| {
                    error::rejected(format!(
                        "smoke probe {:?} ({} {} through the {listener} listener): {e}",
                        probe.name, probe.method, probe.path
                    ))
                })?;
            if resp.bgd_color() != Some(color.as_str()) {
                return Err(error::rejected(format!(
                    "smoke probe {:?}: the {listener} listener routed it to color {:?}, expected {color}",
                    probe.name,
                    resp.bgd_color().unwrap_or("none")
                )));
            }
            judge(&probe.expect, &resp).map_err(|why| {
                error::rejected(format!(
                    "smoke probe {:?} ({} {} through the {listener} listener): {why}",
                    probe.name, probe.method, probe.path
                ))
            })?;
        }
        Ok(())
    }

    /// Readiness of every replica of a candidate: `readiness.successes` passes each.
    pub(super) async fn readiness_gate(&self, pool: &Pool) -> Result<()> {
        let t = Instant::now();
        self.out.step(
            "readiness",
            &format!(
                "readiness of {} (0/{} replicas ready)",
                pool.color,
                pool.servers.len()
            ),
        );
        self.wait_ready(pool, self.config.readiness.successes)
            .await?;
        self.out.done(
            "readiness",
            &format!(
                "all {} replica(s) of {} ready",
                pool.servers.len(),
                pool.color
            ),
            t.elapsed(),
        );
        Ok(())
    }

    /// The smoke probes against a candidate, through the preview listener.
    pub(super) async fn smoke_gate(&self, target: Color) -> Result<()> {
        if self.config.smoke.is_empty() {
            return Ok(());
        }
        let t = Instant::now();
        self.out
            .step("smoke", "smoke probes through the preview listener");
        self.smoke(&self.config.lb.preview_url, target, "preview")
            .await?;
        self.out.done(
            "smoke",
            &format!(
                "{} smoke probe(s) passed on {target}",
                self.config.smoke.len()
            ),
            t.elapsed(),
        );
        Ok(())
    }

    /// Just before a candidate may take traffic: its containers are the ones the gates
    /// proved (running, same addresses, not restarted since) and match bgd.yaml (no drift:
    /// changed by hand, or bgd.yaml changed since they were started). Exit 3 otherwise.
    pub(super) async fn check_candidate(&self, candidate: &Release, pool: &Pool) -> Result<()> {
        let t = Instant::now();
        self.out.step(
            "drift",
            "checking the candidate's containers against bgd.yaml",
        );
        let containers: Vec<ContainerInfo> =
            crate::deploy::observe::list_containers(self.docker, self.config)
                .await?
                .into_iter()
                .filter(|c| {
                    c.label(plan::LABEL_COLOR) == Some(candidate.color.as_str())
                        && c.label(LABEL_RELEASE) == Some(candidate.release.as_str())
                })
                .collect();
        let refs: Vec<&ContainerInfo> = containers.iter().collect();
        let mut problems = Vec::new();
        for c in &refs {
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
        let now = plan::pool_of(self.config, candidate.color, &candidate.release, &refs);
        for s in &pool.servers {
            let name = &s.name;
            match now.servers.iter().find(|n| n.replica == s.replica) {
                Some(n) if n.addr == s.addr => {}
                Some(n) => problems.push(format!(
                    "{name} moved from {} to {} since the gates",
                    s.addr, n.addr
                )),
                None if refs.iter().any(|c| c.name == *name) => {}
                None => problems.push(format!("{name} is gone")),
            }
        }
        let images = crate::deploy::observe::image_defaults(self.docker, &refs).await?;
        problems.extend(drift::color_drift(
            self.config,
            candidate.color,
            &candidate.image,
            &candidate.release,
            &refs,
            &images,
        ));
        if !problems.is_empty() {
            return Err(error::rejected(format!(
                "the candidate {} ({}) is not what the gates proved, so traffic was not switched:\n  - {}\n\
                 If bgd.yaml changed since the candidate started, or someone changed its containers by hand, deploy again",
                candidate.color,
                candidate.image,
                problems.join("\n  - ")
            )));
        }
        self.out.done(
            "drift",
            "the candidate's containers match bgd.yaml",
            t.elapsed(),
        );
        Ok(())
    }

    /// Verification after a switch: for `switch.verify`, rounds of the smoke probes through
    /// `lb.url` and a readiness probe of every live replica, `readiness.interval` apart (one
    /// round when `verify` is 0). Any failure is the verdict.
    pub(super) async fn verify_live(&self, pool: &Pool) -> Result<()> {
        let t = Instant::now();
        let window = self.config.switch.verify;
        self.out.step(
            "verify",
            &format!(
                "verifying {} through the live listener for {}",
                pool.color,
                fmt_duration(window)
            ),
        );
        let r = &self.config.readiness;
        let mut rounds = 0;
        loop {
            self.smoke(&self.config.lb.url, pool.color, "live").await?;
            for server in &pool.servers {
                let key = format!("{}-{}", pool.color, server.replica);
                let url = format!("{}{}", self.config.lb.preview_url, r.path);
                let name = &server.name;
                match self
                    .prober
                    .request("GET", &url, &[(PROBE_REPLICA_HEADER, &key)], "", r.timeout)
                    .await
                {
                    Ok(resp) if resp.status == r.expect_status => {}
                    Ok(resp) => {
                        return Err(error::rejected(format!(
                            "live replica {name}: {} answered {} (expected {})",
                            r.path, resp.status, r.expect_status
                        )))
                    }
                    Err(e) => return Err(error::rejected(format!("live replica {name}: {e}"))),
                }
            }
            rounds += 1;
            crate::interrupt::check(&format!("after the switch: {} is live", pool.color))?;
            if t.elapsed() + r.interval > window {
                break;
            }
            tokio::time::sleep(r.interval).await;
        }
        self.out.done(
            "verify",
            &format!(
                "{} verified through the live listener ({rounds} rounds)",
                pool.color
            ),
            t.elapsed(),
        );
        Ok(())
    }
}
