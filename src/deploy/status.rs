//! What `bgd status` reports, gathered through the same observation and the same probes as a
//! deploy: the live and idle releases, each replica's health through nginx, drift from
//! bgd.yaml, what nginx actually serves, and what needs attention.

use super::drift;
use super::host::Host;
use super::observe::{image_defaults, observe, Observed};
use super::routing;
use crate::docker::{ContainerInfo, ImageDefaults};
use crate::lock::LockState;
use crate::model::{Release, Role};
use crate::nginx::render;
use crate::probe::{Expect, Request};
use anyhow::Result;
use std::collections::HashMap;
use std::time::Duration;

use crate::nginx::traffic::Summary;

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub struct StatusReport {
    pub observed: Observed,
    pub live: Option<ColorView>,
    pub idle: Option<(Role, ColorView)>,
    /// The color nginx serves through `lb.url`, as it says in `X-Bgd-Color`
    pub routes_to: Option<String>,
    /// The generation nginx serves (or, unreachable, the active file's)
    pub generation: Option<u64>,
    /// What makes live traffic unsafe or unknown: each says what to run (status exits 7)
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
    /// With `lb.tls`: the certificates nginx serves for this app, and the one bgd.yaml names
    pub tls: Option<TlsView>,
    /// While a canary runs: its share and each side's traffic as nginx logged it
    pub canary: Option<CanaryView>,
}

/// A running canary as status shows it: counts since its share was last set.
pub struct CanaryView {
    pub share: u8,
    pub since: String,
    pub stable: Summary,
    pub canary: Summary,
}

/// `lb.tls` as status shows it.
pub struct TlsView {
    /// The certificate nginx presented to a probe of `lb.url` (None: not reached)
    pub served: Option<crate::tls::CertInfo>,
    /// The one bgd.yaml names (None: it could not be read, a warning says why)
    pub configured: Option<crate::tls::CertInfo>,
}

/// One release as status shows it.
pub struct ColorView {
    pub release: Release,
    pub replicas: Vec<Replica>,
    /// How its containers differ from bgd.yaml
    pub drift: Vec<String>,
}

/// One container's line in the status.
pub struct Replica {
    pub name: String,
    pub state: String,
    /// healthy, unhealthy, unreachable, stopped, or unknown
    pub health: String,
}

impl ColorView {
    /// running, stopped (some replicas are not running) or missing (no containers)
    pub fn state(&self) -> &'static str {
        if self.replicas.is_empty() {
            "missing"
        } else if self.replicas.iter().all(|r| r.state == "running") {
            "running"
        } else {
            "stopped"
        }
    }
}

pub async fn status(host: &Host<'_>) -> Result<StatusReport> {
    let obs = observe(host).await?;
    let lb_running = obs.lb.as_ref().is_some_and(ContainerInfo::running);
    // what nginx serves and what the images contribute, at once
    let serving = async {
        if lb_running {
            served(host).await
        } else {
            (None, None, None)
        }
    };
    let all: Vec<&ContainerInfo> = obs.containers.iter().collect();
    let ((routes_to, served_generation, presented), images) =
        tokio::join!(serving, image_defaults(host.docker, &all));
    let images = images?;
    let file_generation = obs.header().map(|h| h.generation);
    let views = Views {
        host,
        obs: &obs,
        images: &images,
        lb_running,
    };
    // both colors' replicas are probed at once
    let live_view = async {
        match &obs.state.live {
            Some(l) => Some(views.of(l).await),
            None => None,
        }
    };
    let idle_view = async {
        match &obs.state.idle {
            Some(i) => Some((i.role, views.of(&i.release).await)),
            None => None,
        }
    };
    let (live, idle) = tokio::join!(live_view, idle_view);
    let mut warnings = warnings(host, &obs);
    let tls = match &host.config.lb.tls {
        Some(_) if lb_running => Some(tls_view(host, &obs, presented, &mut warnings).await),
        _ => None,
    };
    let mut problems = problems(&obs, routes_to.as_deref());
    if problems.is_empty() && lb_running {
        let found = routing(host, &obs).await?;
        problems.extend(found.problems);
        warnings.extend(found.warnings);
    }
    let canary = match (&obs.state.canary, &obs.state.live, &obs.state.idle) {
        (Some(c), Some(l), Some(i)) if lb_running => {
            let generation = served_generation.or(file_generation).unwrap_or(0);
            let traffic = match host.nginx().traffic(generation, None).await {
                Ok(t) => t,
                Err(e) => {
                    warnings.push(format!(
                        "cannot read what nginx logged of the canary: {e:#}"
                    ));
                    Default::default()
                }
            };
            Some(CanaryView {
                share: c.share,
                since: c.since.clone(),
                stable: traffic.live(l.color).summary(),
                canary: traffic.live(i.release.color).summary(),
            })
        }
        _ => None,
    };
    Ok(StatusReport {
        canary,
        live,
        idle,
        routes_to,
        generation: served_generation.or(file_generation),
        problems,
        warnings,
        tls,
        observed: obs,
    })
}

