//! Getting the host ready for a deploy: the image, the network and the nginx container.

use super::*;

impl Engine<'_> {
    /// The image is on the host, or is pulled; otherwise exit 6 naming it.
    pub async fn ensure_image(&self, image: &str) -> Result<()> {
        if self.docker.image_present(image).await? {
            return Ok(());
        }
        let t = Instant::now();
        self.out
            .step("pull", &format!("pulling {image} (not on the Docker host)"));
        self.docker.pull(image, PULL_LIMIT).await?;
        self.out
            .done("pull", &format!("pulled {image}"), t.elapsed());
        Ok(())
    }

    /// The nginx container: running and on the app network; created from `lb.image` when
    /// absent.
    pub async fn ensure_lb(&self) -> Result<ContainerInfo> {
        let lb = &self.config.lb;
        let net_labels = [("bgd.managed".to_string(), "true".to_string())]
            .into_iter()
            .collect();
        if self
            .docker
            .ensure_network(&self.config.network, net_labels)
            .await?
        {
            self.out
                .info(&format!("created network {}", self.config.network));
        }
        if let Some(c) = self.docker.inspect(&lb.container).await? {
            if !c.running() {
                return Err(error::environment(format!(
                    "the nginx container {} is {}; start it (docker start {}) or remove it so bgd recreates it from lb.image",
                    lb.container, c.state, lb.container
                )));
            }
            self.disable_clashing_default_server(&lb.container, false)
                .await?;
            if c.ip_on(&self.config.network).is_none() {
                self.docker
                    .connect_network(&self.config.network, &lb.container)
                    .await?;
                self.out.info(&format!(
                    "connected {} to network {}",
                    lb.container, self.config.network
                ));
                return self.inspect_required(&lb.container).await;
            }
            return Ok(c);
        }
        let Some(image) = lb.image.as_deref() else {
            return Err(error::environment(format!(
                "there is no nginx container named {}; create it, or set lb.image so bgd creates it",
                lb.container
            )));
        };
        let t = Instant::now();
        self.out.step(
            "lb",
            &format!("creating nginx container {} from {image}", lb.container),
        );
        self.ensure_image(image).await?;
        let spec = plan::lb_spec(self.config, image);
        if let Err(e) = self.docker.create(&spec).await {
            // Another bgd run may have created it a moment ago: use it once it runs.
            if self.docker.inspect(&lb.container).await?.is_none() {
                return Err(e);
            }
            for _ in 0..75 {
                if let Some(c) = self.docker.inspect(&lb.container).await? {
                    if c.running() {
                        self.out.done(
                            "lb",
                            "another bgd run created the nginx container",
                            t.elapsed(),
                        );
                        return Ok(c);
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            return Err(e);
        }
        let started = self.start_lb(&spec.name).await;
        if let Err(e) = started {
            let logs = self.docker.logs_tail(&spec.name, 20).await;
            let _ = self.docker.remove(&spec.name).await;
            return Err(e.context(format!(
                "the new nginx container {} did not start; it was removed. Its last output:\n{}",
                spec.name,
                logs.trim()
            )));
        }
        self.out.done(
            "lb",
            &format!("created nginx container {} from {image}", lb.container),
            t.elapsed(),
        );
        self.inspect_required(&lb.container).await
    }

    async fn start_lb(&self, name: &str) -> Result<()> {
        self.disable_clashing_default_server(name, true).await?;
        self.docker.start(name).await?;
        // nginx is up when it answers `nginx -v` and its container still runs.
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let c = self.inspect_required(name).await?;
            if !c.running() {
                return Err(error::environment(format!(
                    "nginx container {name} exited (code {})",
                    c.exit_code.unwrap_or(-1)
                )));
            }
            if self.nginx().version().await.is_ok_and(|v| v.is_some()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(error::environment(format!(
                    "nginx in {name} did not come up within 15s"
                )));
            }
        }
    }

    /// The official image's `conf.d/default.conf` is a server on port 80 named `localhost`: on
    /// bgd's live port it would answer every request for `localhost` with the welcome page.
    /// When it listens on one of bgd's ports, bgd replaces it with a comment (the next reload
    /// applies that). Other files are the user's and are left alone.
    async fn disable_clashing_default_server(&self, name: &str, created: bool) -> Result<()> {
        let path = "/etc/nginx/conf.d/default.conf";
        let Some(files) = self.docker.download(name, path).await? else {
            return Ok(());
        };
        let text = files
            .first()
            .map(|(_, d)| String::from_utf8_lossy(d).into_owned())
            .unwrap_or_default();
        let ports = [self.config.lb.listen, self.config.lb.preview_listen];
        if !plan::listens_on(&text, &ports) {
            return Ok(());
        }
        let note = format!(
            "# Disabled by bgd: this server listened on a port bgd uses for {} (live {}, preview {}).\n",
            self.config.app, self.config.lb.listen, self.config.lb.preview_listen
        );
        self.docker
            .upload(
                name,
                "/etc/nginx/conf.d",
                &[("default.conf", note.as_bytes())],
            )
            .await?;
        if !created {
            self.out.warn(&format!(
                "disabled {path} in {name}: it listened on a port bgd routes (it would answer requests for its server_name)"
            ));
        }
        Ok(())
    }
}
