//! Renders the nginx config: pure, no I/O. The built-in template is embedded at build time;
//! `lb.template` replaces it. bgd prepends a one-line header of its own so it can read back
//! what it wrote whatever the template does.

use crate::model::{Color, Pool, Server};
use anyhow::Result;
use serde::Serialize;

pub const BUILTIN_TEMPLATE: &str = include_str!("../../templates/nginx.conf.tera");
const HEADER_PREFIX: &str = "# bgd-state: ";
/// Docker's DNS on user-defined networks, which resolves containers' names and aliases.
pub const DOCKER_DNS: &str = "127.0.0.11";

/// What an nginx version can do that bgd's config relies on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    /// `keepalive_min_timeout` (>= 1.27.4): closes the keep-alive race of a reload
    pub keepalive_min_timeout: bool,
    /// `server NAME resolve` in an upstream (>= 1.27.3): nginx follows a container that
    /// restarts with another address
    pub resolve: bool,
    /// `http2 on;` (>= 1.25.1); older versions say `http2` on the `listen`
    pub http2_directive: bool,
}

impl Features {
    /// What a version has; assumed whole when nginx has not run yet (it is read then).
    pub const ALL: Features = Features {
        keepalive_min_timeout: true,
        resolve: true,
        http2_directive: true,
    };

    pub fn of(version: (u32, u32, u32)) -> Features {
        Features {
            keepalive_min_timeout: version >= (1, 27, 4),
            resolve: version >= (1, 27, 3),
            http2_directive: version >= (1, 25, 1),
        }
    }
}

/// Everything the config depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderInput {
    pub app: String,
    pub generation: u64,
    pub listen: u16,
    pub preview_listen: u16,
    pub live: Option<Pool>,
    pub preview: Option<Pool>,
    /// "candidate" or "parked": what the preview listener's color is
    pub idle_role: Option<String>,
    /// Replicas reachable one by one through the preview listener (any color, running).
    pub probe_routes: Vec<(crate::model::Color, Server)>,
    /// What this nginx can do
    pub features: Features,
    /// nginx's idle limit for connections to the replicas
    pub upstream_keepalive_timeout: std::time::Duration,
    /// The live server's names (`lb.hosts`); empty: it is the default server
    pub hosts: Vec<String>,
    /// The preview server's name, with `hosts`
    pub preview_host: Option<String>,
    /// HTTPS on the live server
    pub tls: Option<TlsRender>,
    /// With a rehearsed migration: (probe key, `name:port`) of the rehearsal's containers
    pub rehearsal_routes: Vec<(String, String)>,
    /// A copy of some live requests to the candidate on the preview listener (`warmup.mirror`)
    pub mirror: Option<MirrorRender>,
    /// The share of live traffic (1..=99 percent) the candidate on the preview listener
    /// takes (a canary); rendered only while both colors have running replicas
    pub canary: Option<u8>,
}

/// Live requests copied to the candidate (`warmup.mirror`), as the template sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MirrorRender {
    /// 1..=100 percent of the requests whose method is in `methods`
    pub share: u8,
    pub methods: Vec<String>,
    /// How long nginx waits for the candidate's answer to a copy
    pub timeout: std::time::Duration,
}

/// Where nginx writes what bgd reads back of live traffic while a mirror or a canary runs:
/// one file per generation, so each window starts empty.
pub fn traffic_log(app: &str, generation: u64) -> String {
    format!("{LOG_DIR}/{app}-traffic-{generation}.log")
}

/// bgd's log directory in the nginx container.
pub const LOG_DIR: &str = "/etc/nginx/bgd/logs";

/// The canary's share as nginx tests it: a regex matching the client's bucket ("00".."99")
/// when it is below `share`.
pub fn canary_buckets(share: u8) -> String {
    let share = share.min(100);
    let (tens, ones) = (share / 10, share % 10);
    let mut alternatives = Vec::new();
    if tens == 10 {
        alternatives.push("[0-9][0-9]".to_string());
    } else {
        if tens > 0 {
            alternatives.push(if tens == 1 {
                "0[0-9]".to_string()
            } else {
                format!("[0-{}][0-9]", tens - 1)
            });
        }
        if ones > 0 {
            alternatives.push(if ones == 1 {
                format!("{tens}0")
            } else {
                format!("{tens}[0-{}]", ones - 1)
            });
        }
    }
    format!("~^({})$", alternatives.join("|"))
}

