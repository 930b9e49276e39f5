//! Where live traffic really goes: the live upstream nginx has (addresses, or names it
//! resolves at run time) against the containers on the app network now. Pure: `status`
//! gathers the inputs. A container that restarted can come back with another address, and
//! another container can take the old one; an nginx that routes by address then sends live
//! traffic to whoever holds it now.

use crate::docker::ContainerInfo;
use crate::model::{Color, Release, LABEL_COLOR, LABEL_RELEASE};

/// One `server` of the live upstream, as written in the active config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// An IPv4 address or a name
    pub host: String,
    pub port: String,
    /// `resolve`: nginx resolves the name at run time (else once, when it loads the config)
    pub resolve: bool,
}

impl Target {
    fn is_address(&self) -> bool {
        self.host.parse::<std::net::Ipv4Addr>().is_ok()
    }
    fn shown(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// The servers of the live color's upstream in `config`: `bgd_<ident>_<color>` (the built-in
/// template's), else `bgd_<ident>_live` (older bgd versions' and custom templates'); `None`
/// when the config has neither.
pub fn live_targets(config: &str, app: &str, color: Color) -> Option<Vec<Target>> {
    let ident = app.replace('-', "_");
    upstream(config, &format!("bgd_{ident}_{color}"))
        .or_else(|| upstream(config, &format!("bgd_{ident}_live")))
}

/// The servers of `upstream NAME { ... }` in `config`.
fn upstream(config: &str, name: &str) -> Option<Vec<Target>> {
    let text: String = config
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut rest = text.as_str();
    let body = loop {
        let at = rest.find("upstream")?;
        rest = &rest[at + "upstream".len()..];
        let block = rest
            .trim_start()
            .strip_prefix(name)
            .map(str::trim_start)
            .and_then(|b| b.strip_prefix('{'));
        if let Some(block) = block {
            break &block[..block.find('}')?];
        }
    };
    Some(
        body.split(';')
            .filter_map(|statement| {
                let mut words = statement.split_whitespace();
                if words.next() != Some("server") {
                    return None;
                }
                let target = words.next()?;
                let (host, port) = target.rsplit_once(':').unwrap_or((target, "80"));
                Some(Target {
                    host: host.to_string(),
                    port: port.to_string(),
                    resolve: words.any(|w| w == "resolve"),
                })
            })
            .collect(),
    )
}

/// What the check found: problems (live traffic can reach something other than the live
/// release: `status` exits 7) and warnings (live replicas that get no traffic).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Findings {
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
}

/// What `check` needs to know about the host now.
pub struct Now<'a> {
    pub app: &'a str,
    pub network: &'a str,
    /// The live release, as bgd's record (and nginx's header) name it
    pub live: &'a Release,
    /// Every container of the app, any state
    pub containers: &'a [ContainerInfo],
    /// Every container on the app network: (name, IPv4 address)
    pub members: &'a [(String, String)],
}

