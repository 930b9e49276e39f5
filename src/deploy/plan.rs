//! Pure decisions: container specs, labels and the nginx render input. No I/O, so tests can
//! compare them exactly.

use crate::config::Config;
use crate::docker::{ContainerInfo, ContainerSpec};
use crate::model::{container_name, Color, Pool, Server};
use crate::nginx::render::RenderInput;
use crate::state::Role;
use std::collections::HashMap;
use std::time::Duration;

pub const LABEL_MANAGED: &str = "bgd.managed";
pub const LABEL_APP: &str = "bgd.app";
pub const LABEL_COLOR: &str = "bgd.color";
pub const LABEL_RELEASE: &str = "bgd.release";
pub const LABEL_REPLICA: &str = "bgd.replica";
pub const LABEL_ROLE: &str = "bgd.role";

/// The specs of the `replicas` containers of one color. Only the image and the labels that
/// name the color, release and replica differ between colors.
pub fn replica_specs(
    config: &Config,
    color: Color,
    image: &str,
    release: &str,
) -> Vec<ContainerSpec> {
    (1..=config.replicas)
        .map(|n| {
            let mut labels: HashMap<String, String> = config
                .container
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            labels.insert(LABEL_MANAGED.into(), "true".into());
            labels.insert(LABEL_APP.into(), config.app.clone());
            labels.insert(LABEL_COLOR.into(), color.to_string());
            labels.insert(LABEL_RELEASE.into(), release.into());
            labels.insert(LABEL_REPLICA.into(), n.to_string());
            labels.insert(LABEL_ROLE.into(), "app".into());
            ContainerSpec {
                name: container_name(&config.app, color, n),
                image: image.to_string(),
                env: config.container_env(),
                cmd: config.container.command.clone(),
                labels,
                network: config.network.clone(),
                binds: config.container.volumes.clone(),
                stop_timeout: Some(config.container.stop_timeout),
                restart: true,
                publish: Vec::new(),
            }
        })
        .collect()
}

/// The one-off container of `hooks.migrate`: the new image, the app's env, network and
/// volumes, the hook's command; no restart policy.
pub fn migration_spec(
    config: &Config,
    image: &str,
    release: &str,
    command: &[String],
) -> ContainerSpec {
    let mut labels = HashMap::new();
    labels.insert(LABEL_MANAGED.to_string(), "true".to_string());
    labels.insert(LABEL_ROLE.to_string(), "migrate".to_string());
    labels.insert("bgd.migrate-for".to_string(), config.app.clone());
    labels.insert(LABEL_RELEASE.to_string(), release.to_string());
    ContainerSpec {
        name: format!("{}-migrate", config.app),
        image: image.to_string(),
        env: config.container_env(),
        cmd: Some(command.to_vec()),
        labels,
        network: config.network.clone(),
        binds: config.container.volumes.clone(),
        stop_timeout: Some(Duration::from_secs(5)),
        restart: false,
        publish: Vec::new(),
    }
}

/// The nginx container bgd creates when `lb.container` is absent and `lb.image` is set.
pub fn lb_spec(config: &Config, image: &str) -> ContainerSpec {
    let mut labels = HashMap::new();
    labels.insert(LABEL_MANAGED.to_string(), "true".to_string());
    labels.insert(LABEL_ROLE.to_string(), "lb".to_string());
    labels.insert("bgd.lb-for".to_string(), config.app.clone());
    // Old workers must not outlive the drain bound (a WebSocket would keep one forever).
    let shutdown = config.switch.drain + Duration::from_secs(5);
    ContainerSpec {
        name: config.lb.container.clone(),
        image: image.to_string(),
        env: Vec::new(),
        cmd: Some(vec![
            "nginx".into(),
            "-g".into(),
            format!(
                "daemon off; worker_shutdown_timeout {}s;",
                shutdown.as_secs()
            ),
        ]),
        labels,
        network: config.network.clone(),
        binds: Vec::new(),
        stop_timeout: Some(Duration::from_secs(10)),
        restart: true,
        publish: config
            .lb
            .publish
            .iter()
            .map(|p| (p.host_ip.clone(), p.host_port, p.container_port))
            .collect(),
    }
}

/// The replica number a container carries, from its label.
pub fn replica_of(c: &ContainerInfo) -> Option<u32> {
    c.label(LABEL_REPLICA)?.parse().ok()
}

