//! The steps that get the host ready and read it: the image, the network, the nginx
//! container, then `prepare` (the deploy lock, the observation, nginx's version).

use super::lock;
use super::observe::observe;
use super::plan;
use super::run::{Command, Run};
use super::specs;
use crate::docker::PullProgress;
use crate::error;
use crate::model::{Release, LABEL_ROLE};
use crate::nginx::servers::{clashing_files, listens_on};
use crate::state;
use anyhow::Result;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Longest wait for a new nginx container to come up.
const LB_START_LIMIT: Duration = Duration::from_secs(15);

fn image_of(run: &Run) -> Result<String> {
    match &run.command {
        Command::Deploy(r) => Ok(r.image.clone()),
        _ => Err(anyhow::anyhow!("internal: only a deploy pulls")),
    }
}

/// `pull`: the image is not on the Docker host (or `pull.policy: always`).
pub async fn pull(run: &mut Run<'_>) -> Result<String> {
    let image = image_of(run)?;
    pull_image(run.host, &image).await
}

/// Pulls `image` with the credentials the docker CLI would use, showing its progress, within
/// `pull.timeout`; the first Ctrl-C stops it.
async fn pull_image(host: &super::host::Host<'_>, image: &str) -> Result<String> {
    let login = host.docker.login_for(image).await;
    if let Some(warning) = &login.warning {
        host.out.warn(warning);
    }
    if let Some(c) = &login.credentials {
        host.out.add_secrets(c.secrets());
        if host.docker.sends_in_clear() {
            host.out.warn(&format!(
                "the login for {} goes to the Docker daemon at {} without encryption (tcp:// without TLS): anyone on the way can read it. Use TLS (DOCKER_TLS_VERIFY, or a context with certificates) or ssh://",
                login.registry.name,
                host.docker.host()
            ));
        }
        host.out.detail(&format!(
            "pulling from {} with the credentials from {}",
            login.registry.name, login.looked
        ));
    }
    let started = Instant::now();
    let mut report = |p: &PullProgress| {
        host.out.pull_progress(image, p, started.elapsed());
        crate::interrupt::check("while pulling")
    };
    let done = host
        .docker
        .pull(image, &login, host.config.pull.timeout, &mut report)
        .await?;
    let took = started.elapsed();
    host.out.pull_done(image, &done, took);
    Ok(format!(
        "pulled {image} from {}: {}",
        login.registry.name,
        crate::output::pull_summary(&done, took)
    ))
}

/// `network`: the app network is created (bridge), unless another run just did.
pub async fn network(run: &mut Run<'_>) -> Result<String> {
    let net = &run.host.config.network;
    let labels = HashMap::from([("bgd.managed".to_string(), "true".to_string())]);
    Ok(if run.host.docker.ensure_network(net, labels).await? {
        format!("created network {net}")
    } else {
        format!("network {net} exists")
    })
}

/// `lb`: the nginx container is created from `lb.image` (and started), or connected to the
/// app network.
pub async fn lb(run: &mut Run<'_>) -> Result<String> {
    let (host, config) = (run.host, run.host.config);
    let name = &config.lb.container;
    if let Some(c) = host.docker.inspect(name).await? {
        if c.ip_on(&config.network).is_some() {
            return Ok(format!("{name} is on network {} already", config.network));
        }
        host.docker.connect_network(&config.network, name).await?;
        return Ok(format!("connected {name} to network {}", config.network));
    }
    let Some(image) = config.lb.image.as_deref() else {
        return Err(no_lb(config));
    };
    if !host.docker.image_present(image).await? {
        host.out
            .info(&format!("pulling {image} (not on the Docker host)"));
        let pulled = pull_image(host, image).await?;
        host.out.info(&pulled);
    }
    let spec = specs::lb_spec(config, image);
    if let Err(e) = host.docker.create(&spec).await {
        // Another bgd run may have created it a moment ago: use it once it runs.
        if host.docker.inspect(name).await?.is_none() {
            return Err(e);
        }
        return wait_for_lb(run)
            .await
            .map(|()| "another bgd run created the nginx container".to_string());
    }
    if let Err(e) = start_lb(run, &spec.name).await {
        let logs = host.docker.logs_tail(&spec.name, 20).await;
        let _ = host.docker.remove(&spec.name).await;
        return Err(e.context(format!(
            "the new nginx container {} did not start; it was removed. Its last output:\n{}",
            spec.name,
            logs.trim()
        )));
    }
    Ok(format!("created nginx container {name} from {image}"))
}