/// Compares the live upstream's `targets` with the containers now.
pub fn check(targets: &[Target], now: &Now) -> Findings {
    let mut found = Findings::default();
    let live = now.live;
    let fix = "`bgd reroute` points nginx at the live replicas where they are now";
    let mut served: Vec<&str> = Vec::new();
    for target in targets {
        if target.is_address() {
            let holder = now.members.iter().find(|(_, ip)| *ip == target.host);
            match holder {
                Some((name, _)) => match now.containers.iter().find(|c| c.name == *name) {
                    Some(c) if c.is_of(live) => served.push(&c.name),
                    Some(c) => found.problems.push(format!(
                        "live traffic to {} reaches {name}, of {} (release {}, {}), not the live {} (release {}): that address changed hands when containers restarted; {fix}",
                        target.shown(),
                        c.label(LABEL_COLOR).unwrap_or("no color"),
                        c.label(LABEL_RELEASE).unwrap_or("?"),
                        c.image,
                        live.color,
                        live.release
                    )),
                    None => found.problems.push(format!(
                        "live traffic to {} reaches {name}, which is not a container of {}: that address changed hands when containers restarted; {fix}",
                        target.shown(),
                        now.app
                    )),
                },
                None => found.problems.push(format!(
                    "nginx routes live traffic to {}, which no container on {} has now: those requests fail, and the next container to start may take the address; {fix}",
                    target.shown(),
                    now.network
                )),
            }
        } else if target.resolve {
            // Docker's DNS answers with the running container that has the alias now
            let holders: Vec<&ContainerInfo> = now
                .containers
                .iter()
                .filter(|c| c.running() && c.has_alias(now.network, &target.host))
                .collect();
            if holders.is_empty() {
                found.warnings.push(format!(
                    "nginx routes live traffic to {}, which no running container answers to now: the other live replicas take its share",
                    target.shown()
                ));
            }
            for c in holders {
                if c.is_of(live) {
                    served.push(&c.name);
                } else {
                    found.problems.push(format!(
                        "live traffic to {} reaches {}, of {} (release {}), not the live {}; {fix}",
                        target.shown(),
                        c.name,
                        c.label(LABEL_COLOR).unwrap_or("no color"),
                        c.label(LABEL_RELEASE).unwrap_or("?"),
                        live.color
                    ));
                }
            }
        } else {
            found.warnings.push(format!(
                "nginx resolved {} once, when it loaded its config: bgd cannot tell which container it reaches now (a custom lb.template without `resolve`?)",
                target.shown()
            ));
        }
    }
    for c in now
        .containers
        .iter()
        .filter(|c| c.is_of(live) && c.running())
    {
        if !served.contains(&c.name.as_str()) {
            found.warnings.push(format!(
                "the live replica {} gets no live traffic: nginx does not route to where it is now; {fix}",
                c.name
            ));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::RunSettings;
    use crate::model::Color;
    use std::collections::HashMap;

    const CONFIG: &str = "# bgd-state: {}\nupstream bgd_web_app_blue {\n    zone bgd_web_app_live 64k;\n    # a comment; server 9.9.9.9:1;\n    server 10.0.0.2:8080 max_fails=0;  # web-app-blue-1\n    server web-app-r1-2:8080 resolve max_fails=0;\n    keepalive 32;\n}\nupstream bgd_web_app_green {\n    server 10.0.0.9:8080;\n}\n";

    fn target(host: &str, resolve: bool) -> Target {
        Target {
            host: host.into(),
            port: "8080".into(),
            resolve,
        }
    }

    #[test]
    fn reads_the_live_upstream_only() {
        assert_eq!(
            live_targets(CONFIG, "web-app", Color::Blue),
            Some(vec![
                target("10.0.0.2", false),
                target("web-app-r1-2", true)
            ])
        );
        assert_eq!(
            live_targets(CONFIG, "web-app", Color::Green).map(|t| t.len()),
            Some(1)
        );
        assert_eq!(live_targets(CONFIG, "web", Color::Blue), None);
        // a config of an older bgd, or a custom template
        let legacy = "upstream bgd_web_live { server 10.0.0.2:80; }";
        assert_eq!(
            live_targets(legacy, "web", Color::Blue).map(|t| t.len()),
            Some(1)
        );
    }

    fn container(name: &str, color: &str, release: &str, ip: &str, alias: &str) -> ContainerInfo {
        ContainerInfo {
            id: name.into(),
            name: name.into(),
            image: format!("web:{release}"),
            labels: HashMap::from([
                (LABEL_COLOR.to_string(), color.to_string()),
                (LABEL_RELEASE.to_string(), release.to_string()),
            ]),
            state: "running".into(),
            health: None,
            networks: HashMap::from([("net".to_string(), ip.to_string())]),
            aliases: HashMap::from([("net".to_string(), vec![alias.to_string()])]),
            exit_code: None,
            image_id: "sha".into(),
            restart_count: 0,
            up_for: None,
            settings: RunSettings::default(),
        }
    }

    fn findings(
        targets: &[Target],
        containers: &[ContainerInfo],
        extra: &[(&str, &str)],
    ) -> Findings {
        let live = Release {
            color: Color::Green,
            image: "web:r2".into(),
            release: "r2".into(),
        };
        let mut members: Vec<(String, String)> = containers
            .iter()
            .map(|c| (c.name.clone(), c.networks["net"].clone()))
            .collect();
        members.extend(extra.iter().map(|(n, ip)| (n.to_string(), ip.to_string())));
        check(
            targets,
            &Now {
                app: "web",
                network: "net",
                live: &live,
                containers,
                members: &members,
            },
        )
    }

    #[test]
    fn addresses_that_changed_hands_are_problems() {
        // green restarted: green-1 now has .5, blue-1 took green-1's old .2
        let cs = [
            container("web-green-1", "green", "r2", "10.0.0.5", "web-r2-1"),
            container("web-blue-1", "blue", "r1", "10.0.0.2", "web-r1-1"),
        ];
        let f = findings(
            &[target("10.0.0.2", false), target("10.0.0.3", false)],
            &cs,
            &[("intruder", "10.0.0.3")],
        );
        assert_eq!(f.problems.len(), 2, "{f:?}");
        assert!(
            f.problems[0].contains("reaches web-blue-1, of blue (release r1"),
            "{f:?}"
        );
        assert!(
            f.problems[1].contains("intruder, which is not a container of web"),
            "{f:?}"
        );
        assert!(f.problems.iter().all(|p| p.contains("`bgd reroute`")));
        assert_eq!(f.warnings.len(), 1, "{f:?}");
        assert!(f.warnings[0].contains("web-green-1 gets no live traffic"));

        let gone = findings(&[target("10.0.0.7", false)], &cs[..1], &[]);
        assert!(
            gone.problems[0].contains("which no container on net has now"),
            "{gone:?}"
        );
    }

    #[test]
    fn names_follow_their_containers() {
        let cs = [
            container("web-green-1", "green", "r2", "10.0.0.5", "web-r2-1"),
            container("web-blue-1", "blue", "r1", "10.0.0.2", "web-r1-1"),
        ];
        let ok = findings(&[target("web-r2-1", true)], &cs, &[]);
        assert_eq!(ok, Findings::default());
        let down = findings(
            &[target("web-r2-1", true), target("web-r2-2", true)],
            &cs,
            &[],
        );
        assert!(down.problems.is_empty(), "{down:?}");
        assert!(down.warnings[0].contains("web-r2-2:8080, which no running container answers to"));
        let wrong = findings(&[target("web-r1-1", true)], &cs, &[]);
        assert!(
            wrong.problems[0].contains("reaches web-blue-1, of blue"),
            "{wrong:?}"
        );
    }
}
