//! `rollback`: the parked color goes live again. A fast path learns what it needs from nginx
//! and the labels alone; anything unusual takes the full path through bgd's files.

use super::*;

impl Engine<'_> {
    /// `bgd rollback`: the parked color goes live again, fast: one readiness pass over its
    /// replicas and the same validated switch.
    pub async fn rollback(&self, verify: bool) -> Result<SwitchReport> {
        let started = Instant::now();
        if let Some(fast) = self.fast_view().await? {
            if let Some(done) = self.rollback_fast(fast, started, verify).await? {
                return Ok(done);
            }
            // the lock was busy at the switch: the full path waits for it or reports it
        }
        // the lock lives in the nginx container: without one there is nothing to lock
        let lb = self.docker.inspect(&self.config.lb.container).await?;
        self.running_lb(lb, "roll back to")?;
        self.locked("bgd rollback", self.rollback_full(started, verify))
            .await
    }

    async fn rollback_full(&self, started: Instant, verify: bool) -> Result<SwitchReport> {
        let mut obs = observe(self.docker, self.config).await?;
        self.out.detail(&format!(
            "observed the host in {}ms",
            started.elapsed().as_millis()
        ));
        let lb = self.running_lb(obs.lb.clone(), "roll back to")?;
        let mut state = obs.state.clone();
        let history = obs.history.clone();
        let mut journal = self.journal("rollback", started);
        let result = self
            .rollback_steps(&mut obs, &lb, &mut state, &mut journal, verify)
            .await;
        if let Err(e) = &result {
            if error::exit_code(e) == 2 {
                return result; // refused: nothing happened, nothing to record
            }
        }
        self.finish_journal(&result, &state, history, journal).await;
        result
    }

    /// What a rollback needs, learned without reading bgd's files (a container-filesystem read
    /// costs ~100 ms on some daemons): nginx itself answers `/__bgd` on the preview listener
    /// with the idle color, the generation and its version; labels give the releases. `None`
    /// when anything is unusual, and the full observation is used instead.
    async fn fast_view(&self) -> Result<Option<FastView>> {
        let url = format!("{}/__bgd", self.config.lb.preview_url);
        let ask = self
            .prober
            .request("GET", &url, &[], "", Duration::from_millis(1000));
        let (containers, lb, answer) = tokio::join!(
            crate::deploy::observe::list_containers(self.docker, self.config),
            self.docker.inspect(&self.config.lb.container),
            ask
        );
        let (containers, Some(lb), Ok(answer)) = (containers?, lb?, answer) else {
            return Ok(None);
        };
        let (Some(parked_color), Some(generation), Some(version)) = (
            answer.bgd_color().and_then(Color::parse),
            answer.bgd_generation(),
            answer.header("server").and_then(render::parse_version),
        ) else {
            return Ok(None);
        };
        if answer.status != 204 || !lb.running() {
            return Ok(None);
        }
        let of = |color: Color| -> Vec<ContainerInfo> {
            containers
                .iter()
                .filter(|c| c.label(plan::LABEL_COLOR) == Some(color.as_str()))
                .cloned()
                .collect()
        };
        let release_of = |cs: &[ContainerInfo]| -> Option<Release> {
            let first = cs.first()?;
            let release = first.label(LABEL_RELEASE)?;
            let color = Color::parse(first.label(plan::LABEL_COLOR)?)?;
            cs.iter()
                .all(|c| c.label(LABEL_RELEASE) == Some(release) && c.image == first.image)
                .then(|| Release {
                    color,
                    image: first.image.clone(),
                    release: release.to_string(),
                })
        };
        let (parked_cs, live_cs) = (of(parked_color), of(parked_color.other()));
        let (Some(parked), Some(live)) = (release_of(&parked_cs), release_of(&live_cs)) else {
            return Ok(None);
        };
        // Only a parked release (not a candidate) is rolled back to; a stopped one takes the
        // full path, which starts it.
        if answer.header("x-bgd-idle-role") != Some("parked")
            || !parked_cs.iter().all(ContainerInfo::running)
        {
            return Ok(None);
        }
        let refs: Vec<&ContainerInfo> = parked_cs.iter().collect();
        let parked_pool = plan::pool_of(self.config, parked.color, &parked.release, &refs);
        let refs: Vec<&ContainerInfo> = live_cs.iter().collect();
        let live_pool = plan::pool_of(self.config, live.color, &live.release, &refs);
        if parked_pool.servers.len() != parked_cs.len() {
            return Ok(None);
        }
        // nginx must route each probe to the replica's current address (Docker gives a
        // restarted container a new one): X-Bgd-Upstream says where a probe went.
        for server in &parked_pool.servers {
            let key = format!("{}-{}", parked.color, server.replica);
            let probe = self
                .prober
                .request(
                    "GET",
                    &format!(
                        "{}{}",
                        self.config.lb.preview_url, self.config.readiness.path
                    ),
                    &[(PROBE_REPLICA_HEADER, &key)],
                    "",
                    self.config.readiness.timeout,
                )
                .await;
            if !probe.is_ok_and(|r| r.header("x-bgd-upstream") == Some(server.addr.as_str())) {
                return Ok(None);
            }
        }
        let state = AppState {
            app: self.config.app.clone(),
            generation,
            live: Some(live),
            idle: Some(Idle {
                release: parked,
                role: Role::Parked,
            }),
            nginx: Some(NginxInfo {
                container_id: lb.id.clone(),
                version: format!("{}.{}.{}", version.0, version.1, version.2),
            }),
            updated_at: state::now(),
        };
        Ok(Some(FastView {
            state,
            parked_pool,
            live_pool,
            keepalive_min_timeout: render::supports_keepalive_min_timeout(version),
        }))
    }

    /// The rollback on what `fast_view` learned: readiness pass, switch, park, verify.
    async fn rollback_fast(
        &self,
        fast: FastView,
        started: Instant,
        verify: bool,
    ) -> Result<Option<SwitchReport>> {
        let FastView {
            mut state,
            parked_pool,
            live_pool,
            keepalive_min_timeout: kmt,
        } = fast;
        if !kmt {
            self.warn_old_nginx(&state);
        }
        let (Some(parked), old_live) = (state.idle.clone().map(|i| i.release), state.live.clone())
        else {
            return Err(anyhow::anyhow!("fast rollback without a parked release"));
        };
        let mut journal = self.journal("rollback", started);
        journal.entry.image = Some(parked.image.clone());
        journal.entry.release = Some(parked.release.clone());
        journal.entry.from = old_live.as_ref().map(|l| l.color);
        journal.entry.to = Some(parked.color);
        let result = self
            .rollback_to(
                &mut state,
                &parked,
                &parked_pool,
                Some(&live_pool),
                kmt,
                &mut journal,
                Some(LockUse::Once(Holder::me("bgd rollback"))),
                verify,
            )
            .await;
        if let Err(e) = &result {
            if !journal.recorded && error::exit_code(e) == 5 {
                return Ok(None);
            }
        }
        if result.is_err() || !journal.recorded {
            // the rare path: read the history so the failure is appended to it
            let history = match observe(self.docker, self.config).await {
                Ok(obs) => obs.history,
                Err(_) => Vec::new(),
            };
            self.finish_journal(&result, &state, history, journal).await;
        }
        result.map(Some)
    }

    /// After a rollback's switch: park the old color as configured, and verify on request.
    async fn after_rollback(
        &self,
        parked: &Release,
        pool: &Pool,
        old_live: Option<&Release>,
        verify: bool,
    ) -> Result<()> {
        if let (Some(old), ParkMode::Stopped) = (old_live, self.config.park) {
            let obs = observe(self.docker, self.config).await?;
            self.park_stopped(&obs, old).await;
        }
        if verify {
            self.verify_live(pool).await.map_err(|e| {
                error::unsafe_state(format!(
                    "rolled back to {}, but it fails verification through lb.url: {e:#}\nCheck `bgd status`; `bgd rollback` again returns to the release you left",
                    parked.color
                ))
            })?;
        }
        Ok(())
    }

    async fn rollback_steps(
        &self,
        obs: &mut Observed,
        lb: &ContainerInfo,
        state: &mut AppState,
        journal: &mut Journal,
        verify: bool,
    ) -> Result<SwitchReport> {
        let entry = &mut journal.entry;
        let Some(parked) = state.idle.clone().filter(|i| i.role == Role::Parked) else {
            let why = match &state.idle {
                Some(i) => format!(
                    "the idle color {} holds a candidate ({}), not a parked release; `bgd switch` promotes it, the next deploy replaces it",
                    i.release.color, i.release.image
                ),
                None => "no release is parked".to_string(),
            };
            return Err(error::refused(format!("nothing to roll back to: {why}")));
        };
        let parked = parked.release;
        entry.image = Some(parked.image.clone());
        entry.release = Some(parked.release.clone());
        entry.from = state.live.as_ref().map(|l| l.color);
        entry.to = Some(parked.color);
        let containers: Vec<ContainerInfo> = obs
            .of_color(parked.color)
            .into_iter()
            .filter(|c| c.label(LABEL_RELEASE) == Some(parked.release.as_str()))
            .cloned()
            .collect();
        if containers.is_empty() {
            return Err(error::refused(format!(
                "nothing to roll back to: the parked {} containers of release {} are gone",
                parked.color, parked.release
            )));
        }
        let kmt = self.keepalive_min_timeout(obs, lb).await?;
        let live = state.live.clone();
        let live_pool = live
            .as_ref()
            .map(|l| obs.pool(self.config, l.color, &l.release));

        // Parked stopped: start it first; its addresses may change.
        let stopped: Vec<&ContainerInfo> = containers.iter().filter(|c| !c.running()).collect();
        if !stopped.is_empty() {
            let t = Instant::now();
            self.out.step(
                "start",
                &format!("starting the parked {} replicas", parked.color),
            );
            futures_util::future::try_join_all(stopped.iter().map(|c| self.docker.start(&c.name)))
                .await?;
            *obs = observe(self.docker, self.config).await?;
            self.out.done(
                "start",
                &format!("started the parked {} replicas", parked.color),
                t.elapsed(),
            );
        }
        let pool = obs.pool(self.config, parked.color, &parked.release);
        if pool.servers.len() != containers.len() {
            return Err(error::environment(format!(
                "only {}/{} parked {} replicas are running with an address on {}",
                pool.servers.len(),
                containers.len(),
                parked.color,
                self.config.network
            )));
        }

        self.route_preview(obs, state, live_pool.as_ref(), &pool, Role::Parked, kmt)
            .await?;

        self.rollback_to(
            state,
            &parked,
            &pool,
            live_pool.as_ref(),
            kmt,
            journal,
            None,
            verify,
        )
        .await
    }

    /// The common part of both rollback paths: one readiness pass over the parked replicas,
    /// the switch, then parking the old color and verifying on request. `lock` is set when
    /// the switch's exec takes the deploy lock for itself (the fast path).
    #[allow(clippy::too_many_arguments)]
    async fn rollback_to(
        &self,
        state: &mut AppState,
        parked: &Release,
        pool: &Pool,
        live_pool: Option<&Pool>,
        kmt: bool,
        journal: &mut Journal,
        lock: Option<LockUse>,
        verify: bool,
    ) -> Result<SwitchReport> {
        let old_live = state.live.clone();
        journal.entry.message = format!("{} live", parked.color);
        let t = Instant::now();
        self.out.step(
            "readiness",
            &format!("checking the parked {} replicas", parked.color),
        );
        self.wait_ready(pool, 1).await.map_err(|e| {
            // the parked release is not healthy: refuse to send users to it
            anyhow::Error::from(Failure::Environment(format!(
                "the parked release is not ready, traffic stays on {}: {e:#}",
                live_pool.map_or("none", |l| l.color.as_str())
            )))
        })?;
        self.out.done(
            "readiness",
            &format!("parked {} replicas ready", parked.color),
            t.elapsed(),
        );

        crate::interrupt::check("before the switch; live traffic was not touched")?;
        let t = Instant::now();
        self.out.step(
            "switch",
            &format!("switching live traffic back to {}", parked.color),
        );
        let once = lock.is_some();
        if let Some(lock) = lock {
            self.set_lock_use(lock);
        }
        let switched = self
            .switch_live(
                state,
                pool,
                live_pool.map(|p| (p, Role::Parked)),
                (live_pool, Some((pool, Role::Parked))),
                kmt,
                "the rollback",
                Some(journal),
            )
            .await;
        if once {
            self.set_lock_use(LockUse::None);
        }
        let installed = switched?;
        self.out.done(
            "switch",
            &format!(
                "live traffic on {} (generation {})",
                parked.color, state.generation
            ),
            t.elapsed(),
        );
        self.after_rollback(parked, pool, old_live.as_ref(), verify)
            .await?;
        Ok(SwitchReport {
            live: parked.clone(),
            parked: old_live,
            generation: state.generation,
            switch_took: installed.took,
        })
    }
}
