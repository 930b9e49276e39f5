//! Pure decisions: container specs, labels and the nginx render input. No I/O, so tests can
//! compare them exactly.

use super::observe::Observed;
use crate::config::{Config, ParkMode};
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
                memory: config.container.memory,
                nano_cpus: config.container.nano_cpus,
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
        ..Default::default()
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
        // bgd's record (state, history, the lock, the active config) outlives the container:
        // replacing nginx (an upgrade) keeps the live and parked releases and the history
        binds: vec![format!("{}:/etc/nginx/bgd", lb_state_volume(config))],
        stop_timeout: Some(Duration::from_secs(10)),
        restart: true,
        publish: config
            .lb
            .publish
            .iter()
            .map(|p| (p.host_ip.clone(), p.host_port, p.container_port))
            .collect(),
        ..Default::default()
    }
}

/// The named volume that holds bgd's files in an nginx container bgd creates.
pub fn lb_state_volume(config: &Config) -> String {
    format!("{}-bgd", config.lb.container)
}

/// How a deploy frees the idle color (`target`) for the candidate. The parked release there
/// is set aside: renamed (see `aside_name`) and left running until the candidate is live, so a
/// rejected candidate gives it back and the rollback target survives a failed deploy. Other
/// containers of that color (a candidate a killed run left) and containers of the live color
/// that are not the live release are removed.
pub struct Freeing<'a> {
    pub set_aside: Vec<&'a ContainerInfo>,
    pub remove: Vec<&'a ContainerInfo>,
}

pub fn free_idle_color(obs: &Observed, target: Color) -> Freeing<'_> {
    let state = &obs.state;
    let release_of = |c: &ContainerInfo| c.label(LABEL_RELEASE).map(str::to_string);
    let parked = state
        .idle
        .as_ref()
        .filter(|i| i.role == Role::Parked && i.release.color == target)
        .map(|i| i.release.release.clone());
    let mut freeing = Freeing {
        set_aside: Vec::new(),
        remove: Vec::new(),
    };
    for c in obs.of_color(target) {
        if parked.is_some() && release_of(c) == parked && replica_of(c).is_some() {
            freeing.set_aside.push(c);
        } else {
            freeing.remove.push(c);
        }
    }
    if let Some(live) = &state.live {
        freeing.remove.extend(
            obs.of_color(live.color)
                .into_iter()
                .filter(|c| release_of(c).as_deref() != Some(live.release.as_str())),
        );
    }
    freeing
}

/// The name a parked replica has while a candidate holds its color's names.
pub fn aside_name(app: &str, color: Color, replica: u32) -> String {
    format!("{}-parked", container_name(app, color, replica))
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
                name: c.name.clone(),
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

/// What a deploy would meet on the host, read without changing anything.
pub struct HostFacts<'a> {
    pub image_present: bool,
    pub network_present: bool,
    pub observed: &'a Observed,
    /// nginx understands `keepalive_min_timeout` (assumed when its container does not exist)
    pub keepalive_min_timeout: bool,
}

/// What `deploy --plan` shows: the steps in order, what they would create and remove, and
/// the nginx config the deploy would leave active.
#[derive(Debug, Clone)]
pub struct DeployPlan {
    pub target: Color,
    pub steps: Vec<String>,
    /// Reasons the deploy would stop or misbehave as things stand
    pub warnings: Vec<String>,
    pub create: Vec<ContainerSpec>,
    pub remove: Vec<String>,
    /// The config after the deploy; the new replicas' addresses are placeholders
    /// (`<name>:port`), as Docker assigns them when they start.
    pub nginx_after: RenderInput,
}

