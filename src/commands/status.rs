//! `bgd status`: renders what `deploy::status` gathered, for people and for `--json`.

use crate::config::Config;
use crate::deploy::status::{status, ColorView, Replica, StatusReport};
use crate::deploy::Host;
use crate::docker::Docker;
use crate::error::Failure;
use crate::model::{Role, LABEL_APP};
use crate::output::Output;
use anyhow::Result;
use serde_json::{json, Map, Value};

pub async fn run(config: &Config, docker: &Docker, out: &Output) -> Result<()> {
    let host = Host::new(config, docker, out, std::time::Duration::ZERO)?;
    // the other apps behind the same nginx (host-based routing), for whoever shares it: asked
    // beside the rest (an nginx that is not there or not running has none)
    let (report, apps) = tokio::join!(status(&host), apps_behind(&host));
    let report = report?;
    let others: Vec<String> = match report.observed.lb.as_ref().filter(|l| l.running()) {
        Some(_) => apps
            .unwrap_or_default()
            .into_iter()
            .filter(|a| *a != config.app)
            .collect(),
        None => Vec::new(),
    };
    out.print(&human(config, &report, &others));
    for w in &report.warnings {
        let mut m = Map::new();
        m.insert("message".into(), json!(w));
        out.event("warning", m);
    }
    // live traffic that may reach anything but the live color is exit 7, with the report
    if report.problems.is_empty() {
        out.result(true, 0, fields(config, &report, &others));
        return Ok(());
    }
    out.result(false, 7, fields(config, &report, &others));
    Err(Failure::Reported(7).into())
}

/// The apps bgd deploys behind this app's nginx (a record each in bgd's directory there),
/// this one included. Reading that directory costs an exec; an nginx on no network but this
/// app's, where no container of another bgd app runs, has no other app to list, which one
/// inspect and one container list say.
async fn apps_behind(host: &Host<'_>) -> Result<Vec<String>> {
    let config = host.config;
    let ours = &config.network;
    if let Some(lb) = host.docker.inspect(&config.lb.container).await? {
        let alone = lb.networks.keys().all(|n| n == ours || n == "bridge");
        if alone {
            let on_ours = host.docker.label_values_on(ours, LABEL_APP).await?;
            if on_ours.iter().all(|a| *a == config.app) {
                return Ok(vec![config.app.clone()]);
            }
        }
    }
    Ok(host.nginx().apps().await?)
}

fn fields(config: &Config, r: &StatusReport, others: &[String]) -> Map<String, Value> {
    let obs = &r.observed;
    let mut f = Map::new();
    f.insert("app".into(), json!(config.app));
    f.insert(
        "live".into(),
        r.live.as_ref().map_or(Value::Null, |v| {
            let l = &v.release;
            json!({"color": l.color, "image": l.image, "release": l.release, "containers": replicas_json(&v.replicas), "drift": v.drift})
        }),
    );
    f.insert(
        "idle".into(),
        r.idle.as_ref().map_or(Value::Null, |(role, v)| {
            let i = &v.release;
            json!({
                "color": i.color, "image": i.image, "release": i.release,
                "role": role.as_str(), "state": v.state(), "containers": replicas_json(&v.replicas),
                "drift": v.drift
            })
        }),
    );
    // the parked release a waiting candidate displaced (`discard` gives it back)
    f.insert(
        "set_aside".into(),
        super::deploy::release_json(obs.state.set_aside.as_ref()),
    );
    f.insert(
        "nginx".into(),
        json!({
            "container": config.lb.container,
            "state": obs.lb.as_ref().map(|c| c.state.clone()),
            "version": obs.state.nginx.as_ref().map(|n| n.version.clone()),
            "routes_to": r.routes_to,
            "generation": r.generation,
            "flipped": obs.flipped(),
            "other_apps": others,
        }),
    );
    let now = crate::tls::now();
    f.insert(
        "tls".into(),
        r.tls.as_ref().map_or(Value::Null, |t| {
            json!({
                "listen": config.lb.tls.as_ref().map(|t| t.listen),
                "served": super::tls::cert_json(t.served.as_ref(), now),
                "configured": super::tls::cert_json(t.configured.as_ref(), now),
            })
        }),
    );
    f.insert(
        "canary".into(),
        r.canary.as_ref().map_or(
            Value::Null,
            |c| json!({"share": c.share, "since": c.since, "stable": c.stable, "canary": c.canary}),
        ),
    );
    f.insert("problems".into(), json!(r.problems));
    f.insert("warnings".into(), json!(r.warnings));
    f
}