/// The certificates nginx serves and the one bgd.yaml names, with what needs doing about
/// them (near expiry, expired, not served yet).
async fn tls_view(
    host: &Host<'_>,
    obs: &Observed,
    served: Option<crate::tls::CertInfo>,
    warnings: &mut Vec<String>,
) -> TlsView {
    let now = crate::tls::now();
    let configured = match super::tls::configured(host, false).await {
        Ok(c) => c,
        Err(e) => {
            warnings.push(format!("{e:#}"));
            None
        }
    };
    if let Some(c) = &configured {
        warnings.extend(super::tls::warnings(host, c, now));
        let serving = served
            .as_ref()
            .is_some_and(|s| s.fingerprint == c.fingerprint);
        if !serving && served.is_some() && obs.state.live.is_some() {
            warnings.push(format!(
                "nginx does not serve the certificate bgd.yaml names yet ({}): `bgd tls reload` applies it (or the next deploy)",
                c.summary(now)
            ));
        }
    }
    if let Some(s) = served.as_ref().filter(|s| s.expired(now)) {
        let named = configured
            .as_ref()
            .is_some_and(|c| c.fingerprint == s.fingerprint);
        if !named {
            warnings.push(format!(
                "nginx serves an EXPIRED certificate ({})",
                s.summary(now)
            ));
        }
    }
    TlsView { served, configured }
}

/// What nginx serves through `lb.url`: its color and generation, and over HTTPS the
/// certificate it presented.
async fn served(host: &Host<'_>) -> (Option<String>, Option<u64>, Option<crate::tls::CertInfo>) {
    let config = host.config;
    let url = format!("{}{}", config.lb.url, config.readiness.path);
    // during a canary, as a client of the stable side
    let request = Request {
        headers: vec![("Cookie", super::host::STABLE_COOKIE)],
        ..Request::get(url, PROBE_TIMEOUT)
    };
    let verdict = host.prober.probe(&request).await;
    match verdict.answer {
        Ok(a) => (
            a.color().map(String::from),
            a.generation(),
            super::tls::of_der(a.peer_certificate.as_deref()),
        ),
        Err(e) => {
            host.out
                .warn(&format!("cannot reach the live listener: {e}"));
            (None, None, None)
        }
    }
}

struct Views<'a> {
    host: &'a Host<'a>,
    obs: &'a Observed,
    images: &'a HashMap<String, ImageDefaults>,
    lb_running: bool,
}

impl Views<'_> {
    async fn of(&self, release: &Release) -> ColorView {
        let containers = self.obs.containers_of(release);
        let checks = containers.iter().map(|c| self.replica(release, c));
        ColorView {
            replicas: futures_util::future::join_all(checks).await,
            drift: drift::color_drift(self.host.config, release, &containers, self.images),
            release: release.clone(),
        }
    }

    /// A container and its readiness through the preview listener's per-replica route.
    async fn replica(&self, release: &Release, c: &ContainerInfo) -> Replica {
        let config = self.host.config;
        let server = super::specs::pool_of(config, release, &[c]).servers.pop();
        let health = match (c.running(), self.lb_running, server) {
            (false, _, _) => "stopped",
            (true, false, _) | (true, true, None) => "unknown",
            (true, true, Some(server)) => {
                let r = &config.readiness;
                let verdict = self
                    .host
                    .prober
                    .probe_replica(
                        &config.lb.preview_url,
                        &r.path,
                        (release.color, &server),
                        PROBE_TIMEOUT,
                    )
                    .await;
                let expect = Expect {
                    status: std::slice::from_ref(&r.expect_status),
                    ..Default::default()
                };
                match &verdict.answer {
                    Err(_) => "unreachable",
                    Ok(a) if a.color() != Some(release.color.as_str()) => "unknown",
                    Ok(_) if verdict.check(&expect).is_ok() => "healthy",
                    Ok(_) => "unhealthy",
                }
            }
        };
        Replica {
            name: c.name.clone(),
            state: c.state.clone(),
            health: health.to_string(),
        }
    }
}

