use crate::config::Config;
use crate::deploy::drift;
use crate::deploy::observe::{image_defaults, observe, Observed};
use crate::deploy::plan::{replica_of, LABEL_RELEASE};
use crate::docker::{ContainerInfo, Docker};
use crate::model::Color;
use crate::nginx::render;
use crate::output::Output;
use crate::probe::{Prober, PROBE_REPLICA_HEADER};
use crate::state::{Release, Role};
use anyhow::Result;
use serde_json::{json, Map, Value};
use std::time::Duration;

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// One color (one release) as status shows it.
struct ColorView {
    release: Release,
    replicas: Vec<Replica>,
    /// How its containers differ from bgd.yaml
    drift: Vec<String>,
}

/// One container's line in the status.
struct Replica {
    name: String,
    state: String,
    health: String,
}

pub async fn run(config: &Config, out: &Output) -> Result<()> {
    let docker = Docker::connect().await?;
    let obs = observe(&docker, config).await?;
    let prober = Prober::new()?;
    let lb_running = obs.lb.as_ref().is_some_and(ContainerInfo::running);

    // What nginx actually routes to, seen from outside through lb.url.
    let (routes_to, served_generation) = if lb_running {
        match prober
            .request(
                "GET",
                &format!("{}{}", config.lb.url, config.readiness.path),
                &[],
                "",
                PROBE_TIMEOUT,
            )
            .await
        {
            Ok(r) => (r.bgd_color().map(String::from), r.bgd_generation()),
            Err(e) => {
                out.warn(&format!("cannot reach the live listener: {e}"));
                (None, None)
            }
        }
    } else {
        (None, None)
    };
    let file_generation = obs
        .active_config
        .as_deref()
        .and_then(render::read_header)
        .map(|h| h.generation);
    let generation = served_generation.or(file_generation);

    let images = image_defaults(&docker, &obs.containers.iter().collect::<Vec<_>>()).await?;
    let view = |release: &Release| {
        let (obs, prober, images) = (&obs, &prober, &images);
        let release = release.clone();
        async move {
            let containers = containers_of(obs, &release);
            ColorView {
                replicas: replicas(config, prober, &release, &containers, lb_running).await,
                drift: drift::color_drift(
                    config,
                    release.color,
                    &release.image,
                    &release.release,
                    &containers,
                    images,
                ),
                release,
            }
        }
    };
    let live = match &obs.state.live {
        Some(l) => Some(view(l).await),
        None => None,
    };
    let idle = match &obs.state.idle {
        Some(i) => Some((i.role, view(&i.release).await)),
        None => None,
    };

    let mut warnings = Vec::new();
    match (&obs.lb, lb_running) {
        (None, _) => {}
        (Some(lb), false) => warnings.push(format!(
            "the nginx container {} is {}: nothing is served",
            lb.name, lb.state
        )),
        _ => {}
    }
    if let (Some(l), Some(r)) = (&obs.state.live, &routes_to) {
        if r != l.color.as_str() {
            warnings.push(format!(
                "the record says {} is live but nginx routes to {r}: run `bgd render` and check the nginx container",
                l.color
            ));
        }
    }
    if let Some(v) = obs
        .state
        .nginx
        .as_ref()
        .and_then(|n| render::parse_version(&format!("nginx/{}", n.version)))
    {
        if !render::supports_keepalive_min_timeout(v) {
            warnings.push(format!(
                "nginx {}.{}.{} lacks keepalive_min_timeout (>= 1.27.4): switches can reset a few keep-alive requests",
                v.0, v.1, v.2
            ));
        }
    }
    if let Some(h) = &obs.lock {
        warnings.push(format!(
            "the deploy lock is held by {}{}",
            h.describe(),
            if h.provably_gone() {
                " (that process is gone; the next deploy takes it over)"
            } else {
                ""
            }
        ));
    }
    let others: Vec<&ContainerInfo> = stray(&obs);
    if !others.is_empty() {
        let names: Vec<&str> = others.iter().map(|c| c.name.as_str()).collect();
        warnings.push(format!(
            "containers of {} that are neither live nor idle (a run that was killed?): {}; the next deploy replaces them",
            config.app,
            names.join(", ")
        ));
    }

    out.print(&human(
        config,
        &obs,
        live.as_ref(),
        idle.as_ref(),
        routes_to.as_deref(),
        generation,
        &warnings,
    ));
    for w in &warnings {
        out.event("warning", {
            let mut m = Map::new();
            m.insert("message".into(), json!(w));
            m
        });
    }
    let mut f = Map::new();
    f.insert("app".into(), json!(config.app));
    f.insert(
        "live".into(),
        live.as_ref().map_or(Value::Null, |v| {
            let l = &v.release;
            json!({"color": l.color, "image": l.image, "release": l.release, "containers": reps_json(&v.replicas), "drift": v.drift})
        }),
    );
    f.insert(
        "idle".into(),
        idle.as_ref().map_or(Value::Null, |(role, v)| {
            let (i, reps) = (&v.release, &v.replicas);
            let state = if reps.is_empty() {
                "missing"
            } else if reps.iter().all(|r| r.state == "running") {
                "running"
            } else {
                "stopped"
            };
            json!({
                "color": i.color, "image": i.image, "release": i.release,
                "role": role.as_str(), "state": state, "containers": reps_json(reps),
                "drift": v.drift
            })
        }),
    );
    f.insert(
        "nginx".into(),
        json!({
            "container": config.lb.container,
            "state": obs.lb.as_ref().map(|c| c.state.clone()),
            "version": obs.state.nginx.as_ref().map(|n| n.version.clone()),
            "routes_to": routes_to,
            "generation": generation,
        }),
    );
    f.insert("warnings".into(), json!(warnings));
    out.result(true, 0, f);
    Ok(())
}

