//! `Host`: the real adapters a command works through (the config, Docker, nginx, the prober,
//! the output), and the few operations on them that every command shares: rendering and
//! installing a config, confirming what nginx serves, reading nginx's version.

use super::observe::Observed;
use crate::config::{Config, TlsSource, Via};
use crate::docker::{ContainerInfo, Docker};
use crate::error;
use crate::model::Color;
use crate::nginx::render::{self, Features};
use crate::nginx::{Install, Installed, LockUse, Nginx, NginxError, RecordWrite};
use crate::output::{fmt_duration, Output};
use crate::probe::{Prober, Request, TlsProbe};
use crate::state::NginxInfo;
use anyhow::Result;
use std::time::{Duration, Instant};

/// How long nginx has to show the new generation through `lb.url` after the handover.
const CONFIRM_LIMIT: Duration = Duration::from_secs(3);
/// The cookie of a client whose bucket (99) no canary share below 100% takes: the stable side.
pub const STABLE_COOKIE: &str = "bgd_canary=99";
/// The cookie of a client whose bucket (00) every canary share takes: the canary side.
pub const CANARY_COOKIE: &str = "bgd_canary=00";

pub struct Host<'a> {
    pub config: &'a Config,
    pub docker: &'a Docker,
    pub out: &'a Output,
    pub prober: Prober,
    /// `--lock-wait`: how long to wait for a busy deploy lock
    pub lock_wait: Duration,
    template: &'a str,
    /// `lb.tls`'s files are in the nginx container (uploaded once per run)
    tls_uploaded: tokio::sync::OnceCell<()>,
}

