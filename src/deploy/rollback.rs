//! `bgd rollback`: the parked release goes live again. The fast path learns what it needs
//! without reading bgd's files (a container-filesystem read costs ~100 ms on some daemons)
//! and takes the deploy lock inside the switch's own exec; anything unusual takes the full
//! path: `prepare` (lock and read), start a release parked stopped, re-route the preview
//! listener if addresses changed, then the same readiness pass and switch.

use super::host::Host;
use super::observe::list_containers;
use super::plan;
use super::run::{CanaryReport, Command, EarlyReady, RollbackFlag, Run, SwitchReport};
use super::specs::pool_of;
use super::step::Step;
use crate::docker::ContainerInfo;
use crate::error::{self, is_locked};
use crate::lock::Holder;
use crate::model::{
    replica_alias, Color, Pool, Release, Role, Server, LABEL_APP, LABEL_COLOR, LABEL_MANAGED,
};
use crate::nginx::render::{self, Features};
use crate::nginx::LockUse;
use crate::probe::{Answer, Request, Verdict};
use crate::state::{self, AppState, Idle, NginxInfo};
use anyhow::Result;
use std::time::{Duration, Instant};

/// What `bgd rollback` did: switched to the parked release, or, during a canary, sent all of
/// live traffic back to the stable release (the candidate stays idle).
pub enum RolledBack {
    Switched(SwitchReport),
    CanaryStopped(CanaryReport),
}

pub async fn rollback(host: &Host<'_>, verify: bool) -> Result<RolledBack> {
    rollback_with(host, verify, false).await
}

/// A rollback whose switch window the caller judges (`bgd drill`): a lossy one is reported
/// in the `SwitchReport`, not failed. Never stops a canary (a drill needs a parked release).
pub async fn rollback_judged_by_caller(host: &Host<'_>) -> Result<SwitchReport> {
    match rollback_with(host, false, true).await? {
        RolledBack::Switched(report) => Ok(report),
        RolledBack::CanaryStopped(_) => Err(anyhow::anyhow!(
            "internal: the drill's rollback stopped a canary"
        )),
    }
}

async fn rollback_with(host: &Host<'_>, verify: bool, drill: bool) -> Result<RolledBack> {
    let started = Instant::now();
    // the release the fast path meant to make live, when it gave way to the full path
    let mut meant: Option<Release> = None;
    if let Some(view) = fast_view(host).await? {
        let mut run = Run::new(host, Command::Rollback).started_at(started);
        run.window_judged_by_caller = drill;
        let steps = view.start(&mut run, verify);
        let result = run.execute(&steps).await;
        // the lock was busy at the switch, the record could not be trusted or the routing
        // changed since nginx said what it was (nothing changed): the full path waits for the
        // lock, or reads the record and says what it found
        let fall_back = result.as_ref().is_err_and(|e| {
            is_locked(e) || Host::is_untrusted_record(e) || Host::is_stale_routing(e)
        }) && run.journal.recorded.is_none();
        if !fall_back {
            let result = result.and_then(|()| run.switch_report());
            run.finish(&result).await;
            return result.map(RolledBack::Switched);
        }
        meant = run.target.clone();
    }
    let mut run = Run::new(host, Command::Rollback).started_at(started);
    run.window_judged_by_caller = drill;
    let result = async {
        run.execute(&[Step::prepare(host.config)]).await?;
        if run.obs.state.canary.is_some() && !drill {
            // during a canary, rolling back is sending its share back to 0%
            let candidate = plan::canary_target(&run.obs, 0)?;
            run.set_target(candidate.clone());
            let steps = plan::canary(host.config, &run.obs, &candidate, 0)?;
            run.execute(&steps).await?;
            return run.canary_report().map(RolledBack::CanaryStopped);
        }
        // another run (a second responder) rolled back to it meanwhile: rolling back again
        // would undo that
        if let Some(m) = meant.as_ref().filter(|m| run.obs.state.live.as_ref() == Some(*m)) {
            return Err(error::refused(format!(
                "another run already rolled back: {} ({}, release {}) is live; nothing was changed. `bgd history` says who; `bgd rollback` again only if you mean to go forward",
                m.color, m.image, m.release
            )));
        }
        let parked = plan::rollback_target(&run.obs)?;
        run.set_target(parked.clone());
        let steps = plan::rollback(host.config, &run.obs, &parked, verify)?;
        run.execute(&steps).await?;
        run.switch_report().map(RolledBack::Switched)
    }
    .await;
    run.finish(&result).await;
    result
}

