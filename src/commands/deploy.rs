use crate::config::{self, Config};
use crate::deploy::plan::env_display;
use crate::deploy::{Deployed, Engine, PlanReport, SwitchReport};
use crate::docker::{ContainerSpec, Docker};
use crate::error;
use crate::nginx::diff;
use crate::output::{fmt_duration, Output};
use crate::state::Release;
use anyhow::Result;
use serde_json::{json, Map, Value};

/// What `deploy` was asked to do.
#[derive(Debug, Clone, Copy)]
pub struct Mode {
    /// stop after the gates, the candidate left on the preview listener
    pub no_switch: bool,
    /// print what would happen, touch nothing
    pub plan: bool,
}

pub async fn run(
    config: &Config,
    image: &str,
    mode: Mode,
    lock_wait: std::time::Duration,
    out: &Output,
) -> Result<()> {
    config::check_image_ref(image).map_err(error::config)?;
    let docker = Docker::connect().await?;
    let engine = Engine::new(config, &docker, out, lock_wait)?;
    if mode.plan {
        let report = engine.plan(image, mode.no_switch).await?;
        print_plan(config, image, &report, out);
        return Ok(());
    }
    match engine.deploy(image, mode.no_switch).await? {
        Deployed::Switched(report) => {
            out.print(&format!(
                "deployed {image}: live on {} (release {}, generation {}){}",
                report.live.color,
                report.live.release,
                report.generation,
                parked_note(&report)
            ));
            out.detail(&format!("switch took {}", fmt_duration(report.switch_took)));
            out.result(true, 0, report_fields(&report));
        }
        Deployed::Candidate {
            candidate,
            live,
            generation,
        } => {
            let serving = live
                .as_ref()
                .map_or("nothing is live yet".to_string(), |l| {
                    format!("{} ({}) keeps serving live traffic", l.color, l.image)
                });
            out.print(&format!(
                "candidate ready: {image} on {} (release {}) passed the gates and waits on the preview listener {}; {serving}.\n\
                 Promote it with `bgd switch`; the next deploy replaces it.",
                candidate.color, candidate.release, config.lb.preview_url
            ));
            let mut f = Map::new();
            f.insert("candidate".into(), release_json(Some(&candidate)));
            f.insert("live".into(), release_json(live.as_ref()));
            f.insert("preview_url".into(), json!(config.lb.preview_url));
            f.insert("generation".into(), json!(generation));
            out.result(true, 0, f);
        }
    }
    Ok(())
}

fn release_json(r: Option<&Release>) -> Value {
    r.map_or(
        Value::Null,
        |r| json!({"color": r.color, "image": r.image, "release": r.release}),
    )
}

/// "; blue parked (web:v1), `bgd rollback` returns to it", or nothing on a first deploy.
pub fn parked_note(r: &SwitchReport) -> String {
    r.parked.as_ref().map_or(String::new(), |p| {
        format!(
            "; {} parked ({}), `bgd rollback` returns to it",
            p.color, p.image
        )
    })
}

pub fn report_fields(r: &SwitchReport) -> Map<String, Value> {
    let mut f = Map::new();
    f.insert("live".into(), release_json(Some(&r.live)));
    f.insert("parked".into(), release_json(r.parked.as_ref()));
    f.insert("generation".into(), json!(r.generation));
    f.insert("switch_ms".into(), json!(r.switch_took.as_millis() as u64));
    f
}

/// `deploy --plan`: the steps, the containers, and the nginx config diff, on stdout.
fn print_plan(config: &Config, image: &str, report: &PlanReport, out: &Output) {
    let plan = &report.plan;
    let nginx_diff = diff::unified(
        report.active.as_deref().unwrap_or(""),
        &report.after,
        &if report.active.is_some() {
            format!("{} (active now)", config.lb.container)
        } else {
            "(no config of bgd's yet)".to_string()
        },
        "after the deploy",
        3,
    );
    let env = env_display(config);
    let mut text = format!("plan: bgd deploy {image} (nothing was changed)\n\nsteps:\n");
    for (i, step) in plan.steps.iter().enumerate() {
        text.push_str(&format!("  {:>2}. {step}\n", i + 1));
    }
    for w in &plan.warnings {
        text.push_str(&format!("  warning: {w}\n"));
    }
    if let Some(spec) = plan.create.first() {
        let names: Vec<&str> = plan.create.iter().map(|c| c.name.as_str()).collect();
        text.push_str(&format!(
            "\ncontainers to create: {} (identical but for their names and bgd.replica)\n",
            names.join(", ")
        ));
        for (key, value) in spec_lines(spec, &env) {
            text.push_str(&format!("  {key:<13} {value}\n"));
        }
    }
    if !plan.remove.is_empty() {
        text.push_str(&format!(
            "\ncontainers to remove: {}\n",
            plan.remove.join(", ")
        ));
    }
    text.push_str(
        "\nnginx config (new replicas shown as <name>:port until Docker gives them addresses):\n",
    );
    if nginx_diff.is_empty() {
        text.push_str("  unchanged\n");
    } else {
        text.push_str(&nginx_diff);
    }
    out.print(&text);

    let mut f = Map::new();
    f.insert("image".into(), json!(image));
    f.insert("target".into(), json!(plan.target));
    f.insert("steps".into(), json!(plan.steps));
    f.insert("warnings".into(), json!(plan.warnings));
    f.insert(
        "create".into(),
        plan.create
            .iter()
            .map(|spec| {
                json!({
                    "name": spec.name,
                    "image": spec.image,
                    "command": spec.cmd,
                    "env": env,
                    "volumes": spec.binds,
                    "network": spec.network,
                    "labels": spec.labels,
                    "restart_policy": if spec.restart { "unless-stopped" } else { "no" },
                    "stop_timeout_ms": spec.stop_timeout.map(|d| d.as_millis() as u64),
                    "memory_bytes": spec.memory,
                    "cpus": spec.nano_cpus.map(|n| n as f64 / 1e9),
                })
            })
            .collect(),
    );
    f.insert("remove".into(), json!(plan.remove));
    f.insert(
        "nginx".into(),
        json!({
            "container": config.lb.container,
            "diff": nginx_diff,
            "after": report.after,
        }),
    );
    out.result(true, 0, f);
}

/// A container spec as the plan shows it: (key, value) in a fixed order.
fn spec_lines(spec: &ContainerSpec, env: &[String]) -> Vec<(&'static str, String)> {
    let mut labels: Vec<String> = spec
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    labels.sort();
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    vec![
        ("image", spec.image.clone()),
        (
            "command",
            spec.cmd
                .as_ref()
                .map_or("the image's".to_string(), |c| format!("{c:?}")),
        ),
        ("env", list(env)),
        ("volumes", list(&spec.binds)),
        ("network", spec.network.clone()),
        ("labels", labels.join(", ")),
        (
            "restart",
            if spec.restart { "unless-stopped" } else { "no" }.to_string(),
        ),
        (
            "stop_timeout",
            spec.stop_timeout
                .map_or("Docker's default".into(), fmt_duration),
        ),
        (
            "memory",
            spec.memory
                .map_or("unlimited".into(), |m| format!("{} MiB", m >> 20)),
        ),
        (
            "cpus",
            spec.nano_cpus
                .map_or("unlimited".into(), |n| format!("{}", n as f64 / 1e9)),
        ),
    ]
}