fn no_lb(config: &crate::config::Config) -> anyhow::Error {
    error::environment(format!(
        "there is no nginx container named {}; create it, or set lb.image so bgd creates it",
        config.lb.container
    ))
}

async fn wait_for_lb(run: &Run<'_>) -> Result<()> {
    let name = &run.host.config.lb.container;
    let deadline = Instant::now() + LB_START_LIMIT;
    while Instant::now() < deadline {
        if run
            .host
            .docker
            .inspect(name)
            .await?
            .is_some_and(|c| c.running())
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(error::environment(format!(
        "the nginx container {name} another run created did not start within {}s",
        LB_START_LIMIT.as_secs()
    )))
}

/// Starts a new nginx container; it is up when it answers `nginx -v` and still runs.
async fn start_lb(run: &Run<'_>, name: &str) -> Result<()> {
    let host = run.host;
    disable_clashing_default_server(run, name).await?;
    host.docker.start(name).await?;
    let deadline = Instant::now() + LB_START_LIMIT;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let c = host.inspect_required(name).await?;
        if !c.running() {
            return Err(error::environment(format!(
                "nginx container {name} exited (code {})",
                c.exit_code.unwrap_or(-1)
            )));
        }
        if host.nginx().version().await.is_ok_and(|v| v.is_some()) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(error::environment(format!(
                "nginx in {name} did not come up within {}s",
                LB_START_LIMIT.as_secs()
            )));
        }
    }
}

/// In a container bgd created: the official image's `conf.d/default.conf` is a server on
/// port 80 named `localhost`, which on bgd's live port would answer every request for
/// `localhost` with the welcome page. When it listens on one of bgd's ports, bgd replaces it
/// with a comment (the next reload applies that).
async fn disable_clashing_default_server(run: &Run<'_>, name: &str) -> Result<()> {
    let (host, config) = (run.host, run.host.config);
    let path = "/etc/nginx/conf.d/default.conf";
    let Some(files) = host.docker.download(name, path).await? else {
        return Ok(());
    };
    let text = files
        .first()
        .map(|(_, d)| String::from_utf8_lossy(d).into_owned())
        .unwrap_or_default();
    if !listens_on(&text, &bgd_ports(config)) {
        return Ok(());
    }
    let note = format!(
        "# Disabled by bgd: this server listened on a port bgd uses for {} (live {}, preview {}).\n",
        config.app, config.lb.listen, config.lb.preview_listen
    );
    host.docker
        .upload(
            name,
            "/etc/nginx/conf.d",
            &[("default.conf", note.as_bytes())],
        )
        .await?;
    Ok(())
}

/// In a container bgd did not create, bgd writes only its own files: a server of the
/// user's on one of bgd's ports would answer requests meant for the app, so the deploy stops
/// (exit 2, nothing touched) and names the file.
fn refuse_clashing_servers(run: &Run<'_>, name: &str, dump: &str) -> Result<()> {
    let (host, lb) = (run.host, &run.host.config.lb);
    // the names bgd's own requests carry, and the stock server's
    let url_hosts: Vec<&str> = [lb.url.as_str(), lb.preview_url.as_str()]
        .into_iter()
        .filter_map(url_host)
        .collect();
    let named = !lb.hosts.is_empty();
    let mut hosts: Vec<&str> = if named {
        lb.hosts
            .iter()
            .chain(lb.preview_host.iter())
            .map(String::as_str)
            .collect()
    } else {
        vec!["localhost", "127.0.0.1"]
    };
    if !named {
        hosts.extend(url_hosts);
    }
    let files = clashing_files(dump, &bgd_ports(host.config), &hosts, !named);
    let Some(first) = files.first() else {
        return Ok(());
    };
    Err(error::config(format!(
        "the nginx container {name} serves something else on a port bgd uses (live {}, preview {}), in {}: it would answer requests meant for {} (the official image's default.conf answers every request for `localhost`). bgd changes no file of yours: remove that server (e.g. `docker exec {name} rm {first}`), or give bgd other ports (lb.listen, lb.preview_listen). Nothing was changed",
        lb.listen,
        lb.preview_listen,
        files.join(", "),
        host.config.app,
    )))
}