/// What the fast path learned for a rollback.
struct FastView {
    /// The parked replicas' readiness probes, sent beside the container list
    ready: Option<EarlyReady>,
    state: AppState,
    parked: Release,
    containers: Vec<ContainerInfo>,
    parked_pool: Pool,
    live_pool: Pool,
    version: (u32, u32, u32),
    /// The active config routes by its rollback flag: the switch moves it, no reload
    flip: Option<RollbackFlag>,
}

impl FastView {
    /// Sets up `run` from the view; returns the steps: readiness pass, switch (taking the lock
    /// in its exec), park, verify on request.
    fn start(self, run: &mut Run<'_>, verify: bool) -> Vec<Step> {
        let config = run.host.config;
        run.features = Features::of(self.version);
        if run.features != Features::ALL {
            run.host.warn_old_nginx(self.version);
        }
        run.obs.containers = self.containers;
        run.obs.state = self.state.clone();
        run.state = self.state;
        run.old_live = run.state.live.clone();
        run.live_pool = Some(self.live_pool);
        run.pool = Some(self.parked_pool);
        run.lock = LockUse::Once(Holder::me("bgd rollback"));
        run.early_ready = self.ready;
        let by_flag = self.flip.is_some();
        run.flip = self.flip;
        run.journal.active = true;
        run.set_target(self.parked.clone());
        let old_live = run.old_live.clone();
        plan::rollback_switch(config, &self.parked, old_live.as_ref(), verify, by_flag)
    }
}

/// What a rollback needs, learned without reading bgd's files: nginx itself answers
/// `/__bgd` on the preview listener with the idle color, its role, the generation and its
/// version; labels give the releases. When the config routes by a rollback flag, `/__bgd`
/// also says the flag's state and the addresses the parked color's upstream has: they must be
/// the parked replicas' addresses now, and the switch moves the flag. Otherwise each parked
/// replica is probed once, and nginx's `X-Bgd-Upstream` must name its current address
/// (Docker gives a restarted container a new one, and may give its old one to another
/// container), and the switch renders a new config. `None` when anything is unusual.
async fn fast_view(host: &Host<'_>) -> Result<Option<FastView>> {
    let config = host.config;
    let url = format!("{}/__bgd", config.lb.preview_url);
    let request = Request::get(url, Duration::from_millis(1000));
    // nginx's answer names the parked color and its upstream's servers: their probes go out
    // at once, beside the container list, and are judged once it says where each replica is
    let ask = async {
        let verdict = host.prober.probe(&request).await;
        let early = match &verdict.answer {
            Ok(answer) => early_probes(host, answer).await,
            Err(_) => EarlyReady::new(),
        };
        (verdict, early)
    };
    let labels = [(LABEL_MANAGED, "true"), (LABEL_APP, config.app.as_str())];
    let (brief, lb, (verdict, early)) = tokio::join!(
        host.docker.list_brief(&labels),
        host.docker.inspect(&config.lb.container),
        ask
    );
    let (brief, Some(lb), Ok(answer)) = (brief?, lb?, verdict.answer) else {
        return Ok(None);
    };
    if answer.status != 204 || !lb.running() || answer.header("x-bgd-idle-role") != Some("parked") {
        return Ok(None);
    }
    // With the rollback flag, what one list call says is enough (labels, states, addresses):
    // no container is inspected, however many replicas there are. A tag that moved shows as
    // an image ID there: inspected, the release keeps the name it was deployed as.
    let by_flag = answer.header("x-bgd-flip").is_some()
        && brief.iter().all(|c| !c.image.starts_with("sha256:"));
    if by_flag {
        if let Some(view) = view_of(host, &answer, &lb, brief, Some(early)).await {
            return Ok(Some(view));
        }
    }
    let containers = list_containers(host.docker, config).await?;
    Ok(view_of(host, &answer, &lb, containers, None).await)
}

/// The parked replicas' readiness probes, sent as soon as nginx's `/__bgd` answer says what
/// the flag switch would route to: one per replica, numbered 1 to as many servers as the
/// parked upstream has.
async fn early_probes(host: &Host<'_>, answer: &Answer) -> EarlyReady {
    let (Some(color), Some(servers)) = (
        answer.color().and_then(Color::parse),
        answer.header("x-bgd-idle-servers"),
    ) else {
        return EarlyReady::new();
    };
    if answer.header("x-bgd-flip").is_none() || answer.header("x-bgd-idle-role") != Some("parked") {
        return EarlyReady::new();
    }
    let n = servers.split(',').filter(|s| !s.is_empty()).count() as u32;
    let r = &host.config.readiness;
    let ready = (1..=n).map(|replica| async move {
        let server = Server {
            replica,
            name: String::new(),
            addr: String::new(),
            dns: None,
        };
        let verdict = host
            .prober
            .probe_replica(
                &host.config.lb.preview_url,
                &r.path,
                (color, &server),
                r.timeout,
            )
            .await;
        (replica, verdict)
    });
    futures_util::future::join_all(ready).await
}