impl<'a> Host<'a> {
    pub fn new(
        config: &'a Config,
        docker: &'a Docker,
        out: &'a Output,
        lock_wait: Duration,
    ) -> Result<Host<'a>> {
        let (template, _) = render::template_for(config.lb.template.as_ref());
        // with an ssh:// daemon, probes travel with the Docker connection (lb.via: auto), to
        // nginx's two listeners only
        let socks = match config.lb.via {
            Via::Auto => docker.ssh_proxy(&listeners(config))?,
            Via::Direct => None,
        };
        Ok(Host {
            config,
            docker,
            out,
            prober: Prober::new(
                socks.as_deref(),
                probe_hosts(config),
                Some(config.app.clone()),
                TlsProbe {
                    system_roots: config.lb.url.to_ascii_lowercase().starts_with("https://")
                        && config.lb.tls.as_ref().is_none_or(|t| t.ca.is_none()),
                    ca: config
                        .lb
                        .tls
                        .as_ref()
                        .and_then(|t| t.ca.as_ref())
                        .map(|(_, pem)| pem.clone()),
                    names: tls_name(config)
                        .map(|n| vec![(config.lb.url.clone(), n)])
                        .unwrap_or_default(),
                },
            )?,
            lock_wait,
            template,
            tls_uploaded: tokio::sync::OnceCell::new(),
        })
    }

    pub fn nginx(&self) -> Nginx<'_> {
        Nginx::new(self.docker, &self.config.lb.container, &self.config.app)
    }

    /// The config text for `input`; a template that tera cannot render is a config error.
    pub fn render(&self, input: &render::RenderInput) -> Result<String> {
        render::render(self.template, input).map_err(|e| {
            let (_, which) = render::template_for(self.config.lb.template.as_ref());
            error::config(format!("cannot render {which}: {e:#}"))
        })
    }

    /// What an nginx outcome means for a command doing `what`: its error kind and message.
    pub fn nginx_failure(&self, e: NginxError, what: &str) -> anyhow::Error {
        match e {
            NginxError::Invalid(detail) => {
                let msg = format!(
                    "nginx rejected the config for {what}; the previous config is still active.\n{detail}"
                );
                match &self.config.lb.template {
                    Some((path, _)) => error::config(format!(
                        "{msg}\nFix the template {} (bgd render shows what it produces)",
                        path.display()
                    )),
                    None => error::environment(msg),
                }
            }
            NginxError::NotApplied(detail) => error::environment(format!(
                "nginx did not apply the config for {what}; the previous config is active again.\n{detail}"
            )),
            NginxError::Locked(holder) => {
                error::locked(crate::lock::held_by(&self.config.app, holder.as_deref()))
            }
            NginxError::LockLost => error::locked(format!(
                "the deploy lock of {} was released or taken over while this run held it; nothing was changed by this step. Check `bgd lock status` and `bgd status`",
                self.config.app
            )),
            NginxError::Busy(msg) | NginxError::Broken(msg) => error::environment(msg),
            NginxError::Bug(msg) => anyhow::anyhow!("{what}: {msg}"),
            NginxError::Unknown(msg) => error::environment(msg),
            e @ NginxError::Untrusted(_) => {
                let msg = format!(
                    "{e} by {what}. `bgd status` says what is wrong with it; `bgd repair` rebuilds it from what nginx routes and the containers' labels (upgrade this bgd first if a newer one wrote it)"
                );
                anyhow::Error::new(e).context(error::Failure::Unsafe(msg))
            }
            e @ NginxError::Stale(_) => {
                let msg = format!("{e}; nothing was changed by {what}. Run the command again");
                anyhow::Error::new(e).context(error::Failure::Environment(msg))
            }
            NginxError::Docker(e) => e,
        }
    }

    /// Installs a config (see `Nginx::install`); `what` names it in messages.
    pub async fn install(
        &self,
        text: &str,
        what: &str,
        record: Option<RecordWrite>,
        lock: &LockUse,
    ) -> Result<Installed> {
        let done = self
            .send_install(text, what, record, lock)
            .await
            .map_err(|e| self.nginx_failure(e, what))?;
        self.warn_stopped(done.old_workers_stopped);
        Ok(done)
    }

    /// Moves live traffic by the active config's rollback flag (see `Nginx::flip`), recording
    /// `record` (its history line as `amend` brings it) in the same exec. As with `install_routing`, an exec whose end bgd did not
    /// see is exit 7: nginx may now route live traffic to `live_after`.
    pub async fn flip_routing(
        &self,
        flag: &str,
        to: crate::nginx::FlagTo,
        record: &RecordWrite,
        lock: &LockUse,
        live_after: &str,
        amend: Option<crate::nginx::Amend>,
    ) -> Result<Installed> {
        let what = "the switch (by the rollback flag)";
        let started = std::time::Instant::now();
        match self.nginx().flip(flag, to, record, lock, amend).await {
            Err(e) if e.outcome_unknown() => Err(lost_track(what, &e, live_after)),
            Err(e) => Err(self.nginx_failure(e, what)),
            Ok(flipped) => Ok(Installed {
                took: started.elapsed(),
                old_workers_stopped: 0,
                unrecorded: flipped.unrecorded,
                reloaded: false,
                undone: flipped.undone,
            }),
        }
    }

    /// Whether `e` is a flip that found the routing other than bgd saw it (nothing changed).
    pub fn is_stale_routing(e: &anyhow::Error) -> bool {
        e.chain()
            .any(|c| matches!(c.downcast_ref::<NginxError>(), Some(NginxError::Stale(_))))
    }

    /// Whether `e` is an install that refused to replace a record this bgd cannot read.
    pub fn is_untrusted_record(e: &anyhow::Error) -> bool {
        e.chain().any(|c| {
            matches!(
                c.downcast_ref::<NginxError>(),
                Some(NginxError::Untrusted(_))
            )
        })
    }

    /// An install that changes live routing (a switch, a switch back, a reroute). When bgd
    /// cannot tell whether it took effect (the Docker call failed or timed out while the
    /// script went on in the container), that is exit 7: nothing may be undone or removed on
    /// the belief that it did not, since nginx may route live traffic to `live_after` now.
    pub async fn install_routing(
        &self,
        text: &str,
        what: &str,
        record: Option<RecordWrite>,
        lock: &LockUse,
        live_after: &str,
    ) -> Result<Installed> {
        match self.send_install(text, what, record, lock).await {
            Err(e) if e.outcome_unknown() => Err(lost_track(what, &e, live_after)),
            Err(e) => Err(self.nginx_failure(e, what)),
            Ok(done) => {
                self.warn_stopped(done.old_workers_stopped);
                Ok(done)
            }
        }
    }

    async fn send_install(
        &self,
        text: &str,
        what: &str,
        record: Option<RecordWrite>,
        lock: &LockUse,
    ) -> Result<Installed, NginxError> {
        self.out
            .detail(&format!("nginx config for {what}:\n{text}"));
        let tls = self.config.lb.tls.as_ref();
        if let Some(TlsSource::Local { chain, key, .. }) = tls.map(|t| &t.source) {
            let stem = tls.and_then(|t| t.upload_stem()).unwrap_or_default();
            let stem = stem.as_str();
            self.tls_uploaded
                .get_or_try_init(|| async { self.nginx().upload_tls(stem, chain, key).await })
                .await?;
        }
        let install = Install {
            config: text,
            drain: self.config.switch.drain,
            record,
            lock,
        };
        self.nginx().install(install).await
    }

    fn warn_stopped(&self, stopped: u32) {
        if stopped > 0 {
            self.out.warn(&format!(
                "{stopped} old nginx worker(s) were still serving requests after switch.drain ({}) and were stopped",
                fmt_duration(self.config.switch.drain)
            ));
        }
    }

    /// Confirms through `lb.url` that `color` serves under config `generation` (as a client
    /// on the stable side of a canary).
    pub async fn confirm_live(&self, color: Option<Color>, generation: u64) -> Result<()> {
        self.confirm_as(STABLE_COOKIE, color, generation).await
    }

    /// Confirms through `lb.url` that a client of the canary's side reaches `color` under
    /// config `generation`.
    pub async fn confirm_canary(&self, color: Color, generation: u64) -> Result<()> {
        self.confirm_as(CANARY_COOKIE, Some(color), generation)
            .await
    }

    async fn confirm_as(&self, cookie: &str, color: Option<Color>, generation: u64) -> Result<()> {
        let url = format!("{}{}", self.config.lb.url, self.config.readiness.path);
        let want_color = color.map_or("none", Color::as_str);
        let deadline = Instant::now() + CONFIRM_LIMIT;
        loop {
            let verdict = self
                .prober
                .probe(&Request {
                    // during a canary, a client's bucket decides its side
                    headers: vec![("Cookie", cookie)],
                    ..Request::get(url.clone(), Duration::from_secs(2))
                })
                .await;
            let last = match &verdict.answer {
                Ok(a) if a.generation() == Some(generation) && a.color() == Some(want_color) => {
                    return Ok(())
                }
                Ok(a) => format!(
                    "got X-Bgd-Color {:?}, X-Bgd-Generation {:?} (status {})",
                    a.color().unwrap_or("absent"),
                    a.header("x-bgd-generation").unwrap_or("absent"),
                    a.status
                ),
                Err(e) => e.clone(),
            };
            if Instant::now() > deadline {
                return Err(error::environment(format!(
                    "cannot confirm the switch through lb.url ({}): expected color {want_color} generation {generation}, {last}. Is lb.url this nginx's live listener?",
                    self.config.lb.url
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn inspect_required(&self, name: &str) -> Result<ContainerInfo> {
        self.docker.inspect(name).await?.ok_or_else(|| {
            error::environment(format!("container {name} disappeared while bgd worked"))
        })
    }

    /// Removes containers, warning about any that could not be removed.
    pub async fn remove_all(&self, names: &[String]) {
        let removals = names.iter().map(|n| self.docker.remove(n));
        for (name, r) in names
            .iter()
            .zip(futures_util::future::join_all(removals).await)
        {
            if let Err(e) = r {
                self.out.warn(&format!("could not remove {name}: {e:#}"));
            }
        }
    }

    /// The nginx container a command drives: it must exist and run.
    pub fn running_lb(&self, lb: Option<&ContainerInfo>, command: &str) -> Result<ContainerInfo> {
        let lb = lb.ok_or_else(|| {
            error::refused(format!(
                "nothing to {command}: there is no nginx container {} (nothing was ever deployed here?)",
                self.config.lb.container
            ))
        })?;
        if !lb.running() {
            return Err(error::environment(format!(
                "the nginx container {} is {}; start it (docker start {}) first",
                lb.name, lb.state, lb.name
            )));
        }
        Ok(lb.clone())
    }

    /// What this nginx can do (warning when it lacks something bgd relies on). The version is
    /// read once per nginx container and kept in the record.
    pub async fn features(&self, obs: &mut Observed) -> Result<Features> {
        let Some(lb) = obs.lb.clone().filter(ContainerInfo::running) else {
            // read when the deploy creates or starts it
            return Ok(Features::ALL);
        };
        let known = obs
            .state
            .nginx
            .as_ref()
            .filter(|n| n.container_id == lb.id)
            .and_then(|n| render::parse_version(&format!("nginx/{}", n.version)));
        let version = match known {
            Some(v) => v,
            None => {
                let v = self
                    .nginx()
                    .version()
                    .await
                    .map_err(|e| self.nginx_failure(e, "reading nginx's version"))?
                    .ok_or_else(|| {
                        error::environment(format!(
                            "cannot read the nginx version in {} (`nginx -v` printed nothing useful)",
                            lb.name
                        ))
                    })?;
                obs.state.nginx = Some(NginxInfo {
                    container_id: lb.id.clone(),
                    version: format!("{}.{}.{}", v.0, v.1, v.2),
                });
                v
            }
        };
        let features = Features::of(version);
        if features != Features::ALL {
            self.warn_old_nginx(version);
        }
        Ok(features)
    }

    pub fn warn_old_nginx(&self, version: (u32, u32, u32)) {
        self.out
            .warn(&old_nginx(&self.config.lb.container, version));
    }
}

/// What an nginx older than bgd needs puts at risk, and what to do.
pub fn old_nginx(container: &str, (a, b, c): (u32, u32, u32)) -> String {
    let f = Features::of((a, b, c));
    let mut risks = Vec::new();
    if !f.keepalive_min_timeout {
        risks.push(
            "lacks keepalive_min_timeout (>= 1.27.4): a switch can reset a few keep-alive requests",
        );
    }
    if !f.resolve {
        risks.push("cannot resolve upstream names (>= 1.27.3): after containers restart (a reboot, a daemon restart) it keeps routing to their old addresses, which other containers may get; `bgd status` detects it and `bgd reroute` fixes it");
    }
    format!(
        "nginx {a}.{b}.{c} in {container} {}; upgrade nginx",
        risks.join("; it ")
    )
}

/// Where bgd's probes go, as the ssh proxy allows it: the (host, port) of `lb.url` and
/// `lb.preview_url`, each with the host dialled for it, and `lb.url`'s TLS name standing
/// for its host.
fn listeners(config: &Config) -> Vec<(String, u16, String)> {
    let mut allowed: Vec<(String, u16, String)> = [&config.lb.url, &config.lb.preview_url]
        .into_iter()
        .filter_map(|u| {
            let url = reqwest::Url::parse(u).ok()?;
            // an IPv6 address without its brackets, as the SOCKS request carries it
            let host = url
                .host_str()?
                .trim_start_matches('[')
                .trim_end_matches(']');
            let host = host.to_string();
            Some((host.clone(), url.port_or_known_default()?, host))
        })
        .collect();
    let url = reqwest::Url::parse(&config.lb.url).ok();
    let url_host = url.as_ref().and_then(|u| {
        let host = u.host_str()?.trim_start_matches('[').trim_end_matches(']');
        Some((host.to_string(), u.port_or_known_default()?))
    });
    if let (Some(name), Some((host, port))) = (tls_name(config), url_host) {
        allowed.push((name, port, host));
    }
    allowed
}

/// The name bgd's probes of an HTTPS `lb.url` verify nginx's certificate for (and send as
/// the TLS server name): the first of `lb.hosts` (a wildcard's as `bgd-probe.<domain>`),
/// else the certificate's first DNS name. None: `lb.url`'s own host.
pub fn tls_name(config: &Config) -> Option<String> {
    let tls = config.lb.tls.as_ref()?;
    if !config.lb.url.to_ascii_lowercase().starts_with("https://") {
        return None;
    }
    let name = match (config.lb.hosts.first(), &tls.source) {
        (Some(first), _) => crate::model::probe_host(first),
        (None, TlsSource::Local { info, .. }) => info.probe_name()?,
        (None, TlsSource::Container { .. } | TlsSource::Unreadable { .. }) => return None,
    };
    // an address is dialled as it is: never put one in place of lb.url's
    name.parse::<std::net::IpAddr>().is_err().then_some(name)
}

/// With `lb.hosts`: the Host header bgd's probes send to each listener (the first host, a
/// wildcard's as `bgd-probe.<domain>`; the preview host).
fn probe_hosts(config: &Config) -> Vec<(String, String)> {
    let lb = &config.lb;
    let mut hosts = Vec::new();
    if let Some(first) = lb.hosts.first() {
        hosts.push((lb.url.clone(), crate::model::probe_host(first)));
    }
    if let Some(p) = &lb.preview_host {
        hosts.push((lb.preview_url.clone(), p.clone()));
    }
    hosts
}

/// A routing exec whose end bgd did not see: exit 7, since it may have taken effect.
fn lost_track(what: &str, e: &NginxError, live_after: &str) -> anyhow::Error {
    error::unsafe_state(format!(
        "bgd lost track of {what} ({e:#}): it may have taken effect, so nothing was undone or removed, and nginx may now route live traffic to {live_after}. Run `bgd status`: it says what nginx routes and whether bgd's record agrees (`bgd repair` mends the record)"
    ))
}