/// Other apps sharing this nginx must not answer for this one: the same name on the same
/// port, or two default servers (one app without `lb.hosts` per port). Found before anything
/// changes: exit 2, naming the other app.
fn refuse_clashing_apps(run: &Run<'_>, name: &str, dump: &str) -> Result<()> {
    let config = run.host.config;
    let lb = &config.lb;
    let preview: Vec<String> = lb.preview_host.iter().cloned().collect();
    let mut wanted = vec![
        (lb.listen, lb.hosts.as_slice(), false),
        (lb.preview_listen, preview.as_slice(), false),
    ];
    if let Some(t) = &lb.tls {
        wanted.push((t.listen, lb.hosts.as_slice(), true));
    }
    let clashes = crate::nginx::servers::app_clashes(dump, &config.app, &wanted);
    if clashes.is_empty() {
        return Ok(());
    }
    let said: Vec<String> = clashes
        .iter()
        .map(|(app, why)| format!("app {app}: {why}"))
        .collect();
    Err(error::config(format!(
        "the nginx container {name} is shared with other apps that would answer requests meant for {} ({}). Give each app sharing a port its own names (lb.hosts, lb.preview_host; one app per port may go without, as the default server), or other ports. Nothing was changed",
        config.app,
        said.join("; ")
    )))
}

/// The ports bgd's servers listen on: live, preview, and HTTPS with `lb.tls`.
fn bgd_ports(config: &crate::config::Config) -> Vec<u16> {
    let lb = &config.lb;
    let mut ports = vec![lb.listen, lb.preview_listen];
    ports.extend(lb.tls.as_ref().map(|t| t.listen));
    ports
}

/// The host part of `http://host:port/...`.
fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next()?;
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => authority.split(':').next()?,
    };
    (!host.is_empty()).then_some(host)
}

/// `prepare`: the nginx container runs, the deploy lock is this run's, the host is read
/// under the lock, and nginx's version is known. From here the outcome is recorded.
pub async fn prepare(run: &mut Run<'_>) -> Result<String> {
    let (host, config) = (run.host, run.host.config);
    // the nginx container's checks and the lock at once, and the host read as soon as the
    // lock is taken: a check that refuses after the lock was taken lets it go with the run
    // (with --lock-wait, the checks first: a refusal does not wait for another run's lock)
    let command = command_line(&run.command);
    let locked_and_read = async {
        let holder = lock::acquire(host, &command).await?;
        let observed = observe(host).await;
        Ok::<_, anyhow::Error>((holder, observed))
    };
    let (checked, locked) = if host.lock_wait.is_zero() {
        tokio::join!(check_lb(run), locked_and_read)
    } else {
        check_lb(run).await?;
        (Ok(()), locked_and_read.await)
    };
    if let Ok((holder, _)) = locked.as_ref() {
        run.lock = crate::nginx::LockUse::Held(holder.token.clone());
        run.holder = Some(holder.clone());
    }
    checked?;
    let (_, observed) = locked?;
    run.obs = observed?;
    trust_the_record(&run.obs)?;
    run.features = host.features(&mut run.obs).await?;
    run.state = run.obs.state.clone();
    run.old_live = run.state.live.clone();
    run.live_pool = run.obs.live_pool(config);
    run.journal.active = true;
    run.journal.entry.at = state::now();
    if let Command::Deploy(request) = &run.command {
        if let (Some(l), Some(p)) = (&run.old_live, &run.live_pool) {
            if p.servers.is_empty() {
                host.out.warn(&format!(
                    "the live color {} has no running replicas: traffic is failing now; deploying anyway",
                    l.color
                ));
            }
        }
        let candidate = Release {
            color: plan::target_color(&run.obs),
            image: request.image.clone(),
            release: state::unique_release_id(&releases_on_host(&run.obs)).await,
        };
        run.set_target(candidate);
    }
    Ok(plan::situation(&run.obs))
}

/// Every release id the host knows: its containers' and the record's.
fn releases_on_host(obs: &super::observe::Observed) -> std::collections::HashSet<String> {
    let s = &obs.state;
    obs.containers
        .iter()
        .filter_map(|c| c.label(crate::model::LABEL_RELEASE).map(str::to_string))
        .chain(s.live.iter().map(|r| r.release.clone()))
        .chain(s.idle.iter().map(|i| i.release.release.clone()))
        .chain(s.set_aside.iter().map(|r| r.release.clone()))
        .collect()
}