/// The fast view from nginx's `/__bgd` answer and the app's containers; with `early` (the
/// readiness probes sent beside the list), only when the switch can move the rollback flag.
async fn view_of(
    host: &Host<'_>,
    answer: &Answer,
    lb: &ContainerInfo,
    containers: Vec<ContainerInfo>,
    early: Option<EarlyReady>,
) -> Option<FastView> {
    let by_flag = early.is_some();
    let (parked_color, generation, version) = nginx_says(answer)?;
    let of = |color: Color| -> Vec<&ContainerInfo> {
        containers
            .iter()
            .filter(|c| c.label(LABEL_COLOR) == Some(color.as_str()))
            .collect()
    };
    let (parked_cs, live_cs) = (of(parked_color), of(parked_color.other()));
    let (parked, live) = (one_release(&parked_cs)?, one_release(&live_cs)?);
    // A stopped parked release takes the full path, which starts it.
    if !parked_cs.iter().all(|c| c.running()) {
        return None;
    }
    let parked_pool = pool_of(host.config, &parked, &parked_cs);
    let live_pool = pool_of(host.config, &live, &live_cs);
    if parked_pool.servers.len() != parked_cs.len() {
        return None;
    }
    let flip = match flip_of(answer, host.config, generation, &parked_pool) {
        Some((f, false)) => Some(f),
        // nginx resolves names now and then: a replica that restarted with another address
        // may still be reached at its old one (another container's now) for a moment
        // (unless every parked replica has run at its address for longer than nginx takes
        // to ask again)
        Some((f, true))
            if host.config.lb.template.is_none() && parked_cs.iter().all(|c| resolved_since(c)) =>
        {
            Some(f)
        }
        Some((f, true)) => {
            let verdicts = upstream_probes(host, parked_pool.servers.len()).await;
            reaches_only(&verdicts, &parked_pool).then_some(f)
        }
        _ => None,
    };
    if by_flag && flip.is_none() {
        return None;
    }
    if flip.is_none() && !routes_to_current(host, &parked_pool).await {
        return None;
    }
    let state = AppState {
        schema: 2,
        app: host.config.app.clone(),
        generation,
        live: Some(live),
        idle: Some(Idle {
            release: parked.clone(),
            role: Role::Parked,
        }),
        // only a parked release is rolled back to: no candidate waits, nothing is aside
        set_aside: None,
        candidate_failed: false,
        canary: None,
        // the flag is raised now when the switch lowers it
        flipped_at: flip.as_ref().filter(|f| !f.on).map(|_| generation),
        nginx: Some(NginxInfo {
            container_id: lb.id.clone(),
            version: format!("{}.{}.{}", version.0, version.1, version.2),
        }),
        updated_at: state::now(),
    };
    Some(FastView {
        ready: early,
        state,
        parked,
        containers: containers.clone(),
        parked_pool,
        live_pool,
        version,
        flip,
    })
}

/// A deploy's switch by the rollback flag, as a rollback's: the preview config this run
/// installed (generation `generation`) routes by one, with `pool` (the candidate) as its
/// idle release and the flag down; when its upstream routes by names, one probe per
/// replica through it must reach every candidate replica and nothing else (nginx has
/// resolved them all: live traffic never meets an upstream with nothing, or part of the
/// candidate, to route to). `None`: the switch reloads.
pub(super) async fn candidate_flip(
    host: &Host<'_>,
    pool: &Pool,
    generation: u64,
) -> Option<RollbackFlag> {
    let url = format!("{}/__bgd", host.config.lb.preview_url);
    let verdict = host
        .prober
        .probe(&Request::get(url, Duration::from_millis(1000)))
        .await;
    let answer = verdict.answer.ok()?;
    if answer.status != 204
        || answer.header("x-bgd-idle-role") != Some("candidate")
        || answer.header("x-bgd-flip") != Some("off")
    {
        return None;
    }
    let (color, said, _) = nginx_says(&answer)?;
    if color != pool.color || said != generation {
        return None;
    }
    let (flag, by_name) = flip_of(&answer, host.config, generation, pool)?;
    if by_name {
        // one probe per replica, which the upstream's round robin spreads: every replica
        // reached, and nothing else (a name not resolved yet: the switch reloads)
        let verdicts = upstream_probes(host, pool.servers.len()).await;
        let reached: std::collections::BTreeSet<&str> = verdicts
            .iter()
            .filter_map(|v| v.answer.as_ref().ok().and_then(Answer::upstream))
            .collect();
        let replicas: std::collections::BTreeSet<&str> =
            pool.servers.iter().map(|s| s.addr.as_str()).collect();
        if !reaches_only(&verdicts, pool) || reached != replicas {
            return None;
        }
    }
    Some(flag)
}

