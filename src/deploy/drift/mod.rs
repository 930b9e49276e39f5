//! Drift: where the containers of a color differ from what bgd would create from bgd.yaml now.
//! Pure: it compares the spec (`specs::replica_specs`) with what Docker reports, knowing what the
//! image itself contributes (its env, command and labels are not drift).
//!
//! Both colors come from the same spec, so drift means either bgd.yaml changed since the color
//! was started (the next deploy applies it) or a container was changed by hand (`docker
//! update`, `docker network connect`). Findings name env variables, never their values.

use super::specs::replica_specs;
use crate::config::Config;
use crate::docker::{ContainerInfo, ContainerSpec, ImageDefaults};
use crate::model::Release;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Variables a container runtime may add on its own (Docker for an image without PATH,
/// Podman's `container`, ...): present without being asked for, they are not drift.
const RUNTIME_ENV: &[&str] = &["PATH", "HOSTNAME", "HOME", "TERM", "container"];

/// Every way one container differs from `expected`. `image` is what the container's image
/// contributes, when known; without it, variables and labels the container has beyond the
/// spec cannot be judged and are not reported.
pub fn container_drift(
    expected: &ContainerSpec,
    actual: &ContainerInfo,
    image: Option<&ImageDefaults>,
) -> Vec<String> {
    let mut found = Vec::new();
    if actual.image != expected.image {
        found.push(format!(
            "image {} (expected {})",
            actual.image, expected.image
        ));
    }
    found.extend(env_drift(expected, actual, image));
    found.extend(command_drift(expected, actual, image));
    found.extend(mount_and_network_drift(expected, actual));
    found.extend(label_drift(expected, actual, image));
    found.extend(limits_drift(expected, actual));
    found
}

/// Variables by name; values are compared, never shown.
fn env_drift(
    expected: &ContainerSpec,
    actual: &ContainerInfo,
    image: Option<&ImageDefaults>,
) -> Vec<String> {
    let mut found = Vec::new();
    let spec_env = env_map(&expected.env);
    let mut want_env = image.map_or_else(BTreeMap::new, |i| env_map(&i.env));
    want_env.extend(spec_env.clone());
    let have_env = env_map(&actual.settings.env);
    for (name, want) in &want_env {
        let from = if spec_env.contains_key(name) {
            "bgd.yaml"
        } else {
            "the image"
        };
        match have_env.get(name) {
            None => found.push(format!("env {name}: in {from}, not in the container")),
            Some(have) if have != want => found.push(format!(
                "env {name}: the container's value differs from {from} (values are not shown)"
            )),
            Some(_) => {}
        }
    }
    if image.is_some() {
        let extra = have_env
            .keys()
            .filter(|n| !want_env.contains_key(*n) && !RUNTIME_ENV.contains(&n.as_str()));
        for name in extra {
            found.push(format!("env {name}: in the container, not in bgd.yaml"));
        }
    }
    found
}

fn command_drift(
    expected: &ContainerSpec,
    actual: &ContainerInfo,
    image: Option<&ImageDefaults>,
) -> Option<String> {
    let (want, from) = expected
        .cmd
        .as_ref()
        .map(|c| (c, "bgd.yaml"))
        .or_else(|| image.and_then(|i| i.cmd.as_ref()).map(|c| (c, "the image")))?;
    let have = actual.settings.cmd.as_ref();
    // shown with their secrets masked, the container's own included (a rotated password)
    let shown = crate::config::shown_command;
    (have != Some(want)).then(|| {
        format!(
            "command {} ({from}: {})",
            shown(&have.cloned().unwrap_or_default()),
            shown(want)
        )
    })
}

fn mount_and_network_drift(expected: &ContainerSpec, actual: &ContainerInfo) -> Vec<String> {
    let mut found = Vec::new();
    let want_binds: BTreeSet<&String> = expected.binds.iter().collect();
    let have_binds: BTreeSet<&String> = actual.settings.binds.iter().collect();
    for b in want_binds.difference(&have_binds) {
        found.push(format!("volume {b}: in bgd.yaml, not mounted"));
    }
    for b in have_binds.difference(&want_binds) {
        found.push(format!("volume {b}: mounted, not in bgd.yaml"));
    }
    if !actual.networks.contains_key(&expected.network) {
        found.push(format!("network {}: not connected", expected.network));
    }
    let mut extra_nets: Vec<&String> = actual
        .networks
        .keys()
        .filter(|n| **n != expected.network)
        .collect();
    extra_nets.sort();
    for n in extra_nets {
        found.push(format!("network {n}: connected, not in bgd.yaml"));
    }
    found
}

fn label_drift(
    expected: &ContainerSpec,
    actual: &ContainerInfo,
    image: Option<&ImageDefaults>,
) -> Vec<String> {
    let mut found = Vec::new();
    let mut want_labels: BTreeMap<&String, &String> =
        image.map(|i| i.labels.iter().collect()).unwrap_or_default();
    want_labels.extend(expected.labels.iter());
    for (k, want) in &want_labels {
        match actual.labels.get(*k) {
            None => found.push(format!("label {k}: in bgd.yaml, not on the container")),
            Some(have) if have != *want => {
                found.push(format!("label {k}: {have:?} (bgd.yaml: {want:?})"))
            }
            Some(_) => {}
        }
    }
    if image.is_some() {
        let mut extra: Vec<&String> = actual
            .labels
            .keys()
            .filter(|k| !want_labels.contains_key(k))
            .collect();
        extra.sort();
        for k in extra {
            found.push(format!("label {k}: on the container, not in bgd.yaml"));
        }
    }
    found
}

/// Restart policy, memory, cpus and stop timeout.
fn limits_drift(expected: &ContainerSpec, actual: &ContainerInfo) -> Vec<String> {
    let (s, mut found) = (&actual.settings, Vec::new());
    let want_restart = if expected.restart {
        "unless-stopped"
    } else {
        "no"
    };
    let have_restart = if s.restart_policy.is_empty() {
        "no"
    } else {
        s.restart_policy.as_str()
    };
    if have_restart != want_restart {
        found.push(format!(
            "restart policy {have_restart} (bgd.yaml: {want_restart})"
        ));
    }
    if s.memory != expected.memory.unwrap_or(0) {
        found.push(format!(
            "memory limit {} (bgd.yaml: {})",
            fmt_bytes(s.memory),
            fmt_bytes(expected.memory.unwrap_or(0))
        ));
    }
    if s.nano_cpus != expected.nano_cpus.unwrap_or(0) {
        found.push(format!(
            "cpus {} (bgd.yaml: {})",
            fmt_cpus(s.nano_cpus),
            fmt_cpus(expected.nano_cpus.unwrap_or(0))
        ));
    }
    let want_stop = expected.stop_timeout.map(|d| d.as_secs().max(1) as i64);
    if want_stop.is_some() && s.stop_timeout != want_stop {
        let shown = |t: Option<i64>| t.map_or("Docker's default".into(), |t| format!("{t}s"));
        found.push(format!(
            "stop timeout {} (bgd.yaml: {})",
            shown(s.stop_timeout),
            shown(want_stop)
        ));
    }
    found
}

/// Drift of one color's containers (one release) from bgd.yaml: each finding once, naming
/// the containers it applies to. `images` maps image IDs to what they contribute.
pub fn color_drift(
    config: &Config,
    release: &Release,
    containers: &[&ContainerInfo],
    images: &HashMap<String, ImageDefaults>,
) -> Vec<String> {
    let specs = replica_specs(config, release);
    let mut findings: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for c in containers {
        let Some(spec) = c
            .replica()
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| specs.get(i as usize))
        else {
            continue;
        };
        for f in container_drift(spec, c, images.get(&c.image_id)) {
            let names = findings.entry(f.clone()).or_default();
            if names.is_empty() {
                order.push(f);
            }
            names.push(&c.name);
        }
    }
    let mut out = Vec::new();
    if containers.len() != config.replicas as usize {
        out.push(format!(
            "replicas: {} container(s), bgd.yaml says {}",
            containers.len(),
            config.replicas
        ));
    }
    for f in order {
        let names = &findings[&f];
        out.push(format!("{f} [{}]", names.join(", ")));
    }
    out
}

fn env_map(env: &[String]) -> BTreeMap<String, String> {
    env.iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv.clone(), String::new()),
        })
        .collect()
}

fn fmt_bytes(b: i64) -> String {
    match b {
        0 => "none".into(),
        b if b % (1 << 30) == 0 => format!("{}g", b >> 30),
        b if b % (1 << 20) == 0 => format!("{}m", b >> 20),
        b => format!("{b} bytes"),
    }
}

fn fmt_cpus(n: i64) -> String {
    if n == 0 {
        "none".into()
    } else {
        format!("{}", n as f64 / 1e9)
    }
}

#[cfg(test)]
mod tests;
