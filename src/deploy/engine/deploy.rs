//! `deploy` (and `--no-switch`, `--plan`) and `switch`: start the candidate, gate it, switch,
//! verify, park the old color; undo everything before the switch when a step fails.

use super::*;

impl Engine<'_> {
    /// `bgd deploy IMAGE`: the whole pipeline. On failure before the switch, the candidate
    /// is removed and nginx routes live traffic as before. With `no_switch` it stops after
    /// the gates and leaves the candidate on the preview listener.
    pub async fn deploy(&self, image: &str, no_switch: bool) -> Result<Deployed> {
        let started = Instant::now();
        let t = Instant::now();
        self.out
            .step("prepare", "checking the image, network and nginx");
        self.ensure_image(image).await?;
        let lb = self.ensure_lb().await?;
        let command = if no_switch {
            format!("bgd deploy --no-switch {image}")
        } else {
            format!("bgd deploy {image}")
        };
        self.locked(
            &command,
            self.deploy_locked(image, lb, started, t, no_switch),
        )
        .await
    }

    async fn deploy_locked(
        &self,
        image: &str,
        lb: ContainerInfo,
        started: Instant,
        t: Instant,
        no_switch: bool,
    ) -> Result<Deployed> {
        let mut obs = observe(self.docker, self.config).await?;
        let kmt = self.keepalive_min_timeout(&mut obs, &lb).await?;
        self.out
            .done("prepare", "image, network and nginx ready", t.elapsed());

        let mut state = obs.state.clone();
        let history = obs.history.clone();
        let mut journal = self.journal("deploy", started);
        journal.entry.image = Some(image.to_string());
        if no_switch {
            journal.entry.command = "deploy --no-switch".into();
        }
        let result = self
            .deploy_steps(image, &mut obs, &mut state, &mut journal, kmt, no_switch)
            .await;
        self.finish_journal(&result, &state, history, journal).await;
        result
    }

    async fn deploy_steps(
        &self,
        image: &str,
        obs: &mut Observed,
        state: &mut AppState,
        journal: &mut Journal,
        kmt: bool,
        no_switch: bool,
    ) -> Result<Deployed> {
        let entry = &mut journal.entry;
        let old_live = state.live.clone();
        let live_pool = old_live
            .as_ref()
            .map(|l| obs.pool(self.config, l.color, &l.release));
        if let (Some(l), Some(p)) = (&old_live, &live_pool) {
            if p.servers.is_empty() {
                self.out.warn(&format!(
                    "the live color {} has no running replicas: traffic is failing now; deploying anyway",
                    l.color
                ));
            }
        }
        let target = old_live.as_ref().map_or(Color::Blue, |l| l.color.other());
        entry.from = old_live.as_ref().map(|l| l.color);
        entry.to = Some(target);

        let release = state::new_release_id();
        entry.release = Some(release.clone());
        let mut undo = Undo::default();
        let freed = self
            .free_idle_color(obs, state, target, &mut undo)
            .await
            .and_then(|()| crate::interrupt::check("before the candidate was started"));
        if let Err(e) = freed {
            self.undo(&mut undo, state, live_pool.as_ref(), kmt).await;
            return Err(e);
        }
        let t = Instant::now();
        self.out.step(
            "start",
            &format!(
                "starting {} {target} replica(s) of {image}",
                self.config.replicas
            ),
        );
        let specs = plan::replica_specs(self.config, target, image, &release);
        let started = async {
            for spec in &specs {
                self.docker.create(spec).await?;
                undo.candidates.push(spec.name.clone());
                crate::interrupt::check("while starting the candidate")?;
            }
            futures_util::future::try_join_all(specs.iter().map(|s| self.docker.start(&s.name)))
                .await?;
            Ok::<(), anyhow::Error>(())
        }
        .await;
        let result = match started {
            Ok(()) => {
                self.out.done(
                    "start",
                    &format!("started {}", undo.candidates.join(", ")),
                    t.elapsed(),
                );
                self.gate_and_switch(
                    image,
                    &release,
                    target,
                    obs,
                    state,
                    live_pool.as_ref(),
                    kmt,
                    &mut undo,
                    journal,
                    no_switch,
                )
                .await
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(report) => Ok(report),
            Err(e) => {
                self.out
                    .failed("deploy", &self.out.redact(&format!("{e:#}")));
                self.undo(&mut undo, state, live_pool.as_ref(), kmt).await;
                Err(e)
            }
        }
    }

    /// Frees the idle color for the candidate (`plan::free_idle_color`): the parked release
    /// is renamed and keeps running, leftovers are removed.
    async fn free_idle_color(
        &self,
        obs: &Observed,
        state: &mut AppState,
        target: Color,
        undo: &mut Undo,
    ) -> Result<()> {
        let freeing = plan::free_idle_color(obs, target);
        if !freeing.remove.is_empty() {
            let names: Vec<String> = freeing.remove.iter().map(|c| c.name.clone()).collect();
            self.out.info(&format!(
                "removing containers of {} that are neither live nor parked: {}",
                self.config.app,
                names.join(", ")
            ));
            self.remove_all(&names).await;
        }
        // A rollback after a killed deploy may have made set-aside containers live under their
        // aside names: give them their own names back now that nothing else holds them.
        if let Some(live) = &state.live {
            for c in obs.of_color(live.color) {
                let own = plan::replica_of(c)
                    .map(|n| crate::model::container_name(&self.config.app, live.color, n));
                match own {
                    Some(own)
                        if c.label(plan::LABEL_RELEASE) == Some(live.release.as_str())
                            && c.name != own =>
                    {
                        if let Err(e) = self.docker.rename(&c.name, &own).await {
                            self.out.warn(&format!("{e:#}"));
                        }
                    }
                    _ => {}
                }
            }
        }
        let parked = state
            .idle
            .take()
            .filter(|i| i.release.color == target && i.role == Role::Parked);
        let (Some(parked), false) = (parked, freeing.set_aside.is_empty()) else {
            return Ok(());
        };
        self.out.info(&format!(
            "setting the parked release {} ({}) aside while the candidate is gated: it comes back if the candidate is rejected",
            parked.release.release, parked.release.image
        ));
        // Recorded as it goes, so that a rename failing half way is undone too.
        let set_aside = undo.set_aside.insert(SetAside {
            release: parked.release,
            containers: Vec::new(),
        });
        for c in freeing.set_aside {
            let Some(n) = plan::replica_of(c) else {
                continue;
            };
            let (canonical, aside) = (
                crate::model::container_name(&self.config.app, target, n),
                plan::aside_name(&self.config.app, target, n),
            );
            let renamed = if c.name == aside {
                Ok(())
            } else {
                self.docker.rename(&c.name, &aside).await
            };
            let now = if renamed.is_ok() {
                aside
            } else {
                c.name.clone()
            };
            set_aside.containers.push((now, canonical));
            renamed?;
        }
        Ok(())
    }

    /// Once the candidate holds the idle color for good (live, or left waiting), the parked
    /// release it replaced goes.
    async fn drop_set_aside(&self, undo: &mut Undo) {
        if let Some(aside) = undo.set_aside.take() {
            let names: Vec<String> = aside.containers.into_iter().map(|(now, _)| now).collect();
            self.remove_all(&names).await;
        }
    }

    /// Puts the host back as it was before the candidate: nginx routes live as before, the
    /// candidate containers are gone, and a parked release set aside is parked again.
    async fn undo(
        &self,
        undo: &mut Undo,
        state: &mut AppState,
        live_pool: Option<&Pool>,
        kmt: bool,
    ) {
        if undo.candidates.is_empty() && undo.set_aside.is_none() {
            return;
        }
        self.out
            .info("undoing: the candidate is removed, live traffic stays where it was");
        self.remove_all(&undo.candidates).await;
        undo.candidates.clear();
        state.idle = None;
        let mut parked_pool = None;
        if let Some(aside) = undo.set_aside.take() {
            match self.give_back(&aside).await {
                Ok(pool) => {
                    state.idle = Some(Idle {
                        release: aside.release.clone(),
                        role: Role::Parked,
                    });
                    parked_pool = Some(pool);
                }
                Err(e) => self.out.warn(&format!(
                    "could not give the parked release {} its names back: {e:#}; `bgd status` shows what is there, the next deploy clears it",
                    aside.release.release
                )),
            }
        }
        if undo.preview_installed {
            state.generation += 1;
            let preview = parked_pool.as_ref().map(|p| (p, Role::Parked));
            let restored = match self.render(state.generation, live_pool, preview, kmt) {
                Ok(text) => self
                    .install(&text, "restoring the routing")
                    .await
                    .map(|_| ()),
                Err(e) => Err(e),
            };
            if let Err(e) = restored {
                // Live routing was never changed by the preview config; only preview is stale.
                self.out.warn(&format!(
                    "could not restore the preview routing: {e:#}; live traffic is unaffected"
                ));
            }
        }
    }

    /// Renames a set-aside parked release back; its pool (addresses do not change).
    async fn give_back(&self, aside: &SetAside) -> Result<Pool> {
        let mut containers = Vec::new();
        for (now, canonical) in &aside.containers {
            if now != canonical {
                self.docker.rename(now, canonical).await?;
            }
            containers.push(self.inspect_required(canonical).await?);
        }
        let refs: Vec<&ContainerInfo> = containers.iter().collect();
        Ok(plan::pool_of(
            self.config,
            aside.release.color,
            &aside.release.release,
            &refs,
        ))
    }

    /// The gates, then the switch (or, with `--no-switch`, a candidate left waiting).
    #[allow(clippy::too_many_arguments)]
    async fn gate_and_switch(
        &self,
        image: &str,
        release: &str,
        target: Color,
        obs: &mut Observed,
        state: &mut AppState,
        live_pool: Option<&Pool>,
        kmt: bool,
        undo: &mut Undo,
        journal: &mut Journal,
        no_switch: bool,
    ) -> Result<Deployed> {
        let candidate = Release {
            color: target,
            image: image.to_string(),
            release: release.to_string(),
        };
        let pool = self
            .gate(&candidate, obs, state, live_pool, kmt, undo)
            .await?;
        if no_switch {
            self.check_candidate(&candidate, &pool).await?;
            // From here the candidate stays: it waits on the preview listener for `bgd switch`.
            undo.candidates.clear();
            self.drop_set_aside(undo).await;
            journal.entry.message = format!("{target} waits as the candidate (--no-switch)");
            return Ok(Deployed::Candidate {
                candidate,
                live: state.live.clone(),
                generation: state.generation,
            });
        }
        self.promote(&candidate, &pool, obs, state, live_pool, kmt, undo, journal)
            .await
            .map(Deployed::Switched)
    }

    /// The candidate's gates: route the preview listener to it, readiness of every replica,
    /// the migration and the compatibility check, the smoke probes. Returns its pool.
    async fn gate(
        &self,
        candidate: &Release,
        obs: &mut Observed,
        state: &mut AppState,
        live_pool: Option<&Pool>,
        kmt: bool,
        undo: &mut Undo,
    ) -> Result<Pool> {
        // Addresses come from Docker, read now, never names nginx would resolve at load.
        let mut candidates = Vec::new();
        for name in &undo.candidates {
            candidates.push(self.inspect_required(name).await?);
        }
        let refs: Vec<&ContainerInfo> = candidates.iter().collect();
        let (target, image, release) = (candidate.color, &candidate.image, &candidate.release);
        let pool = plan::pool_of(self.config, target, release, &refs);
        if pool.servers.len() != candidates.len() {
            let down: Vec<&str> = candidates
                .iter()
                .filter(|c| !c.running() || c.ip_on(&self.config.network).is_none())
                .map(|c| c.name.as_str())
                .collect();
            let name = down.first().copied().unwrap_or_default();
            let logs = self.docker.logs_tail(name, 15).await;
            return Err(error::rejected(format!(
                "candidate {} stopped right after starting; last output of {name}:\n{}",
                down.join(", "),
                logs.trim()
            )));
        }

        // Route the preview listener to the candidate; live routing is unchanged.
        let t = Instant::now();
        self.out
            .step("preview", "routing the preview listener to the candidate");
        state.generation = obs.generation() + 1;
        let text = self.render(
            state.generation,
            live_pool,
            Some((&pool, Role::Candidate)),
            kmt,
        )?;
        self.install(&text, "the preview of the candidate").await?;
        undo.preview_installed = true;
        state.idle = Some(Idle {
            release: candidate.clone(),
            role: Role::Candidate,
        });
        self.out.done(
            "preview",
            "preview listener routes to the candidate",
            t.elapsed(),
        );

        self.readiness_gate(&pool).await?;
        if let Some(migrate) = &self.config.hooks.migrate {
            crate::interrupt::check("before the migration; nothing was migrated")?;
            self.run_migration(migrate, image, release).await?;
            if let Some(live) = live_pool.filter(|p| !p.servers.is_empty()) {
                self.compatibility_gate(live.color).await?;
            }
        }
        self.smoke_gate(target).await?;
        Ok(pool)
    }

    /// A proven candidate takes traffic: one validated switch, verification through `lb.url`
    /// (switching back on failure with `auto_rollback`), then the old color is parked.
    #[allow(clippy::too_many_arguments)]
    async fn promote(
        &self,
        candidate: &Release,
        pool: &Pool,
        obs: &Observed,
        state: &mut AppState,
        live_pool: Option<&Pool>,
        kmt: bool,
        undo: &mut Undo,
        journal: &mut Journal,
    ) -> Result<SwitchReport> {
        let target = candidate.color;
        self.check_candidate(candidate, pool).await?;

        // The switch: one validated reload; the old live color becomes the preview target.
        crate::interrupt::check("before the switch; live traffic was not touched")?;
        let t = Instant::now();
        self.out
            .step("switch", &format!("switching live traffic to {target}"));
        let old_live = state.live.clone();
        journal.entry.message = format!("{target} live");
        let installed = self
            .switch_live(
                state,
                pool,
                live_pool.map(|p| (p, Role::Parked)),
                (live_pool, Some((pool, Role::Candidate))),
                kmt,
                "the switch",
                Some(journal),
            )
            .await?;
        self.out.done(
            "switch",
            &format!("live traffic on {target} (generation {})", state.generation),
            t.elapsed(),
        );

        // From here the candidate is live: the undo path no longer applies.
        undo.candidates.clear();
        self.drop_set_aside(undo).await;
        crate::interrupt::check(&format!("after the switch: {target} is live"))?;

        if let Err(e) = self.verify_live(pool).await {
            if error::exit_code(&e) > 128 {
                return Err(e);
            }
            return self
                .switch_back_after_failed_verify(e, state, pool, live_pool, kmt)
                .await;
        }

        if let (Some(old), ParkMode::Stopped) = (&old_live, self.config.park) {
            self.park_stopped(obs, old).await;
        }
        Ok(SwitchReport {
            live: candidate.clone(),
            parked: old_live,
            generation: state.generation,
            switch_took: installed.took,
        })
    }

    /// Post-switch verification failed: with `auto_rollback` and an old color, switch back
    /// (exit 4); otherwise say exactly what to run.
    async fn switch_back_after_failed_verify(
        &self,
        why: anyhow::Error,
        state: &mut AppState,
        pool: &Pool,
        old_pool: Option<&Pool>,
        kmt: bool,
    ) -> Result<SwitchReport> {
        let (Some(old_pool), true) = (
            old_pool.filter(|p| !p.servers.is_empty()),
            self.config.switch.auto_rollback,
        ) else {
            return Err(error::unsafe_state(format!(
                "the switch happened but verification through lb.url failed: {why:#}\n{}",
                if old_pool.is_some() {
                    "Roll back with: bgd rollback"
                } else {
                    "There is no previous release to go back to; deploy a fixed image"
                }
            )));
        };
        self.out.warn(&format!(
            "verification after the switch failed: {why:#}; switching back"
        ));
        self.switch_live(
            state,
            old_pool,
            Some((pool, Role::Candidate)),
            (Some(pool), Some((old_pool, Role::Parked))),
            kmt,
            "switching back",
            None,
        )
        .await
        .map_err(|e| {
            error::unsafe_state(format!(
                "switching back failed: {e:#}\nRun `bgd status`, then `bgd rollback`"
            ))
        })?;
        // The failed release stays as the idle candidate for inspection on the preview listener
        // (switch_live recorded it with that role).
        Err(Failure::RolledBack(format!(
            "verification after the switch failed, traffic is back on {}: {why:#}",
            old_pool.color
        ))
        .into())
    }

    pub(super) async fn park_stopped(&self, obs: &Observed, old: &Release) {
        let names: Vec<String> = obs
            .of_color(old.color)
            .iter()
            .filter(|c| c.label(LABEL_RELEASE) == Some(old.release.as_str()))
            .map(|c| c.name.clone())
            .collect();
        let t = Instant::now();
        self.out.step(
            "park",
            &format!("stopping the parked {} replicas", old.color),
        );
        let stops = names
            .iter()
            .map(|n| self.docker.stop(n, self.config.container.stop_timeout));
        for (n, r) in names
            .iter()
            .zip(futures_util::future::join_all(stops).await)
        {
            if let Err(e) = r {
                self.out.warn(&format!("could not stop parked {n}: {e:#}"));
            }
        }
        self.out.done(
            "park",
            &format!("parked {} (stopped)", old.color),
            t.elapsed(),
        );
    }

    /// `bgd switch`: the candidate left by `deploy --no-switch` goes live. It waited for a
    /// while, so it is gated again (readiness of every replica, smoke probes, drift) before
    /// the same switch, verification and parking as a deploy. The migration is not rerun.
    pub async fn switch(&self) -> Result<SwitchReport> {
        let started = Instant::now();
        // the lock lives in the nginx container: without one there is nothing to lock
        let lb = self.docker.inspect(&self.config.lb.container).await?;
        self.running_lb(lb, "switch to")?;
        self.locked("bgd switch", self.switch_locked(started)).await
    }

    async fn switch_locked(&self, started: Instant) -> Result<SwitchReport> {
        let mut obs = observe(self.docker, self.config).await?;
        let lb = self.running_lb(obs.lb.clone(), "switch to")?;
        let kmt = self.keepalive_min_timeout(&mut obs, &lb).await?;
        let mut state = obs.state.clone();
        let history = obs.history.clone();
        let mut journal = self.journal("switch", started);
        let result = self
            .switch_steps(&mut obs, &mut state, &mut journal, kmt)
            .await;
        if let Err(e) = &result {
            if error::exit_code(e) == 2 {
                return result; // refused: nothing happened, nothing to record
            }
        }
        self.finish_journal(&result, &state, history, journal).await;
        result
    }

    async fn switch_steps(
        &self,
        obs: &mut Observed,
        state: &mut AppState,
        journal: &mut Journal,
        kmt: bool,
    ) -> Result<SwitchReport> {
        let Some(candidate) = state
            .idle
            .clone()
            .filter(|i| i.role == Role::Candidate)
            .map(|i| i.release)
        else {
            let why = match &state.idle {
                Some(i) => format!(
                    "the idle color {} holds the parked release {} ({}); `bgd rollback` sends traffic to it",
                    i.release.color, i.release.release, i.release.image
                ),
                None => "no candidate is waiting (`bgd deploy --no-switch IMAGE` leaves one)".into(),
            };
            return Err(error::refused(format!("nothing to switch to: {why}")));
        };
        let entry = &mut journal.entry;
        entry.image = Some(candidate.image.clone());
        entry.release = Some(candidate.release.clone());
        entry.from = state.live.as_ref().map(|l| l.color);
        entry.to = Some(candidate.color);
        let containers: Vec<&ContainerInfo> = obs
            .of_color(candidate.color)
            .into_iter()
            .filter(|c| c.label(LABEL_RELEASE) == Some(candidate.release.as_str()))
            .collect();
        if containers.is_empty() {
            return Err(error::refused(format!(
                "nothing to switch to: the candidate's containers ({}, release {}) are gone; deploy again",
                candidate.color, candidate.release
            )));
        }
        let down: Vec<String> = containers
            .iter()
            .filter(|c| !c.running())
            .map(|c| format!("{} is {}", c.name, c.state))
            .collect();
        if !down.is_empty() {
            return Err(error::rejected(format!(
                "the candidate {} ({}) is not running ({}); traffic was not switched. Deploy again",
                candidate.color,
                candidate.image,
                down.join(", ")
            )));
        }
        let live_pool = state
            .live
            .as_ref()
            .map(|l| obs.pool(self.config, l.color, &l.release));
        let pool = obs.pool(self.config, candidate.color, &candidate.release);
        self.route_preview(obs, state, live_pool.as_ref(), &pool, Role::Candidate, kmt)
            .await?;
        self.readiness_gate(&pool).await?;
        self.smoke_gate(candidate.color).await?;
        // Nothing of this run's to remove if the switch fails: the candidate stays a candidate.
        let mut undo = Undo::default();
        self.promote(
            &candidate,
            &pool,
            obs,
            state,
            live_pool.as_ref(),
            kmt,
            &mut undo,
            journal,
        )
        .await
    }

    /// What `deploy IMAGE` would do now (`deploy --plan`): read-only looks at the host, the
    /// pure plan, and the nginx config the deploy would leave active. Touches nothing: no
    /// pull, no network, no container, no lock, no history entry.
    pub async fn plan(&self, image: &str, no_switch: bool) -> Result<PlanReport> {
        let (image_present, network_present, mut obs) = tokio::try_join!(
            self.docker.image_present(image),
            self.docker.network_exists(&self.config.network),
            observe(self.docker, self.config)
        )?;
        let kmt = match obs.lb.clone() {
            Some(lb) if lb.running() => self.keepalive_min_timeout(&mut obs, &lb).await?,
            // read when the deploy creates or starts it
            _ => true,
        };
        let plan = plan::deploy_plan(
            self.config,
            image,
            &state::new_release_id(),
            no_switch,
            &plan::HostFacts {
                image_present,
                network_present,
                observed: &obs,
                keepalive_min_timeout: kmt,
            },
        );
        let after = self.render_input(&plan.nginx_after)?;
        Ok(PlanReport {
            plan,
            active: obs.active_config.clone(),
            after,
        })
    }

    /// The config bgd would write now (for `bgd render`), without touching anything.
    pub async fn render_now(&self) -> Result<String> {
        let mut obs = observe(self.docker, self.config).await?;
        let kmt = match obs.lb.clone() {
            Some(lb) if lb.running() => self.keepalive_min_timeout(&mut obs, &lb).await?,
            _ => true,
        };
        let state = &obs.state;
        let live = state
            .live
            .as_ref()
            .map(|l| obs.pool(self.config, l.color, &l.release));
        let idle = state
            .idle
            .as_ref()
            .map(|i| obs.pool(self.config, i.release.color, &i.release.release));
        let role = state.idle.as_ref().map_or(Role::Parked, |i| i.role);
        self.render(
            obs.generation(),
            live.as_ref(),
            idle.as_ref().map(|p| (p, role)),
            kmt,
        )
    }
}