/// The flip `/__bgd` offers: the active config routes by its rollback flag, and the parked
/// color's upstream routes to exactly the parked replicas, each by its address now or by
/// its name (then `true`: where nginx resolved the names is checked apart).
fn flip_of(
    answer: &Answer,
    config: &crate::config::Config,
    generation: u64,
    parked: &Pool,
) -> Option<(RollbackFlag, bool)> {
    let on = match answer.header("x-bgd-flip")? {
        "on" => true,
        "off" => false,
        _ => return None,
    };
    // each replica by its address now, or by its name (which nginx resolves: it follows a
    // replica that restarted with another address)
    let routed: Vec<&str> = answer.header("x-bgd-idle-servers")?.split(',').collect();
    let port = config.container.port;
    let all_routed = routed.len() == parked.servers.len()
        && parked.servers.iter().all(|s| {
            let name = format!(
                "{}:{port}",
                replica_alias(&config.app, &parked.release, s.replica)
            );
            routed.iter().any(|r| *r == s.addr || *r == name)
        });
    let by_name = routed
        .iter()
        .any(|r| !parked.servers.iter().any(|s| s.addr == *r));
    all_routed.then(|| {
        let flag = RollbackFlag {
            flag: render::flip_flag(&config.app, generation),
            on: !on,
        };
        (flag, by_name)
    })
}

/// What nginx's `/__bgd` answer says: the idle color, the generation, nginx's version.
fn nginx_says(answer: &Answer) -> Option<(Color, u64, (u32, u32, u32))> {
    Some((
        answer.color().and_then(Color::parse)?,
        answer.generation()?,
        answer.header("server").and_then(render::parse_version)?,
    ))
}

/// The one release all of `cs` belong to (same release label and image), if they do.
fn one_release(cs: &[&ContainerInfo]) -> Option<Release> {
    let first = cs.first()?;
    let release = first.label(crate::model::LABEL_RELEASE)?;
    let color = Color::parse(first.label(LABEL_COLOR)?)?;
    cs.iter()
        .all(|c| c.label(crate::model::LABEL_RELEASE) == Some(release) && c.image == first.image)
        .then(|| Release {
            color,
            image: first.image.clone(),
            release: release.to_string(),
        })
}

/// How long a replica must have run (at one address: Docker keeps a running container's)
/// for nginx to have resolved its name to that address: the built-in template's upstreams
/// ask again every second or two, and retry a failed lookup after one (an `lb.template` may
/// ask less often, or as Docker's DNS answers say: 600 s; then the upstream is probed).
const RESOLVED_AFTER: Duration = Duration::from_secs(10);

/// Whether nginx's upstream has resolved `c`'s name to its address now: it has run for
/// `RESOLVED_AFTER` at least, as the container list says (unknown: no).
fn resolved_since(c: &ContainerInfo) -> bool {
    c.up_for.is_some_and(|up| up >= RESOLVED_AFTER)
}

/// `n` probes through the preview listener's default route (the parked color's upstream),
/// at once. An upstream that resolves names has a shared zone, whose round robin gives
/// consecutive requests different servers, so with as many probes as servers each is asked
/// once.
async fn upstream_probes(host: &Host<'_>, n: usize) -> Vec<Verdict> {
    let r = &host.config.readiness;
    let url = format!("{}{}", host.config.lb.preview_url, r.path);
    let probes = (0..n).map(|_| {
        let request = Request::get(url.clone(), r.timeout);
        async move { host.prober.probe(&request).await }
    });
    futures_util::future::join_all(probes).await
}

/// Whether what the parked color's upstream reached (`upstream_probes`), when it routes by
/// names, is the parked replicas alone, each at its current address.
fn reaches_only(verdicts: &[Verdict], pool: &Pool) -> bool {
    verdicts.iter().all(|verdict| {
        let upstream = verdict.answer.as_ref().ok().and_then(Answer::upstream);
        upstream.is_some_and(|u| pool.servers.iter().any(|s| s.addr == u))
    })
}

/// nginx routes a probe of each replica to the replica's current address (all replicas at
/// once: a rollback's time must not grow with their number).
async fn routes_to_current(host: &Host<'_>, pool: &Pool) -> bool {
    let r = &host.config.readiness;
    let probes = pool.servers.iter().map(|server| async move {
        let verdict = host
            .prober
            .probe_replica(
                &host.config.lb.preview_url,
                &r.path,
                (pool.color, server),
                r.timeout,
            )
            .await;
        let upstream = verdict.answer.as_ref().ok().and_then(Answer::upstream);
        upstream == Some(server.addr.as_str())
    });
    futures_util::future::join_all(probes)
        .await
        .into_iter()
        .all(|ok| ok)
}