/// The plan of `deploy IMAGE` (with `no_switch`, of `deploy --no-switch IMAGE`) on `host`.
pub fn deploy_plan(
    config: &Config,
    image: &str,
    release: &str,
    no_switch: bool,
    host: &HostFacts,
) -> DeployPlan {
    let obs = host.observed;
    let state = &obs.state;
    let lb = &config.lb;
    let mut steps = Vec::new();
    let mut warnings = Vec::new();
    steps.push(if host.image_present {
        format!("use the image {image} (it is on the Docker host)")
    } else {
        format!("pull {image} (it is not on the Docker host)")
    });
    if !host.network_present {
        steps.push(format!("create the network {}", config.network));
    }
    match (&obs.lb, &lb.image) {
        (Some(c), _) if !c.running() => warnings.push(format!(
            "the nginx container {} is {}: the deploy would stop with exit 6 until it is started",
            c.name, c.state
        )),
        (Some(_), _) => {}
        (None, Some(img)) => {
            let published: Vec<String> = lb
                .publish
                .iter()
                .map(|p| {
                    format!(
                        "{}{}{}",
                        p.host_ip.as_deref().map_or(String::new(), |ip| format!("{ip}:")),
                        p.host_port.map_or(String::new(), |hp| format!("{hp}:")),
                        p.container_port
                    )
                })
                .collect();
            steps.push(format!(
                "create the nginx container {} from {img} on {}, publishing {}",
                lb.container,
                config.network,
                if published.is_empty() {
                    "nothing".to_string()
                } else {
                    published.join(", ")
                }
            ));
        }
        (None, None) => warnings.push(format!(
            "there is no nginx container {} and lb.image is not set: the deploy would stop with exit 6",
            lb.container
        )),
    }
    if let Some(h) = &obs.lock {
        warnings.push(format!(
            "the deploy lock is held by {}: the deploy would wait (--lock-wait) or exit 5",
            h.describe()
        ));
    }

    let live = state.live.as_ref();
    let target = live.map_or(Color::Blue, |l| l.color.other());
    let live_pool = live.map(|l| obs.pool(config, l.color, &l.release));
    match live {
        Some(l) => steps.push(format!(
            "{} ({}, release {}) keeps serving live traffic until the switch",
            l.color, l.image, l.release
        )),
        None => steps.push("nothing is live yet: this is the first deploy".to_string()),
    }
    let freeing = free_idle_color(obs, target);
    let names = |cs: &[&ContainerInfo]| cs.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
    let (stale, aside) = (names(&freeing.remove), names(&freeing.set_aside));
    if !stale.is_empty() {
        steps.push(format!(
            "remove containers that are neither live nor parked (left by a killed run, or a candidate): {}",
            stale.join(", ")
        ));
    }
    if let Some(p) = state.idle.as_ref().filter(|_| !aside.is_empty()) {
        steps.push(format!(
            "set the parked release {} ({}) aside, still running: {} (it comes back if the candidate is rejected, and is removed once the candidate is live)",
            p.release.release,
            p.release.image,
            aside.join(", ")
        ));
    }
    let remove: Vec<String> = stale.into_iter().chain(aside).collect();
    let create = replica_specs(config, target, image, release);
    let names: Vec<&str> = create.iter().map(|c| c.name.as_str()).collect();
    steps.push(format!(
        "start {} {target} replica(s) of {image} (release {release}): {}",
        create.len(),
        names.join(", ")
    ));
    steps.push(format!(
        "route the preview listener (port {}, {}) to {target}",
        lb.preview_listen, lb.preview_url
    ));
    let r = &config.readiness;
    steps.push(format!(
        "readiness of every replica: GET {} answers {}, {} time(s) in a row, every {}, all within {}",
        r.path,
        r.expect_status,
        r.successes,
        crate::output::fmt_duration(r.interval),
        crate::output::fmt_duration(r.deadline)
    ));
    if let Some(m) = &config.hooks.migrate {
        steps.push(format!(
            "migrate: run {:?} in a one-off container {}-migrate from {image} (limit {})",
            m.command.join(" "),
            config.app,
            crate::output::fmt_duration(m.timeout)
        ));
        if let Some(l) = live {
            steps.push(format!(
                "compatibility: {} (live) must still pass the {} through {} after the migration",
                l.color,
                if config.smoke.is_empty() {
                    "readiness probe".to_string()
                } else {
                    format!("{} smoke probe(s)", config.smoke.len())
                },
                lb.url
            ));
        }
    }
    if config.smoke.is_empty() {
        steps.push("smoke probes: none configured".to_string());
    } else {
        let probes: Vec<String> = config
            .smoke
            .iter()
            .map(|p| format!("{} ({} {})", p.name, p.method, p.path))
            .collect();
        steps.push(format!(
            "smoke probes through the preview listener: {}",
            probes.join(", ")
        ));
    }
    steps.push(
        "check that the candidate's containers match bgd.yaml (drift) and did not restart"
            .to_string(),
    );
    let placeholder = Pool {
        color: target,
        release: release.to_string(),
        servers: create
            .iter()
            .enumerate()
            .map(|(i, spec)| Server {
                replica: i as u32 + 1,
                name: spec.name.clone(),
                addr: format!("<{}>:{}", spec.name, config.container.port),
            })
            .collect(),
    };
    let generation = obs.generation();
    let nginx_after = if no_switch {
        steps.push(format!(
            "stop there: {target} stays up as the candidate on the preview listener; `bgd switch` promotes it"
        ));
        render_input(
            config,
            generation + 1,
            live_pool.as_ref(),
            Some((&placeholder, Role::Candidate)),
            host.keepalive_min_timeout,
        )
    } else {
        steps.push(format!(
            "switch live traffic to {target}: one validated reload (nginx -t, atomic swap, reload), wait until no old nginx worker remains (drain up to {}), confirm through {}",
            crate::output::fmt_duration(config.switch.drain),
            lb.url
        ));
        let on_failure = match (live, config.switch.auto_rollback) {
            (Some(l), true) => format!("switch back to {} (exit 4)", l.color),
            (Some(_), false) => "stop with exit 7 and the rollback command".to_string(),
            (None, _) => "stop with exit 7 (nothing to go back to)".to_string(),
        };
        steps.push(format!(
            "verify {target} through {} for {}: smoke probes and readiness of every replica; on failure {on_failure}",
            lb.url,
            crate::output::fmt_duration(config.switch.verify)
        ));
        if let Some(l) = live {
            steps.push(match config.park {
                ParkMode::Running => format!(
                    "park {} ({}): it keeps running, `bgd rollback` returns to it",
                    l.color, l.image
                ),
                ParkMode::Stopped => format!(
                    "park {} ({}): stop it after the drain (park.mode: stopped)",
                    l.color, l.image
                ),
            });
        }
        render_input(
            config,
            generation + 2,
            Some(&placeholder),
            live_pool.as_ref().map(|p| (p, Role::Parked)),
            host.keepalive_min_timeout,
        )
    };
    steps.push("record the outcome in the history on the Docker host".to_string());
    DeployPlan {
        target,
        steps,
        warnings,
        create,
        remove,
        nginx_after,
    }
}

/// How the plan shows a container's environment: `env` values unless their names say they
/// are secret, and only the names of `env_file` variables.
pub fn env_display(config: &Config) -> Vec<String> {
    let mut shown: std::collections::BTreeMap<&str, String> = Default::default();
    for (k, _) in &config.container.env_file {
        shown.insert(k, format!("{k}=<from env_file>"));
    }
    for (k, v) in &config.container.env {
        let value = if crate::config::secret_env(k, v) {
            "<secret>".to_string()
        } else {
            v.clone()
        };
        shown.insert(k, format!("{k}={value}"));
    }
    shown.into_values().collect()
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
        assert_eq!(s.binds, vec!["web-lb-bgd:/etc/nginx/bgd".to_string()]);
    }
}