/// The live server's HTTPS, as the template sees it (`tls`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsRender {
    pub listen: u16,
    /// Paths in the nginx container
    pub certificate: String,
    pub key: String,
    pub redirect_http: bool,
    /// `:8443` when HTTPS is published on a port other than 443, for the redirect
    pub port_suffix: String,
    pub hsts: bool,
    /// HTTP/2 beside HTTP/1.1
    pub http2: bool,
}

#[derive(Serialize)]
struct ProbeRoute<'a> {
    key: String,
    color: &'a str,
    /// `ip:port` now
    addr: &'a str,
    /// where the per-replica route sends a probe: its name when it has one (resolved at each
    /// request), else its address
    target: &'a str,
}

/// A pool as templates see it.
#[derive(Serialize)]
struct PoolContext<'a> {
    color: Color,
    release: &'a str,
    servers: Vec<ServerContext<'a>>,
}

#[derive(Serialize)]
struct ServerContext<'a> {
    replica: u32,
    name: &'a str,
    /// `ip:port` now
    addr: &'a str,
    /// what the upstream routes to: `alias:port` with `resolve` when nginx can, else `addr`
    target: &'a str,
    resolve: bool,
}

#[derive(Serialize)]
struct Context<'a> {
    app: &'a str,
    ident: String,
    generation: u64,
    listen: u16,
    preview_listen: u16,
    live: Option<PoolContext<'a>>,
    preview: Option<PoolContext<'a>>,
    idle_role: &'a str,
    probe_routes: Vec<ProbeRoute<'a>>,
    keepalive_min_timeout: bool,
    resolve: bool,
    resolver: &'a str,
    upstream_keepalive_timeout: String,
    hosts: &'a [String],
    preview_host: Option<&'a str>,
    tls: Option<&'a TlsRender>,
    http2_directive: bool,
    rehearsal_routes: Vec<RehearsalRoute<'a>>,
    mirror: Option<MirrorContext<'a>>,
    canary: Option<CanaryContext>,
    /// The file nginx logs live traffic to while a mirror or canary runs, else null
    traffic_log: Option<String>,
    flip: Option<FlipContext>,
}

/// The mirror as templates see it: `share`, `methods`, `request_body` (whether a listed
/// method may carry one), `timeout` (nginx's notation).
#[derive(Serialize)]
struct MirrorContext<'a> {
    color: Color,
    share: u8,
    methods: &'a [String],
    request_body: bool,
    timeout: String,
}

/// A canary as templates see it: the candidate's `color`, the stable `stable` color, its
/// `share`, and `buckets`, the regex of the client buckets it takes.
#[derive(Serialize)]
struct CanaryContext {
    color: Color,
    stable: Color,
    share: u8,
    buckets: String,
}

/// The rollback flag as templates see it (`flip`): while `flag` exists, `live` (the preview
/// pool's color) takes live traffic and `idle` (the live pool's) is parked; `*_servers` are
/// what those colors' upstreams route to, comma-separated.
#[derive(Serialize)]
struct FlipContext {
    flag: String,
    /// Created with the flag, never removed by a rollback: the idle release has been live
    marker: String,
    live: Color,
    idle: Color,
    live_servers: String,
    idle_servers: String,
}

/// The file whose existence flips live traffic to the parked color under config
/// `generation` (`bgd rollback` without a reload). One per generation: a new config never
/// reads an older one's flag, so the install that replaces a flipped config cannot route a
/// request by a flag it is about to remove.
pub fn flip_flag(app: &str, generation: u64) -> String {
    format!("{}/{app}/{}", super::BGD_DIR, flip_name(generation))
}

/// The flag's name in bgd's directory for the app.
pub fn flip_name(generation: u64) -> String {
    format!("flip-{generation}")
}

/// The name of the flag's marker, which raising the flag creates and lowering it leaves:
/// the idle release of that config has been live.
pub fn marker_name(generation: u64) -> String {
    format!("promoted-{generation}")
}

/// What a pool's upstream routes to (`name:port` nginx resolves, else `ip:port`), as the
/// config's `X-Bgd-Idle-Servers` lists it: sorted, comma-separated.
pub fn server_list<'a>(addrs: impl Iterator<Item = &'a str>) -> String {
    let mut v: Vec<&str> = addrs.collect();
    v.sort_unstable();
    v.join(",")
}