fn replicas_json(reps: &[Replica]) -> Value {
    Value::Array(
        reps.iter()
            .map(|r| json!({"name": r.name, "state": r.state, "health": r.health}))
            .collect(),
    )
}

fn human(config: &Config, r: &StatusReport, others: &[String]) -> String {
    let obs = &r.observed;
    let mut s = format!("app {}\n", config.app);
    for p in &r.problems {
        s.push_str(&format!("  PROBLEM   {p}\n"));
    }
    match &r.live {
        Some(v) => block(&mut s, "live", v),
        None => s.push_str("  live      nothing is live\n"),
    }
    match &r.idle {
        Some((role, v)) => block(&mut s, role.as_str(), v),
        None => s.push_str("  idle      empty\n"),
    }
    if let (Some(c), Some(l), Some((_, i))) = (&r.canary, &r.live, &r.idle) {
        let side = |s: &crate::nginx::traffic::Summary| {
            format!(
                "{} request(s), {} 5xx ({:.1}%){}",
                s.requests,
                s.errors,
                s.error_rate,
                s.p95_ms
                    .map_or(String::new(), |p| format!(", p95 {p:.1} ms"))
            )
        };
        s.push_str(&format!(
            "  canary    {}% of live clients on {}, the rest on {} (since {}, as nginx logged it)
            {}: {}
            {}: {}
",
            c.share,
            i.release.color,
            l.release.color,
            c.since,
            i.release.color,
            side(&c.canary),
            l.release.color,
            side(&c.stable)
        ));
    }
    if let Some(a) = &obs.state.set_aside {
        s.push_str(&format!(
            "  aside     {:<6} {}  (release {}): the parked release, kept while the candidate waits\n",
            a.color, a.image, a.release
        ));
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
            r.routes_to.as_deref().unwrap_or("nothing reachable"),
            r.generation.map_or(String::new(), |g| format!(
                " (generation {g}{})",
                if obs.flipped() {
                    ", by the rollback flag"
                } else {
                    ""
                }
            ))
        )),
    }
    if let Some(t) = &r.tls {
        let now = crate::tls::now();
        let port = config.lb.tls.as_ref().map_or(0, |t| t.listen);
        match &t.served {
            Some(c) => s.push_str(&format!("  tls       port {port}: {}\n", c.summary(now))),
            None => s.push_str(&format!(
                "  tls       port {port}: no certificate seen (lb.url not reached over HTTPS)\n"
            )),
        }
    }
    if !others.is_empty() {
        s.push_str(&format!(
            "  shared    with {} (their own bgd.yaml, lock and routing)\n",
            others.join(", ")
        ));
    }
    for w in &r.warnings {
        s.push_str(&format!("  warning: {w}\n"));
    }
    // what can be done from here, for whoever reads this during an incident
    match &r.idle {
        Some((Role::Candidate, v)) if r.canary.is_some() => s.push_str(&format!(
            "  next      `bgd canary N` changes the canary's share; `bgd promote` makes {} ({}) live for all; `bgd rollback` sends its share back to 0%\n",
            v.release.color, v.release.image
        )),
        Some((Role::Candidate, v)) if obs.state.candidate_failed => s.push_str(&format!(
            "  next      the candidate {} ({}) FAILED verification after its switch, or its canary analysis; traffic is back on the release before it. Inspect it on the preview listener; `bgd discard` removes it; do not `bgd switch` it\n",
            v.release.color, v.release.image
        )),
        Some((Role::Candidate, v)) => s.push_str(&format!(
            "  next      `bgd switch` promotes the candidate {} ({}); `bgd discard` removes it{}; the next deploy replaces it\n",
            v.release.color,
            v.release.image,
            obs.state
                .set_aside
                .as_ref()
                .map_or(String::new(), |a| format!(" and parks {} again", a.image))
        )),
        Some((Role::Parked, v)) if r.live.is_some() => s.push_str(&format!(
            "  next      `bgd rollback` sends traffic back to {} ({})\n",
            v.release.color, v.release.image
        )),
        _ => {}
    }
    s
}

/// One release: its color, image and release, each container, and its drift.
fn block(s: &mut String, label: &str, v: &ColorView) {
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
}