/// A record that cannot be read, or that disagrees with what nginx routes, is never acted
/// on (a deploy would take the live color's slot): exit 7, saying what was found and how to
/// rebuild the record.
fn trust_the_record(obs: &crate::deploy::Observed) -> Result<()> {
    let problems = obs.record_problems();
    if problems.is_empty() {
        return Ok(());
    }
    Err(error::unsafe_state(format!(
        "{}. Found: {}. Nothing was changed. `bgd repair` rebuilds the record from what nginx routes and the containers' labels, prints what it decided and changes no routing; then run this again",
        problems.join("; "),
        obs.found()
    )))
}

/// The nginx container must run: bgd drives it and the lock lives in it.
async fn check_lb(run: &Run<'_>) -> Result<()> {
    let (host, config) = (run.host, run.host.config);
    let lb = host.docker.inspect(&config.lb.container).await?;
    match run.command {
        Command::Deploy(_) => {
            let lb = lb.ok_or_else(|| no_lb(config))?;
            if !lb.running() {
                return Err(error::environment(format!(
                    "the nginx container {} is {}; start it (docker start {}) or remove it so bgd recreates it from lb.image",
                    lb.name, lb.state, lb.name
                )));
            }
            let own = lb.label(LABEL_ROLE) == Some("lb");
            // bgd's own container: its image's stock server is bgd's to disable (what the
            // clash check reads is other apps' servers, and in a container of the user's, the
            // user's: the two run at once)
            let stock = async {
                if own {
                    disable_clashing_default_server(run, &lb.name).await
                } else {
                    Ok(())
                }
            };
            let (stock, clashes, tls) = tokio::join!(
                stock,
                refuse_clashes(run, &lb, own),
                super::tls::check(host)
            );
            stock?;
            clashes?;
            tls
        }
        Command::TlsReload => {
            // turning lb.tls on changes which ports bgd serves: the same checks as a deploy
            let lb = host.running_lb(lb.as_ref(), "reload the certificate of")?;
            refuse_clashes(run, &lb, lb.label(LABEL_ROLE) == Some("lb")).await?;
            super::tls::check(host).await
        }
        Command::Switch => host.running_lb(lb.as_ref(), "switch to").map(drop),
        Command::Rollback => host.running_lb(lb.as_ref(), "roll back to").map(drop),
        Command::Reroute => host.running_lb(lb.as_ref(), "reroute").map(drop),
        Command::Discard => host.running_lb(lb.as_ref(), "discard").map(drop),
        Command::Canary(_) => host
            .running_lb(lb.as_ref(), "set the canary's share in")
            .map(drop),
    }
}

/// Servers of the user's (in a container bgd did not create) or of other apps that would
/// answer requests meant for this app: exit 2, nothing changed. nginx's whole
/// configuration is read once for both checks.
async fn refuse_clashes(run: &Run<'_>, lb: &crate::docker::ContainerInfo, own: bool) -> Result<()> {
    let host = run.host;
    let dump = host
        .nginx()
        .dump_config()
        .await
        .map_err(|e| host.nginx_failure(e, "reading nginx's configuration"))?;
    if !own {
        refuse_clashing_servers(run, &lb.name, &dump)?;
    }
    refuse_clashing_apps(run, &lb.name, &dump)
}

/// How the lock names the command that holds it.
fn command_line(command: &Command) -> String {
    match command {
        Command::Deploy(r) if r.no_switch => format!("bgd deploy --no-switch {}", r.image),
        Command::Deploy(r) if r.canary.is_some() => format!(
            "bgd deploy --canary {} {}",
            r.canary.unwrap_or_default(),
            r.image
        ),
        Command::Deploy(r) => format!("bgd deploy {}", r.image),
        Command::Switch => "bgd switch".into(),
        Command::Rollback => "bgd rollback".into(),
        Command::Reroute => "bgd reroute".into(),
        Command::Discard => "bgd discard".into(),
        Command::TlsReload => "bgd tls reload".into(),
        Command::Canary(share) => format!("bgd canary {share}"),
    }
}