#[derive(Serialize)]
struct RehearsalRoute<'a> {
    key: &'a str,
    target: &'a str,
}

fn pool_context(pool: &Pool, resolve: bool) -> PoolContext<'_> {
    PoolContext {
        color: pool.color,
        release: &pool.release,
        servers: pool
            .servers
            .iter()
            .map(|s| {
                let dns = s.dns.as_deref().filter(|_| resolve);
                ServerContext {
                    replica: s.replica,
                    name: &s.name,
                    addr: &s.addr,
                    target: dns.unwrap_or(&s.addr),
                    resolve: dns.is_some(),
                }
            })
            .collect(),
    }
}

/// What bgd reads back from the first line of a config it wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Header {
    pub app: String,
    pub generation: u64,
    pub live: Option<String>,
    pub preview: Option<String>,
    /// The releases routed, and the preview's role (absent in configs of older bgd versions)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_release: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_release: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_role: Option<String>,
    /// How many replicas of the live release the config routes to (0: none ran)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_servers: Option<usize>,
    /// The canary's share of live traffic, while one runs
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<u8>,
    /// The share of live requests copied to the candidate, while a mirror runs
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<u8>,
    /// The rollback flag's name (`flip-GENERATION`) when the config routes by one: while
    /// that file exists in bgd's directory, live and preview are the other way round
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flip: Option<String>,
    /// How many replicas of the preview's release the config routes to
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_servers: Option<usize>,
}

impl Header {
    /// What the config routes when its flag is `raised`: live and preview swapped (the
    /// preview's role stays as written; `Observed::header` makes a candidate whose flag was
    /// ever raised parked).
    pub fn flipped(self, raised: bool) -> Header {
        if !raised || self.flip.is_none() {
            return self;
        }
        Header {
            live: self.preview,
            preview: self.live,
            live_release: self.preview_release,
            preview_release: self.live_release,
            live_servers: self.preview_servers,
            preview_servers: self.live_servers,
            ..self
        }
    }
}

/// The template in force and how messages name it: `lb.template` (its path and text), else
/// the built-in one.
pub fn template_for(custom: Option<&(std::path::PathBuf, String)>) -> (&str, String) {
    match custom {
        Some((path, text)) => (text.as_str(), format!("the template {}", path.display())),
        None => (BUILTIN_TEMPLATE, "the built-in template".to_string()),
    }
}

/// Checks that a template parses, without rendering it.
pub fn check_template(template: &str) -> Result<()> {
    let mut tera = tera::Tera::default();
    tera.add_raw_template("nginx.conf", template)
        .map_err(|e| anyhow::anyhow!("{}", tera_chain(&e)))?;
    Ok(())
}