/// The pool nginx routes to for `containers` (one color): running ones with an address on
/// the app network, by replica number.
pub fn pool_of(
    config: &Config,
    color: Color,
    release: &str,
    containers: &[&ContainerInfo],
) -> Pool {
    let mut servers: Vec<Server> = containers
        .iter()
        .filter(|c| c.running())
        .filter_map(|c| {
            Some(Server {
                replica: replica_of(c)?,
                addr: format!("{}:{}", c.ip_on(&config.network)?, config.container.port),
            })
        })
        .collect();
    servers.sort_by_key(|s| s.replica);
    Pool {
        color,
        release: release.to_string(),
        servers,
    }
}

pub fn render_input(
    config: &Config,
    generation: u64,
    live: Option<&Pool>,
    preview: Option<(&Pool, Role)>,
    keepalive_min_timeout: bool,
) -> RenderInput {
    let live = live.filter(|p| !p.servers.is_empty()).cloned();
    let preview = preview.filter(|(p, _)| !p.servers.is_empty());
    let idle_role = preview.map(|(_, role)| role.as_str().to_string());
    let preview = preview.map(|(p, _)| p.clone());
    let probe_routes = live
        .iter()
        .chain(preview.iter())
        .flat_map(|p| p.servers.iter().map(move |s| (p.color, s.clone())))
        .collect();
    RenderInput {
        app: config.app.clone(),
        generation,
        listen: config.lb.listen,
        preview_listen: config.lb.preview_listen,
        live,
        preview,
        idle_role,
        probe_routes,
        keepalive_min_timeout,
        upstream_keepalive_timeout: config.lb.upstream_keepalive_timeout,
    }
}

/// Whether an nginx config text has a `listen` directive on one of `ports` (any address).
pub fn listens_on(config: &str, ports: &[u16]) -> bool {
    config.lines().any(|line| {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(args) = line.strip_prefix("listen") else {
            return false;
        };
        if !args.starts_with(char::is_whitespace) {
            return false;
        }
        let addr = args
            .split_whitespace()
            .next()
            .unwrap_or("")
            .trim_end_matches(';');
        let port = addr.rsplit(':').next().unwrap_or(addr);
        port.parse::<u16>().is_ok_and(|p| ports.contains(&p))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config() -> Config {
        crate::config::parse(
            Path::new("bgd.yaml"),
            "app: web\nreplicas: 2\ncontainer:\n  port: 8080\n  env: { A: '1' }\n  labels: { team: pay }\n  volumes: ['data:/data']\nlb:\n  publish: ['127.0.0.1:8000:80', '127.0.0.1:8001:8081']\n",
        )
        .unwrap()
    }

    #[test]
    fn replica_specs_differ_only_by_identity() {
        let c = config();
        let blue = replica_specs(&c, Color::Blue, "web:v1", "r1");
        let green = replica_specs(&c, Color::Green, "web:v2", "r2");
        assert_eq!(blue.len(), 2);
        assert_eq!(blue[1].name, "web-blue-2");
        assert_eq!(blue[0].labels["bgd.color"], "blue");
        assert_eq!(blue[0].labels["bgd.replica"], "1");
        assert_eq!(blue[0].labels["team"], "pay");
        assert_eq!(blue[0].env, vec!["A=1".to_string()]);
        assert_eq!(blue[0].network, "web-net");
        let mut g = green[0].clone();
        g.name = blue[0].name.clone();
        g.image = blue[0].image.clone();
        g.labels = blue[0].labels.clone();
        assert_eq!(g, blue[0]);
    }

    #[test]
    fn finds_clashing_listen_directives() {
        let stock = "server {\n    listen       80;\n    listen  [::]:80;\n    server_name  localhost;\n}\n";
        assert!(listens_on(stock, &[80, 8081]));
        assert!(!listens_on(stock, &[8080, 8081]));
        assert!(listens_on(
            "server { \n listen 127.0.0.1:8081 default_server;\n}",
            &[8081]
        ));
        assert!(!listens_on("# listen 80;\nserver {}", &[80]));
        assert!(!listens_on("listening 80;", &[80]));
    }

    #[test]
    fn lb_spec_publishes_and_bounds_old_workers() {
        let s = lb_spec(&config(), "nginx:1.30");
        assert_eq!(s.name, "web-lb");
        assert_eq!(s.publish[0], (Some("127.0.0.1".into()), Some(8000), 80));
        assert!(s.cmd.unwrap()[2].contains("worker_shutdown_timeout 35s"));
    }
}
