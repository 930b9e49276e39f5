//! Drift of containers made from specs, faithfully or changed by hand or by config.
use super::*;
use crate::docker::RunSettings;
use crate::model::Color;
use std::path::Path;

fn rel(color: Color, image: &str, id: &str) -> Release {
    Release {
        color,
        image: image.into(),
        release: id.into(),
    }
}

fn config(extra: &str) -> Config {
    crate::config::parse(
        Path::new("bgd.yaml"),
        &format!(
            "app: web\nreplicas: 2\ncontainer:\n  port: 8080\n  env: {{ A: '1', B: '2' }}\n  labels: {{ team: pay }}\n  volumes: ['data:/data']\n  stop_timeout: 5s\n{extra}lb:\n  publish: ['127.0.0.1:8000:80', '127.0.0.1:8001:8081']\n"
        ),
    )
    .unwrap()
}

fn image() -> ImageDefaults {
    ImageDefaults {
        env: vec!["PATH=/bin".into(), "B=image".into()],
        cmd: Some(vec!["serve".into()]),
        labels: [(
            "org.opencontainers.image.title".to_string(),
            "web".to_string(),
        )]
        .into_iter()
        .collect(),
    }
}

/// The container Docker makes from `spec` with `image`: what a faithful create gives.
fn created(spec: &ContainerSpec, image: &ImageDefaults) -> ContainerInfo {
    let mut env = env_map(&image.env);
    env.extend(env_map(&spec.env));
    let mut labels = image.labels.clone();
    labels.extend(spec.labels.clone());
    ContainerInfo {
        id: "id".into(),
        name: spec.name.clone(),
        image: spec.image.clone(),
        labels,
        state: "running".into(),
        health: None,
        networks: [(spec.network.clone(), "10.0.0.2".to_string())]
            .into_iter()
            .collect(),
        aliases: [(spec.network.clone(), spec.aliases.clone())]
            .into_iter()
            .collect(),
        exit_code: None,
        image_id: "sha256:img".into(),
        restart_count: 0,
        up_for: None,
        settings: RunSettings {
            env: env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            cmd: spec.cmd.clone().or(image.cmd.clone()),
            binds: spec.binds.clone(),
            restart_policy: "unless-stopped".into(),
            memory: spec.memory.unwrap_or(0),
            nano_cpus: spec.nano_cpus.unwrap_or(0),
            stop_timeout: spec.stop_timeout.map(|d| d.as_secs() as i64),
        },
    }
}

#[test]
fn a_faithful_container_has_no_drift() {
    let c = config("");
    let spec = &replica_specs(&c, &rel(Color::Blue, "web:v1", "r1"))[0];
    let img = image();
    assert_eq!(
        container_drift(spec, &created(spec, &img), Some(&img)),
        Vec::<String>::new()
    );
    // without the image's defaults, nothing is invented either
    assert_eq!(
        container_drift(spec, &created(spec, &img), None),
        Vec::<String>::new()
    );
}

#[test]
fn hand_changes_and_config_changes_are_named() {
    let old = config("");
    let spec = &replica_specs(&old, &rel(Color::Blue, "web:v1", "r1"))[0];
    let img = image();
    let mut c = created(spec, &img);
    c.settings.restart_policy = "no".into();
    c.settings.memory = 1 << 30;
    c.networks.insert("other".into(), "10.1.0.2".into());
    c.settings.env.push("DEBUG=1".into());
    c.settings.env.push("container=podman".into());
    let found = container_drift(spec, &c, Some(&img));
    assert_eq!(
        found,
        vec![
            "env DEBUG: in the container, not in bgd.yaml",
            "network other: connected, not in bgd.yaml",
            "restart policy no (bgd.yaml: unless-stopped)",
            "memory limit 1g (bgd.yaml: none)",
        ]
    );

    // bgd.yaml changed since the container was made
    let new = config("  memory: 512m\n  command: ['serve', '--fast']\n");
    let mut new_spec = replica_specs(&new, &rel(Color::Blue, "web:v1", "r1"))[0].clone();
    new_spec.env.push("SECRET_TOKEN=hunter22".into());
    let found = container_drift(&new_spec, &created(spec, &img), Some(&img));
    assert_eq!(
        found,
        vec![
            "env SECRET_TOKEN: in bgd.yaml, not in the container",
            "command [\"serve\"] (bgd.yaml: [\"serve\", \"--fast\"])",
            "memory limit none (bgd.yaml: 512m)",
        ]
    );
    assert!(
        !found.iter().any(|f| f.contains("hunter22")),
        "values never shown"
    );
}

#[test]
fn a_changed_value_is_reported_without_it() {
    let c = config("");
    let spec = &replica_specs(&c, &rel(Color::Blue, "web:v1", "r1"))[0];
    let img = image();
    let mut actual = created(spec, &img);
    for kv in actual.settings.env.iter_mut() {
        if kv.starts_with("A=") {
            *kv = "A=old-value".into();
        }
    }
    let found = container_drift(spec, &actual, Some(&img));
    assert_eq!(
        found,
        vec!["env A: the container's value differs from bgd.yaml (values are not shown)"]
    );
}

#[test]
fn a_color_reports_each_finding_once_with_its_containers() {
    let c = config("");
    let img = image();
    let specs = replica_specs(&c, &rel(Color::Green, "web:v2", "r2"));
    let mut one = created(&specs[0], &img);
    let mut two = created(&specs[1], &img);
    one.settings.nano_cpus = 500_000_000;
    two.settings.nano_cpus = 500_000_000;
    two.settings.restart_policy = String::new();
    let images = [("sha256:img".to_string(), img)].into_iter().collect();
    let found = color_drift(
        &c,
        &rel(Color::Green, "web:v2", "r2"),
        &[&one, &two],
        &images,
    );
    assert_eq!(
        found,
        vec![
            "cpus 0.5 (bgd.yaml: none) [web-green-1, web-green-2]",
            "restart policy no (bgd.yaml: unless-stopped) [web-green-2]",
        ]
    );
    let found = color_drift(&c, &rel(Color::Green, "web:v2", "r2"), &[&one], &images);
    assert_eq!(found[0], "replicas: 1 container(s), bgd.yaml says 2");
}