/// Where live traffic really goes: the live upstream nginx has against the containers on
/// the app network now.
pub(super) async fn routing(host: &Host<'_>, obs: &Observed) -> Result<routing::Findings> {
    let config = host.config;
    let Some(live) = &obs.state.live else {
        return Ok(routing::Findings::default());
    };
    let header = obs.header();
    if header.as_ref().and_then(|h| h.live_servers) == Some(0) {
        // written while no live replica ran: nginx answers 502 for the live release
        let running: Vec<&str> = obs
            .containers_of(live)
            .iter()
            .filter(|c| c.running())
            .map(|c| c.name.as_str())
            .collect();
        let mut found = routing::Findings::default();
        if !running.is_empty() {
            found.problems.push(format!(
                "nginx routes live traffic to no replica (none of {} ran when its config was written), but {} run now: live requests fail with 502; `bgd reroute` points nginx at them",
                live.color,
                running.join(", ")
            ));
        }
        return Ok(found);
    }
    let Some(targets) = obs
        .active_config
        .as_deref()
        .and_then(|c| routing::live_targets(c, &config.app, live.color))
    else {
        return Ok(routing::Findings {
            warnings: vec![format!(
                "bgd cannot check where live traffic goes: the active config has no upstream `bgd_{ident}_{}` (nor `bgd_{ident}_live`); a custom lb.template must name the live color's upstream as the built-in one does",
                live.color,
                ident = config.app.replace('-', "_")
            )],
            ..Default::default()
        });
    };
    let members = host.docker.network_members(&config.network).await?;
    Ok(routing::check(
        &targets,
        &routing::Now {
            app: &config.app,
            network: &config.network,
            live,
            containers: &obs.containers,
            members: &members,
        },
    ))
}

/// What makes live traffic unsafe or unknown, each with what to run.
fn problems(obs: &Observed, routes_to: Option<&str>) -> Vec<String> {
    let mut problems: Vec<String> = obs
        .record_problems()
        .into_iter()
        .map(|p| format!("{p}: `bgd repair` rebuilds the record from nginx and the containers (it changes no routing)"))
        .collect();
    if let (Some(l), Some(r), true) = (&obs.state.live, routes_to, problems.is_empty()) {
        if r != l.color.as_str() {
            problems.push(format!(
                "bgd's record says {} is live but nginx serves {r}: nginx did not take bgd's last config (check `docker logs` of the nginx container); `bgd repair` records what nginx does",
                l.color
            ));
        }
    }
    problems
}

fn warnings(host: &Host<'_>, obs: &Observed) -> Vec<String> {
    let config = host.config;
    let mut warnings = Vec::new();
    if let Some(lb) = obs.lb.as_ref().filter(|lb| !lb.running()) {
        warnings.push(format!(
            "the nginx container {} is {}: nothing is served",
            lb.name, lb.state
        ));
    }
    if let Some(v) = obs
        .state
        .nginx
        .as_ref()
        .and_then(|n| render::parse_version(&format!("nginx/{}", n.version)))
    {
        if render::Features::of(v) != render::Features::ALL {
            warnings.push(super::host::old_nginx(&config.lb.container, v));
        }
    }
    if obs.lock.is_held() {
        warnings.push(lock_warning(&obs.lock));
    }
    // what nginx serves beside the record: a mirror a stopped run left, a canary share the
    // record does not say
    let header = obs.header();
    if let Some(h) = &header {
        if let Some(share) = h.mirror {
            warnings.push(format!(
                "nginx still copies {share}% of live requests to {} (a deploy was stopped during its mirror window): `bgd reroute` stops it, as does the next deploy",
                h.preview.as_deref().unwrap_or("the idle color")
            ));
        }
        let recorded = obs.state.canary.as_ref().map(|c| c.share);
        if h.canary != recorded && obs.lb.as_ref().is_some_and(|lb| lb.running()) {
            warnings.push(format!(
                "nginx gives the candidate {} of live clients, the record says {}: `bgd rollback` sends the canary's share to 0%; `bgd repair` makes the record say what nginx does",
                h.canary.map_or("none".to_string(), |s| format!("{s}%")),
                recorded.map_or("none".to_string(), |s| format!("{s}%"))
            ));
        }
    }
    let strays: Vec<&str> = obs.strays().iter().map(|c| c.name.as_str()).collect();
    if !strays.is_empty() {
        warnings.push(format!(
            "containers of {} that are neither live nor idle (a run that was killed?): {}; the next deploy replaces them",
            config.app,
            strays.join(", ")
        ));
    }
    warnings
}

fn lock_warning(lock: &LockState) -> String {
    let note = match lock {
        LockState::Held(h) if h.provably_gone() => {
            " (that process is gone; the next deploy takes it over)"
        }
        LockState::Unreadable => " (`bgd lock release --force` clears it if no run is in progress)",
        _ => "",
    };
    format!("the deploy lock is held by {}{note}", lock.describe())
}
