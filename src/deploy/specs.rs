//! Pure decisions about things on the host: container specs and labels, the pools nginx
//! routes to, the nginx render input, and how a deploy frees the idle color. No I/O, so tests
//! can compare them exactly.

use super::observe::Observed;
use crate::config::Config;
use crate::docker::{ContainerInfo, ContainerSpec};
use crate::model::{
    aside_name, container_name, replica_alias, Color, Pool, Release, Role, Server, LABEL_APP,
    LABEL_COLOR, LABEL_MANAGED, LABEL_RELEASE, LABEL_REPLICA, LABEL_ROLE,
};
use crate::nginx::render::{Features, RenderInput};
use std::collections::HashMap;
use std::time::Duration;

/// The specs of the `replicas` containers of one release. Only the image and the labels that
/// name the color, release and replica differ between colors.
pub fn replica_specs(config: &Config, release: &Release) -> Vec<ContainerSpec> {
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
            labels.insert(LABEL_COLOR.into(), release.color.to_string());
            labels.insert(LABEL_RELEASE.into(), release.release.clone());
            labels.insert(LABEL_REPLICA.into(), n.to_string());
            labels.insert(LABEL_ROLE.into(), "app".into());
            ContainerSpec {
                name: container_name(&config.app, release.color, n),
                image: release.image.clone(),
                env: config.container_env(),
                cmd: config.container.command.clone(),
                entrypoint: None,
                labels,
                network: config.network.clone(),
                aliases: vec![replica_alias(&config.app, &release.release, n)],
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
pub fn migration_spec(config: &Config, release: &Release, command: &[String]) -> ContainerSpec {
    let labels = HashMap::from([
        (LABEL_MANAGED.to_string(), "true".to_string()),
        (LABEL_ROLE.to_string(), "migrate".to_string()),
        ("bgd.migrate-for".to_string(), config.app.clone()),
        (LABEL_RELEASE.to_string(), release.release.clone()),
    ]);
    ContainerSpec {
        name: format!("{}-migrate", config.app),
        image: release.image.clone(),
        env: config.container_env(),
        cmd: Some(command.to_vec()),
        labels,
        network: config.network.clone(),
        binds: config.container.volumes.clone(),
        stop_timeout: Some(Duration::from_secs(5)),
        restart: false,
        ..Default::default()
    }
}

/// The nginx container bgd creates when `lb.container` is absent and `lb.image` is set.
pub fn lb_spec(config: &Config, image: &str) -> ContainerSpec {
    let labels = HashMap::from([
        (LABEL_MANAGED.to_string(), "true".to_string()),
        (LABEL_ROLE.to_string(), "lb".to_string()),
        ("bgd.lb-for".to_string(), config.app.clone()),
    ]);
    // The image runs as it was built (entrypoint script + CMD, or nginx as its ENTRYPOINT):
    // bgd overrides nothing. Old workers are bounded by bgd's install itself, which stops
    // those still busy after `switch.drain` inside the container, even if bgd dies.
    ContainerSpec {
        name: config.lb.container.clone(),
        image: image.to_string(),
        cmd: None,
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

/// The pool nginx routes to for `containers` (of one release): running ones with an address
/// on the app network, by replica number.
pub fn pool_of(config: &Config, release: &Release, containers: &[&ContainerInfo]) -> Pool {
    let mut servers: Vec<Server> = containers
        .iter()
        .filter(|c| c.running())
        .filter_map(|c| {
            let replica = c.replica()?;
            let port = config.container.port;
            let alias = replica_alias(&config.app, &release.release, replica);
            Some(Server {
                replica,
                name: c.name.clone(),
                addr: format!("{}:{port}", c.ip_on(&config.network)?),
                dns: c
                    .has_alias(&config.network, &alias)
                    .then(|| format!("{alias}:{port}")),
            })
        })
        .collect();
    servers.sort_by_key(|s| s.replica);
    Pool {
        color: release.color,
        release: release.release.clone(),
        servers,
    }
}

/// Everything the nginx config depends on: the live pool, the idle one on the preview
/// listener and its role.
pub fn render_input(
    config: &Config,
    generation: u64,
    live: Option<&Pool>,
    preview: Option<(&Pool, Role)>,
    features: Features,
    canary: Option<u8>,
) -> RenderInput {
    // a live release with no running replica stays live (nginx answers 502 for it): dropping
    // it would make nginx's config say nothing is live, and bgd's record disagree
    let live = live.cloned();
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
        features,
        upstream_keepalive_timeout: config.lb.upstream_keepalive_timeout,
        hosts: config.lb.hosts.clone(),
        preview_host: config.lb.preview_host.clone(),
        rehearsal_routes: rehearsal_routes(config),
        mirror: None,
        canary,
        tls: config.lb.tls.as_ref().map(|t| {
            let (certificate, key) = t.files_in_nginx(&config.app);
            crate::nginx::render::TlsRender {
                listen: t.listen,
                certificate,
                key,
                redirect_http: t.redirect_http,
                port_suffix: t.public_port.map(|p| format!(":{p}")).unwrap_or_default(),
                hsts: t.hsts,
                http2: t.http2,
            }
        }),
    }
}

/// The rehearsal's containers, by name: one of the live image and one of the new, on the
/// migrated copy (`hooks.migrate.rehearse`).
pub const REHEARSAL_KEYS: [&str; 2] = ["rehearsal-live", "rehearsal-new"];

pub fn rehearsal_name(config: &Config, key: &str) -> String {
    format!("{}-{key}", config.app)
}

/// The preview listener's routes to the rehearsal's containers (resolved at each request:
/// present in every config when the migration is rehearsed, answering 502 between
/// rehearsals).
fn rehearsal_routes(config: &Config) -> Vec<(String, String)> {
    let rehearsed = config
        .hooks
        .migrate
        .as_ref()
        .is_some_and(|m| m.rehearse.is_some());
    if !rehearsed {
        return Vec::new();
    }
    REHEARSAL_KEYS
        .iter()
        .map(|k| {
            (
                k.to_string(),
                format!("{}:{}", rehearsal_name(config, k), config.container.port),
            )
        })
        .collect()
}

/// How a deploy frees the idle color (`target`) for the candidate. The parked release there
/// is set aside: renamed (`aside_name`) and left running until the candidate is live, so a
/// rejected candidate gives it back and the rollback target survives a failed deploy. Other
/// containers of that color (a candidate a killed run left) and containers of the live color
/// that are not the live release are removed; live containers a killed deploy left under
/// their aside names get their own names back.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Freeing {
    /// The parked release, and its containers
    pub set_aside: Option<(Release, Vec<Aside>)>,
    pub remove: Vec<String>,
    /// (name now, own name)
    pub rename: Vec<(String, String)>,
}

/// A parked replica's names: now, while set aside, and its own (given back).
#[derive(Debug, Clone, PartialEq)]
pub struct Aside {
    pub now: String,
    pub aside: String,
    pub own: String,
}

pub fn free_idle_color(config: &Config, obs: &Observed, target: Color) -> Freeing {
    let state = &obs.state;
    // the parked release, or the one a waiting candidate displaced (kept aside)
    let parked = state
        .idle
        .as_ref()
        .filter(|i| i.role == Role::Parked && i.release.color == target)
        .map(|i| &i.release)
        .or(state.set_aside.as_ref().filter(|r| r.color == target));
    let mut freeing = Freeing::default();
    let mut aside = Vec::new();
    for c in obs.of_color(target) {
        match (parked, c.replica()) {
            (Some(p), Some(n)) if c.is_of(p) => aside.push(Aside {
                now: c.name.clone(),
                aside: aside_name(&config.app, target, n),
                own: container_name(&config.app, target, n),
            }),
            _ => freeing.remove.push(c.name.clone()),
        }
    }
    if let (Some(p), false) = (parked, aside.is_empty()) {
        freeing.set_aside = Some((p.clone(), aside));
    }
    if let Some(live) = &state.live {
        for c in obs.of_color(live.color) {
            if !c.is_of(live) {
                freeing.remove.push(c.name.clone());
            } else if let Some(own) = c
                .replica()
                .map(|n| container_name(&config.app, live.color, n))
            {
                if c.name != own {
                    freeing.rename.push((c.name.clone(), own));
                }
            }
        }
    }
    freeing
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

    fn release(color: Color, image: &str, id: &str) -> Release {
        Release {
            color,
            image: image.into(),
            release: id.into(),
        }
    }

    #[test]
    fn replica_specs_differ_only_by_identity() {
        let c = config();
        let blue = replica_specs(&c, &release(Color::Blue, "web:v1", "r1"));
        let green = replica_specs(&c, &release(Color::Green, "web:v2", "r2"));
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
        assert_eq!(g.aliases, vec!["web-r2-1".to_string()]);
        g.aliases = blue[0].aliases.clone();
        assert_eq!(g, blue[0]);
    }

    #[test]
    fn lb_spec_publishes_and_keeps_the_images_command() {
        let s = lb_spec(&config(), "nginx:1.30");
        assert_eq!(s.name, "web-lb");
        assert_eq!(s.publish[0], (Some("127.0.0.1".into()), Some(8000), 80));
        assert_eq!(s.cmd, None, "the image's own command runs");
        assert_eq!(s.binds, vec!["web-lb-bgd:/etc/nginx/bgd".to_string()]);
    }

    /// A container as Docker would report one of `release`'s replicas, named `name`.
    fn container(name: &str, r: &Release, n: u32) -> ContainerInfo {
        let spec = &replica_specs(&config(), r)[n as usize - 1];
        ContainerInfo {
            id: name.into(),
            name: name.into(),
            image: r.image.clone(),
            labels: spec.labels.clone(),
            state: "running".into(),
            health: None,
            networks: HashMap::from([("web-net".to_string(), format!("10.0.0.{n}"))]),
            aliases: HashMap::from([("web-net".to_string(), spec.aliases.clone())]),
            exit_code: None,
            image_id: "sha256:x".into(),
            restart_count: 0,
            up_for: None,
            settings: Default::default(),
        }
    }

    #[test]
    fn freeing_sets_the_parked_release_aside_and_clears_leftovers() {
        let (v1, v2) = (
            release(Color::Blue, "web:v1", "r1"),
            release(Color::Green, "web:v2", "r2"),
        );
        let stale = release(Color::Blue, "web:v3", "r3");
        let mut obs = Observed::default();
        obs.state.live = Some(v2.clone());
        obs.state.idle = Some(crate::state::Idle {
            release: v1.clone(),
            role: Role::Parked,
        });
        obs.containers = vec![
            container("web-blue-1", &v1, 1),
            container("web-blue-2", &stale, 2),
            container("web-green-1-parked", &v2, 1),
            container("web-green-2", &v2, 2),
        ];
        let f = free_idle_color(&config(), &obs, Color::Blue);
        let aside = Aside {
            now: "web-blue-1".into(),
            aside: "web-blue-1-parked".into(),
            own: "web-blue-1".into(),
        };
        assert_eq!(f.set_aside, Some((v1, vec![aside])));
        assert_eq!(f.remove, vec!["web-blue-2".to_string()]);
        assert_eq!(
            f.rename,
            vec![("web-green-1-parked".to_string(), "web-green-1".to_string())]
        );
        assert_eq!(
            pool_of(&config(), &v2, &obs.containers_of(&v2))
                .servers
                .len(),
            2
        );
    }
}
