//! `deploy --plan`'s report: the steps the deploy would take (the very list it executes),
//! the container spec, what would be removed, and the nginx config diff.

use crate::config::Config;
use crate::deploy::specs::env_display;
use crate::deploy::PlanReport;
use crate::docker::ContainerSpec;
use crate::nginx::diff;
use crate::output::{fmt_duration, Output};
use serde_json::{json, Map, Value};

pub fn print(config: &Config, image: &str, report: &PlanReport, out: &Output) {
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
    out.print(&text(config, image, report, &env, &nginx_diff));
    out.result(true, 0, fields(config, image, report, &env, nginx_diff));
}

fn text(config: &Config, image: &str, report: &PlanReport, env: &[String], diff: &str) -> String {
    let plan = &report.plan;
    let mut text = format!("plan: bgd deploy {image} (nothing was changed)\n\n");
    if let Some(now) = plan.notes.first() {
        text.push_str(&format!("{now}\n\nsteps:\n"));
    }
    for (i, step) in plan.steps.iter().enumerate() {
        text.push_str(&format!(
            "  {:>2}. {:<13} {}\n",
            i + 1,
            step.kind.name(),
            step.text
        ));
    }
    for w in &plan.warnings {
        text.push_str(&format!("  warning: {w}\n"));
    }
    for note in plan.notes.iter().skip(1) {
        text.push_str(&format!("  note: {note}\n"));
    }
    if let Some(spec) = plan.create.first() {
        let names: Vec<&str> = plan.create.iter().map(|c| c.name.as_str()).collect();
        text.push_str(&format!(
            "\ncontainers to create: {} (identical but for their names and bgd.replica)\n",
            names.join(", ")
        ));
        for (key, value) in spec_lines(spec, env) {
            text.push_str(&format!("  {key:<13} {value}\n"));
        }
    }
    if !plan.remove.is_empty() {
        text.push_str(&format!(
            "\ncontainers to remove: {}\n",
            plan.remove.join(", ")
        ));
    }
    text.push_str(&format!(
        "\nnginx config in {} (where nginx routes by address, a new replica shows as <container>:port until Docker gives it one):\n",
        config.lb.container
    ));
    if diff.is_empty() {
        text.push_str("  unchanged\n");
    } else {
        text.push_str(diff);
    }
    text
}

fn fields(
    config: &Config,
    image: &str,
    report: &PlanReport,
    env: &[String],
    nginx_diff: String,
) -> Map<String, Value> {
    let plan = &report.plan;
    let texts: Vec<&str> = plan.steps.iter().map(|s| s.text.as_str()).collect();
    let names: Vec<&str> = plan.steps.iter().map(|s| s.kind.name()).collect();
    let create: Vec<Value> = plan
        .create
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
        .collect();
    let mut f = Map::new();
    f.insert("image".into(), json!(image));
    f.insert("target".into(), json!(plan.target));
    f.insert("steps".into(), json!(texts));
    f.insert("step_names".into(), json!(names));
    f.insert("notes".into(), json!(plan.notes));
    f.insert("warnings".into(), json!(plan.warnings));
    f.insert("create".into(), json!(create));
    f.insert("remove".into(), json!(plan.remove));
    f.insert(
        "nginx".into(),
        json!({
            "container": config.lb.container,
            "diff": nginx_diff,
            "after": report.after,
        }),
    );
    f
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
    let command = spec.cmd.as_ref().map_or("the image's".to_string(), |c| {
        crate::config::shown_command(c)
    });
    let restart = if spec.restart { "unless-stopped" } else { "no" };
    let stop = spec
        .stop_timeout
        .map_or("Docker's default".into(), fmt_duration);
    let memory = spec
        .memory
        .map_or("unlimited".into(), |m| format!("{} MiB", m >> 20));
    let cpus = spec
        .nano_cpus
        .map_or("unlimited".into(), |n| format!("{}", n as f64 / 1e9));
    vec![
        ("image", spec.image.clone()),
        ("command", command),
        ("env", list(env)),
        ("volumes", list(&spec.binds)),
        ("network", spec.network.clone()),
        ("labels", labels.join(", ")),
        ("restart", restart.to_string()),
        ("stop_timeout", stop),
        ("memory", memory),
        ("cpus", cpus),
    ]
}