fn tera_chain(e: &tera::Error) -> String {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

pub fn render(template: &str, input: &RenderInput) -> Result<String> {
    // both need the candidate's replicas (and a canary the live ones): a color with none
    // running gets nothing
    let candidate = input
        .preview
        .as_ref()
        .filter(|p| !p.servers.is_empty() && input.idle_role.as_deref() == Some("candidate"));
    let live_runs = input.live.as_ref().is_some_and(|p| !p.servers.is_empty());
    let mirror = match (&input.mirror, candidate) {
        (Some(m), Some(c)) if live_runs => Some(MirrorContext {
            color: c.color,
            share: m.share.clamp(1, 100),
            methods: &m.methods,
            request_body: m.methods.iter().any(|m| m != "GET" && m != "HEAD"),
            timeout: nginx_duration(m.timeout),
        }),
        _ => None,
    };
    let canary = match (input.canary, candidate, &input.live) {
        (Some(share), Some(c), Some(live)) if live_runs && (1..=99).contains(&share) => {
            Some(CanaryContext {
                color: c.color,
                stable: live.color,
                share,
                buckets: canary_buckets(share),
            })
        }
        _ => None,
    };
    let traffic_log =
        (mirror.is_some() || canary.is_some()).then(|| traffic_log(&input.app, input.generation));
    // a parked color (or a candidate) beside a live one, both running, nothing else routed:
    // `bgd rollback` (and a deploy's switch) flips between them with a file, no reload
    let parked = input.preview.as_ref().filter(|p| {
        !p.servers.is_empty() && matches!(input.idle_role.as_deref(), Some("parked" | "candidate"))
    });
    let flip = match (&input.live, parked) {
        (Some(live), Some(parked)) if live_runs && mirror.is_none() && canary.is_none() => {
            // what each upstream routes to: names nginx resolves, else addresses
            let resolve = input.features.resolve;
            let addrs = |p: &Pool| {
                server_list(p.servers.iter().map(|s| {
                    s.dns
                        .as_deref()
                        .filter(|_| resolve)
                        .unwrap_or(s.addr.as_str())
                }))
            };
            Some(FlipContext {
                flag: flip_flag(&input.app, input.generation),
                marker: format!(
                    "{}/{}/{}",
                    super::BGD_DIR,
                    input.app,
                    marker_name(input.generation)
                ),
                live: parked.color,
                idle: live.color,
                live_servers: addrs(parked),
                idle_servers: addrs(live),
            })
        }
        _ => None,
    };
    let flag = flip.as_ref().map(|f| f.flag.clone());
    let canary_share = canary.as_ref().map(|c| c.share);
    let mirror_share = mirror.as_ref().map(|m| m.share);
    let ctx = Context {
        mirror,
        canary,
        traffic_log,
        flip,
        app: &input.app,
        ident: input.app.replace('-', "_"),
        generation: input.generation,
        listen: input.listen,
        preview_listen: input.preview_listen,
        live: input
            .live
            .as_ref()
            .map(|p| pool_context(p, input.features.resolve)),
        preview: input
            .preview
            .as_ref()
            .map(|p| pool_context(p, input.features.resolve)),
        idle_role: input.idle_role.as_deref().unwrap_or("none"),
        probe_routes: input
            .probe_routes
            .iter()
            .map(|(color, s)| ProbeRoute {
                key: s.probe_key(*color),
                color: color.as_str(),
                addr: &s.addr,
                target: s.dns.as_deref().unwrap_or(&s.addr),
            })
            .collect(),
        keepalive_min_timeout: input.features.keepalive_min_timeout,
        resolve: input.features.resolve,
        resolver: DOCKER_DNS,
        upstream_keepalive_timeout: nginx_duration(input.upstream_keepalive_timeout),
        hosts: &input.hosts,
        preview_host: input.preview_host.as_deref(),
        tls: input.tls.as_ref(),
        http2_directive: input.features.http2_directive,
        rehearsal_routes: input
            .rehearsal_routes
            .iter()
            .map(|(key, target)| RehearsalRoute { key, target })
            .collect(),
    };
    let context = tera::Context::from_serialize(&ctx)?;
    let mut tera = tera::Tera::default();
    tera.add_raw_template("nginx.conf", template)
        .map_err(|e| anyhow::anyhow!("{}", tera_chain(&e)))?;
    let body = tera
        .render("nginx.conf", &context)
        .map_err(|e| anyhow::anyhow!("{}", tera_chain(&e)))?;
    let header = Header {
        app: input.app.clone(),
        generation: input.generation,
        live: input.live.as_ref().map(|p| p.color.to_string()),
        preview: input.preview.as_ref().map(|p| p.color.to_string()),
        live_release: input.live.as_ref().map(|p| p.release.clone()),
        preview_release: input.preview.as_ref().map(|p| p.release.clone()),
        preview_role: input.idle_role.clone(),
        live_servers: input.live.as_ref().map(|p| p.servers.len()),
        canary: canary_share,
        mirror: mirror_share,
        // only when the template uses the flag (a custom one may not)
        flip: flag
            .filter(|f| body.contains(f.as_str()))
            .map(|_| flip_name(input.generation)),
        preview_servers: input.preview.as_ref().map(|p| p.servers.len()),
    };
    let header = serde_json::to_string(&header)?;
    Ok(format!(
        "{HEADER_PREFIX}{header}\n# Written by bgd for app {app}. Do not edit: bgd replaces this file on every switch.\n{body}\n",
        app = input.app,
        body = body.trim_matches('\n')
    ))
}

/// A duration as nginx writes it: `2s`, or `1500ms` when not whole seconds.
fn nginx_duration(d: std::time::Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Reads bgd's header back from a config file it wrote.
pub fn read_header(config: &str) -> Option<Header> {
    let first = config.lines().next()?;
    serde_json::from_str(first.strip_prefix(HEADER_PREFIX)?).ok()
}

/// Parses `nginx version: nginx/1.30.6` (what `nginx -v` prints).
pub fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let v = text.split("nginx/").nth(1)?;
    let v: String = v
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
    Some((
        parts.next()??,
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(color: Color, release: &str, ips: &[&str]) -> Pool {
        Pool {
            color,
            release: release.into(),
            servers: ips
                .iter()
                .enumerate()
                .map(|(i, ip)| Server {
                    replica: i as u32 + 1,
                    name: format!("web-{color}-{}", i + 1),
                    addr: format!("{ip}:8080"),
                    // the first replica of each color was made by an older bgd: no alias
                    dns: (i > 0).then(|| format!("web-app-{release}-{}:8080", i + 1)),
                })
                .collect(),
        }
    }

    fn input() -> RenderInput {
        let live = pool(Color::Blue, "r1", &["172.18.0.3", "172.18.0.4"]);
        let preview = pool(Color::Green, "r2", &["172.18.0.5", "172.18.0.6"]);
        let mut probe_routes: Vec<(Color, Server)> = live
            .servers
            .iter()
            .map(|s| (Color::Blue, s.clone()))
            .collect();
        probe_routes.extend(preview.servers.iter().map(|s| (Color::Green, s.clone())));
        RenderInput {
            app: "web-app".into(),
            generation: 7,
            listen: 80,
            preview_listen: 8081,
            live: Some(live),
            preview: Some(preview),
            idle_role: Some("parked".into()),
            probe_routes,
            features: Features::ALL,
            upstream_keepalive_timeout: std::time::Duration::from_secs(1),
            hosts: Vec::new(),
            preview_host: None,
            tls: None,
            rehearsal_routes: Vec::new(),
            mirror: None,
            canary: None,
        }
    }

    /// Compares with tests/snapshots/NAME; `BGD_UPDATE_SNAPSHOTS=1` rewrites it (review the diff).
    fn snapshot(name: &str, text: &str) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/snapshots")
            .join(name);
        if std::env::var_os("BGD_UPDATE_SNAPSHOTS").is_some() {
            std::fs::write(&path, text).unwrap();
        }
        let expected = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, expected, "{name} changed; rendered:\n{text}");
    }

    /// Snapshot of the built-in template with a live and an idle color.
    #[test]
    fn snapshot_live_and_preview() {
        let text = render(BUILTIN_TEMPLATE, &input()).unwrap();
        snapshot("nginx-live-preview.conf", &text);
    }

    /// A live release none of whose replicas runs stays live: nginx answers 502 for it.
    #[test]
    fn a_live_release_without_replicas_stays_live() {
        let mut i = input();
        if let Some(live) = i.live.as_mut() {
            live.servers.clear();
        }
        let text = render(BUILTIN_TEMPLATE, &i).unwrap();
        let header = read_header(&text).unwrap();
        assert_eq!(header.live.as_deref(), Some("blue"));
        assert_eq!(header.live_servers, Some(0));
        assert!(text.contains("return 502 \"no replica of the live release of web-app is running"));
        assert!(!text.contains("upstream bgd_web_app_blue"), "{text}");
        assert!(text.contains("upstream bgd_web_app_green"), "{text}");
    }

    /// Snapshot with nothing live yet (first deploy, before the switch) and an old nginx.
    #[test]
    fn snapshot_nothing_live() {
        let mut i = input();
        i.live = None;
        i.generation = 1;
        i.features = Features::of((1, 22, 1));
        i.probe_routes.retain(|(c, _)| *c == Color::Green);
        let text = render(BUILTIN_TEMPLATE, &i).unwrap();
        snapshot("nginx-nothing-live.conf", &text);
    }

    /// Snapshot with host names: the live and preview servers answer those names only, so
    /// other apps' servers can share the ports.
    #[test]
    fn snapshot_hosts() {
        let mut i = input();
        i.hosts = vec!["shop.example.com".into(), "www.shop.example.com".into()];
        i.preview_host = Some("preview.shop.example.com".into());
        let text = render(BUILTIN_TEMPLATE, &i).unwrap();
        assert!(!text.contains("default_server"), "{text}");
        snapshot("nginx-hosts.conf", &text);
    }

    /// Snapshot with HTTPS beside plain HTTP, which redirects; HSTS over HTTPS only.
    #[test]
    fn snapshot_tls() {
        let mut i = input();
        i.hosts = vec!["shop.example.com".into()];
        i.preview_host = Some("preview.shop.example.com".into());
        i.tls = Some(TlsRender {
            listen: 443,
            certificate: "/etc/nginx/bgd/web-app/tls/0123456789abcdef.crt".into(),
            key: "/etc/nginx/bgd/web-app/tls/0123456789abcdef.key".into(),
            redirect_http: true,
            port_suffix: ":8443".into(),
            hsts: true,
            http2: true,
        });
        let text = render(BUILTIN_TEMPLATE, &i).unwrap();
        snapshot("nginx-tls.conf", &text);
        // an nginx before 1.25.1 says http2 on the listen
        i.features = Features::of((1, 24, 0));
        let old = render(BUILTIN_TEMPLATE, &i).unwrap();
        assert!(old.contains("listen 443 ssl http2;"), "{old}");
        assert!(!old.contains("http2 on;"), "{old}");
        // without the options: no redirect, no HSTS, the default server of both ports
        i.hosts.clear();
        i.preview_host = None;
        if let Some(t) = i.tls.as_mut() {
            t.redirect_http = false;
            t.hsts = false;
        }
        let plain = render(BUILTIN_TEMPLATE, &i).unwrap();
        assert!(
            plain.contains("listen 443 ssl default_server http2;"),
            "{plain}"
        );
        assert!(
            !plain.contains("return 308") && !plain.contains("Strict-Transport"),
            "{plain}"
        );
    }

    /// Snapshot with a mirror: 10% of live GET/HEAD requests copied to the candidate, and the
    /// traffic log bgd reads back.
    #[test]
    fn snapshot_mirror() {
        let mut i = input();
        i.idle_role = Some("candidate".into());
        i.mirror = Some(MirrorRender {
            share: 10,
            methods: vec!["GET".into(), "HEAD".into()],
            timeout: std::time::Duration::from_secs(5),
        });
        let text = render(BUILTIN_TEMPLATE, &i).unwrap();
        assert_eq!(read_header(&text).and_then(|h| h.mirror), Some(10));
        assert!(text.contains("mirror_request_body off;"), "{text}");
        assert!(
            text.contains("access_log /etc/nginx/bgd/logs/web-app-traffic-7.log"),
            "{text}"
        );
        snapshot("nginx-mirror.conf", &text);
        // all of the requests, POST included: no sampling, the body mirrored too
        i.mirror = Some(MirrorRender {
            share: 100,
            methods: vec!["GET".into(), "POST".into()],
            timeout: std::time::Duration::from_millis(1500),
        });
        let all = render(BUILTIN_TEMPLATE, &i).unwrap();
        assert!(!all.contains("split_clients"), "{all}");
        assert!(all.contains("\"1:POST\" 1;") && all.contains("mirror_request_body on;"));
        assert!(all.contains("proxy_read_timeout 1500ms;"), "{all}");
        // a parked release is never mirrored to, and nothing is logged then
        i.idle_role = Some("parked".into());
        let parked = render(BUILTIN_TEMPLATE, &i).unwrap();
        assert!(
            !parked.contains("mirror")
                && !parked.contains("access_log /etc/nginx/bgd/logs/web-app-traffic")
        );
    }

    /// Snapshot with a canary: 25% of live clients on the candidate, sticky by cookie.
    #[test]
    fn snapshot_canary() {
        let mut i = input();
        i.idle_role = Some("candidate".into());
        i.canary = Some(25);
        let text = render(BUILTIN_TEMPLATE, &i).unwrap();
        assert_eq!(read_header(&text).and_then(|h| h.canary), Some(25));
        snapshot("nginx-canary.conf", &text);
        // no candidate replica running: no split, all of live traffic stays on blue
        if let Some(p) = i.preview.as_mut() {
            p.servers.clear();
        }
        let text = render(BUILTIN_TEMPLATE, &i).unwrap();
        assert!(
            !text.contains("bgd_canary") && !text.contains("$bgd_web_app_side"),
            "{text}"
        );
        assert_eq!(read_header(&text).and_then(|h| h.canary), None);
    }

    /// Apps share one nginx, and an app's variables are `$bgd_<ident>_<suffix>` with `-` in
    /// its name made `_`: no suffix may end with `_` and another suffix, or the app named
    /// `<app>-<x>` would define the variable `<app>` uses (nginx lets a later map replace it).
    #[test]
    fn no_variable_of_one_app_is_another_apps() {
        let mut variants = Vec::new();
        let mut i = input();
        variants.push(render(BUILTIN_TEMPLATE, &i).unwrap());
        i.hosts = vec!["shop.example.com".into()];
        i.tls = Some(TlsRender {
            listen: 443,
            certificate: "/c.crt".into(),
            key: "/c.key".into(),
            redirect_http: true,
            port_suffix: String::new(),
            hsts: true,
            http2: true,
        });
        variants.push(render(BUILTIN_TEMPLATE, &i).unwrap());
        i.idle_role = Some("candidate".into());
        i.canary = Some(25);
        variants.push(render(BUILTIN_TEMPLATE, &i).unwrap());
        i.canary = None;
        i.mirror = Some(MirrorRender {
            share: 10,
            methods: vec!["GET".into()],
            timeout: std::time::Duration::from_secs(5),
        });
        variants.push(render(BUILTIN_TEMPLATE, &i).unwrap());
        let mut suffixes = std::collections::BTreeSet::new();
        for text in &variants {
            for part in text.split("$bgd_web_app_").skip(1) {
                let suffix: String = part
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                suffixes.insert(suffix);
            }
        }
        assert!(suffixes.len() > 10, "{suffixes:?}");
        for a in &suffixes {
            for b in &suffixes {
                assert!(
                    !a.ends_with(&format!("_{b}")),
                    "$bgd_X_{a} is app X-{}'s $bgd_..._{b}",
                    a.trim_end_matches(b.as_str()).trim_end_matches('_')
                );
            }
        }
    }

    #[test]
    fn canary_buckets_cover_exactly_the_share() {
        for share in 1..=100u8 {
            let pattern = canary_buckets(share);
            let body = pattern.trim_start_matches("~^(").trim_end_matches(")$");
            let covered = (0..100)
                .filter(|b| {
                    let b = format!("{b:02}");
                    body.split('|').any(|alt| class_match(alt, &b))
                })
                .count();
            assert_eq!(covered, share as usize, "{share}: {pattern}");
        }
    }

    /// Matches a two-character pattern of digits and `[a-b]` classes (what `canary_buckets`
    /// writes) against a bucket.
    fn class_match(pattern: &str, bucket: &str) -> bool {
        let mut classes = Vec::new();
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            if c == '[' {
                let lo = chars.next().unwrap();
                chars.next();
                let hi = chars.next().unwrap();
                chars.next();
                classes.push((lo, hi));
            } else {
                classes.push((c, c));
            }
        }
        classes.len() == 2
            && bucket
                .chars()
                .zip(classes)
                .all(|(b, (lo, hi))| lo <= b && b <= hi)
    }

    #[test]
    fn header_round_trip() {
        let text = render(BUILTIN_TEMPLATE, &input()).unwrap();
        let h = read_header(&text).unwrap();
        assert_eq!(h.generation, 7);
        assert_eq!(h.live.as_deref(), Some("blue"));
        assert_eq!(h.preview.as_deref(), Some("green"));
        assert_eq!(h.live_release.as_deref(), Some("r1"));
        assert_eq!(h.preview_role.as_deref(), Some("parked"));
        // a config written by an older bgd: no releases, no role
        let old = r#"# bgd-state: {"app":"web","generation":3,"live":"blue","preview":null}"#;
        assert_eq!(read_header(old).map(|h| h.live_release), Some(None));
        assert_eq!(read_header("server {}"), None);
    }

    #[test]
    fn broken_template_is_an_error() {
        assert!(check_template("{% if %}").is_err());
        assert!(render("{{ nope.field }}", &input()).is_err());
    }

    #[test]
    fn versions() {
        assert_eq!(
            parse_version("nginx version: nginx/1.30.6\n"),
            Some((1, 30, 6))
        );
        assert_eq!(
            parse_version("nginx version: nginx/1.22.1"),
            Some((1, 22, 1))
        );
        assert_eq!(parse_version("garbage"), None);
        assert_eq!(Features::of((1, 27, 4)), Features::ALL);
        let f = Features::of((1, 27, 3));
        assert!(f.resolve && !f.keepalive_min_timeout);
        let f = Features::of((1, 22, 1));
        assert!(!f.resolve && !f.keepalive_min_timeout && !f.http2_directive);
        assert!(Features::of((1, 25, 1)).http2_directive);
    }
}