/// Containers of the app that belong to neither the live nor the idle release.
fn stray(obs: &Observed) -> Vec<&ContainerInfo> {
    let known: Vec<(&str, &str)> = obs
        .state
        .live
        .iter()
        .chain(obs.state.idle.iter().map(|i| &i.release))
        .map(|r| (r.color.as_str(), r.release.as_str()))
        .collect();
    obs.containers
        .iter()
        .filter(|c| {
            let key = (
                c.label(crate::deploy::plan::LABEL_COLOR).unwrap_or(""),
                c.label(LABEL_RELEASE).unwrap_or(""),
            );
            !known.contains(&key)
        })
        .collect()
}

/// The containers of one release.
fn containers_of<'a>(obs: &'a Observed, release: &Release) -> Vec<&'a ContainerInfo> {
    obs.of_color(release.color)
        .into_iter()
        .filter(|c| c.label(LABEL_RELEASE) == Some(release.release.as_str()))
        .collect()
}

async fn replicas(
    config: &Config,
    prober: &Prober,
    release: &Release,
    containers: &[&ContainerInfo],
    lb_running: bool,
) -> Vec<Replica> {
    let checks = containers.iter().map(|c| async move {
        let health = if !c.running() {
            "stopped".to_string()
        } else if !lb_running {
            "unknown".to_string()
        } else {
            probe_health(config, prober, release.color, c).await
        };
        Replica {
            name: c.name.clone(),
            state: c.state.clone(),
            health,
        }
    });
    futures_util::future::join_all(checks).await
}

/// Readiness of one replica through the preview listener's per-replica route.
async fn probe_health(config: &Config, prober: &Prober, color: Color, c: &ContainerInfo) -> String {
    let Some(n) = replica_of(c) else {
        return "unknown".into();
    };
    let key = format!("{color}-{n}");
    let url = format!("{}{}", config.lb.preview_url, config.readiness.path);
    match prober
        .request(
            "GET",
            &url,
            &[(PROBE_REPLICA_HEADER, &key)],
            "",
            PROBE_TIMEOUT,
        )
        .await
    {
        Ok(r) if r.bgd_color() != Some(color.as_str()) => "unknown".into(),
        Ok(r) if r.status == config.readiness.expect_status => "healthy".into(),
        Ok(_) => "unhealthy".into(),
        Err(_) => "unreachable".into(),
    }
}

fn reps_json(reps: &[Replica]) -> Value {
    Value::Array(
        reps.iter()
            .map(|r| json!({"name": r.name, "state": r.state, "health": r.health}))
            .collect(),
    )
}

fn human(
    config: &Config,
    obs: &Observed,
    live: Option<&ColorView>,
    idle: Option<&(Role, ColorView)>,
    routes_to: Option<&str>,
    generation: Option<u64>,
    warnings: &[String],
) -> String {
    let mut s = format!("app {}\n", config.app);
    let block = |s: &mut String, label: &str, v: &ColorView| {
        let r = &v.release;
        s.push_str(&format!(
            "  {label:<10}{:<6} {}  (release {})\n",
            r.color, r.image, r.release
        ));
        if v.replicas.is_empty() {
            s.push_str("              no containers\n");
        }
        for rep in &v.replicas {
            s.push_str(&format!(
                "              {:<28} {:<9} {}\n",
                rep.name, rep.state, rep.health
            ));
        }
        if !v.drift.is_empty() {
            s.push_str("              drift from bgd.yaml (the next deploy applies bgd.yaml):\n");
            for f in &v.drift {
                s.push_str(&format!("                - {f}\n"));
            }
        }
    };
    match live {
        Some(v) => block(&mut s, "live", v),
        None => s.push_str("  live      nothing is live\n"),
    }
    match idle {
        Some((role, v)) => block(&mut s, role.as_str(), v),
        None => s.push_str("  idle      empty\n"),
    }
    match &obs.lb {
        None => s.push_str(&format!(
            "  nginx     {} does not exist yet\n",
            config.lb.container
        )),
        Some(lb) => s.push_str(&format!(
            "  nginx     {} ({}{}) routes to {}{}\n",
            lb.name,
            lb.state,
            obs.state
                .nginx
                .as_ref()
                .map_or(String::new(), |n| format!(", nginx {}", n.version)),
            routes_to.unwrap_or("nothing reachable"),
            generation.map_or(String::new(), |g| format!(" (generation {g})"))
        )),
    }
    for w in warnings {
        s.push_str(&format!("  warning: {w}\n"));
    }
    // what can be done from here, for whoever reads this during an incident
    match idle {
        Some((Role::Candidate, v)) => s.push_str(&format!(
            "  next      `bgd switch` promotes the candidate {} ({}); the next deploy replaces it\n",
            v.release.color, v.release.image
        )),
        Some((Role::Parked, v)) if live.is_some() => s.push_str(&format!(
            "  next      `bgd rollback` sends traffic back to {} ({})\n",
            v.release.color, v.release.image
        )),
        _ => {}
    }
    s
}
