//! Reads the `server` blocks of nginx config text (pure): which ports they listen on, whether
//! they are the default server there, which names they answer. bgd uses it to find servers of
//! the user's that would take requests meant for bgd's listeners.

/// One `server { ... }` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerBlock {
    /// (port, default_server) per `listen` (port 0: a unix socket); a block without `listen`
    /// listens on 80
    pub listens: Vec<(u16, bool)>,
    /// its `server_name`s
    pub names: Vec<String>,
    /// the ports it listens on with `ssl`
    pub ssl: Vec<u16>,
}

impl ServerBlock {
    fn on(&self, ports: &[u16]) -> Vec<(u16, bool)> {
        self.listens
            .iter()
            .copied()
            .filter(|(p, _)| ports.contains(p))
            .collect()
    }
}

/// The `server` blocks of `text` (at any depth: in `http`, in `stream`, or at the top of an
/// included file), comments ignored.
pub fn server_blocks(text: &str) -> Vec<ServerBlock> {
    let code: String = text
        .lines()
        .map(|line| line.split('#').next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut blocks = Vec::new();
    // the names of the enclosing blocks, and the server blocks being read
    let mut stack: Vec<String> = Vec::new();
    let mut open: Vec<ServerBlock> = Vec::new();
    let mut statement = String::new();
    for c in code.chars() {
        match c {
            '{' => {
                let name = statement
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_string();
                if name == "server" {
                    open.push(ServerBlock {
                        listens: Vec::new(),
                        names: Vec::new(),
                        ssl: Vec::new(),
                    });
                }
                stack.push(name);
                statement.clear();
            }
            '}' => {
                if stack.pop().as_deref() == Some("server") {
                    if let Some(mut block) = open.pop() {
                        if block.listens.is_empty() {
                            block.listens.push((80, false));
                        }
                        blocks.push(block);
                    }
                }
                statement.clear();
            }
            ';' => {
                if stack.last().map(String::as_str) == Some("server") {
                    if let Some(current) = open.last_mut() {
                        read_statement(&statement, current);
                    }
                }
                statement.clear();
            }
            c => statement.push(c),
        }
    }
    blocks
}

fn read_statement(statement: &str, block: &mut ServerBlock) {
    let mut words = statement.split_whitespace();
    match words.next() {
        Some("listen") => {
            let Some(addr) = words.next() else { return };
            let params: Vec<&str> = words.collect();
            let default = params
                .iter()
                .any(|w| *w == "default_server" || *w == "default");
            let port = listen_port(addr).unwrap_or(0);
            block.listens.push((port, default));
            if params.contains(&"ssl") && !block.ssl.contains(&port) {
                block.ssl.push(port);
            }
        }
        Some("server_name") => block
            .names
            .extend(words.map(|w| w.trim_matches('"').to_string())),
        _ => {}
    }
}

/// The port of a `listen` address: `80`, `*:80`, `127.0.0.1:8081`, `[::]:80`; an address
/// without a port (`127.0.0.1`, `[::1]`, `localhost`) is 80; a unix socket has none.
fn listen_port(addr: &str) -> Option<u16> {
    if addr.starts_with("unix:") {
        return None;
    }
    if let Ok(port) = addr.parse::<u16>() {
        return Some(port);
    }
    let port = match addr.rsplit_once(']') {
        Some((_, rest)) => rest.strip_prefix(':'),
        None => addr.rsplit_once(':').map(|(_, p)| p),
    };
    match port {
        Some(p) => p.parse().ok(),
        None => Some(80),
    }
}

/// Whether `text` has a server listening on one of `ports`.
pub fn listens_on(text: &str, ports: &[u16]) -> bool {
    server_blocks(text).iter().any(|s| !s.on(ports).is_empty())
}

/// The files of an `nginx -T` dump, other than bgd's own, with a server that would take
/// requests meant for bgd's listeners: one listening on one of `ports` that is the default
/// server there (when bgd's servers are default servers, `by_default`), or that answers one
/// of `hosts` (`localhost`, the hosts bgd's URLs name, `lb.hosts`). A server for another name
/// on the same port (a virtual host) lives beside bgd's.
pub fn clashing_files(dump: &str, ports: &[u16], hosts: &[&str], by_default: bool) -> Vec<String> {
    const FILE: &str = "# configuration file ";
    let mut files = Vec::new();
    for section in dump.split(FILE).skip(1) {
        let (header, text) = section.split_once('\n').unwrap_or((section, ""));
        let path = header.trim_end_matches(':').trim();
        let bgds = path.starts_with("/etc/nginx/bgd/")
            || path
                .rsplit('/')
                .next()
                .is_some_and(|f| f.starts_with("bgd-") && path.contains("/conf.d/"));
        let clashes = server_blocks(text).iter().any(|s| {
            let on = s.on(ports);
            !on.is_empty()
                && ((by_default && on.iter().any(|(_, default)| *default))
                    || s.names
                        .iter()
                        .any(|n| hosts.iter().any(|h| n.eq_ignore_ascii_case(h))))
        });
        if !bgds && clashes && !files.iter().any(|f| f == path) {
            files.push(path.to_string());
        }
    }
    files
}

/// Other bgd apps sharing this nginx (files under `/etc/nginx/bgd/<app>/` of an `nginx -T`
/// dump) whose servers would take requests meant for `app`'s: on `port`, the default server
/// when `app` has no names there (`names` empty; two default servers are an nginx error), or
/// one answering one of `names` (nginx would let the first one win and warn), or one that
/// listens there with TLS when `app` does not, or the other way round (nginx makes a port
/// TLS for every server on it when one says `ssl`). Each: (the other app, what clashes).
pub fn app_clashes(
    dump: &str,
    app: &str,
    wanted: &[(u16, &[String], bool)],
) -> Vec<(String, String)> {
    const FILE: &str = "# configuration file ";
    let mut found: Vec<(String, String)> = Vec::new();
    for section in dump.split(FILE).skip(1) {
        let (header, text) = section.split_once('\n').unwrap_or((section, ""));
        let path = header.trim_end_matches(':').trim();
        let Some(other) = path
            .strip_prefix("/etc/nginx/bgd/")
            .and_then(|rest| rest.split('/').next())
            .filter(|o| *o != app && *o != "logs")
        else {
            continue;
        };
        for block in server_blocks(text) {
            for (port, names, ssl) in wanted {
                let on = block.on(&[*port]);
                if on.is_empty() {
                    continue;
                }
                let theirs = block.ssl.contains(port);
                let clash = if theirs != *ssl {
                    Some(if theirs {
                        format!("it serves port {port} with TLS, where this app serves plain HTTP")
                    } else {
                        format!("it serves port {port} in plain HTTP, where this app serves TLS")
                    })
                } else if names.is_empty() {
                    on.iter()
                        .any(|(_, default)| *default)
                        .then(|| format!("it is the default server of port {port}"))
                } else {
                    block
                        .names
                        .iter()
                        .find(|n| names.iter().any(|w| n.eq_ignore_ascii_case(w)))
                        .map(|n| format!("it answers {n} on port {port}"))
                };
                if let Some(why) = clash {
                    if !found.iter().any(|(o, w)| o == other && *w == why) {
                        found.push((other.to_string(), why));
                    }
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_other_apps_that_would_take_this_apps_requests() {
        let dump = "# configuration file /etc/nginx/bgd/shop/active.conf:\n\
                    server { listen 80; server_name shop.example.com; }\n\
                    server { listen 8081; server_name preview.shop.example.com; }\n\n\
                    # configuration file /etc/nginx/bgd/blog/active.conf:\n\
                    server { listen 80 default_server; server_name _; }\n\n\
                    # configuration file /etc/nginx/bgd/web/active.conf:\n\
                    server { listen 80 default_server; }\n";
        let none: Vec<String> = Vec::new();
        let shop = vec!["shop.example.com".to_string()];
        let other = vec!["other.example.com".to_string()];
        // web (this app) without names: blog is the default server already
        assert_eq!(
            app_clashes(dump, "web", &[(80, &none, false)]),
            [(
                "blog".to_string(),
                "it is the default server of port 80".to_string()
            )]
        );
        // a name another app answers
        assert_eq!(
            app_clashes(dump, "web", &[(80, &shop, false)]),
            [(
                "shop".to_string(),
                "it answers shop.example.com on port 80".to_string()
            )]
        );
        // names of its own live beside both
        assert!(app_clashes(dump, "web", &[(80, &other, false), (8081, &other, false)]).is_empty());
        // its own files never clash with it
        assert!(app_clashes(dump, "shop", &[(80, &shop, false)]).is_empty());
        // TLS on a port another app serves in plain HTTP, and the other way round
        assert_eq!(
            app_clashes(dump, "web", &[(8081, &other, true)]),
            [(
                "shop".to_string(),
                "it serves port 8081 in plain HTTP, where this app serves TLS".to_string()
            )]
        );
        let tls = "# configuration file /etc/nginx/bgd/shop/active.conf:\n\
                   server { listen 80; listen 443 ssl; server_name shop.example.com; }\n";
        assert!(app_clashes(tls, "web", &[(443, &other, true)]).is_empty());
        assert_eq!(app_clashes(tls, "web", &[(443, &other, false)]).len(), 1);
    }

    #[test]
    fn reads_listen_ports_and_names() {
        let stock = "server {\n    listen       80;\n    listen  [::]:80;\n    server_name  localhost;\n    location / { root /usr/share/nginx/html; }\n}\n";
        assert_eq!(
            server_blocks(stock),
            [ServerBlock {
                listens: vec![(80, false), (80, false)],
                names: vec!["localhost".into()],
                ssl: vec![],
            }]
        );
        assert!(listens_on(stock, &[80, 8081]));
        assert!(!listens_on(stock, &[8080, 8081]));
        assert!(listens_on(
            "server { \n listen 127.0.0.1:8081 default_server;\n}",
            &[8081]
        ));
        // no listen: 80; an address alone: 80; a unix socket: none
        assert!(listens_on("server { server_name a; }", &[80]));
        assert!(listens_on("server { listen 127.0.0.1; }", &[80]));
        assert!(listens_on("server { listen [::1]; }", &[80]));
        assert!(!listens_on("server { listen unix:/run/x.sock; }", &[80]));
        assert!(!listens_on("# server { listen 80; }", &[80]));
        // an upstream's `server` lines are not server blocks
        assert!(!listens_on("upstream u { server 10.0.0.1:80; }", &[80]));
        assert!(listens_on("http { server { listen 80; } }", &[80]));
    }

    #[test]
    fn finds_the_files_whose_servers_clash() {
        let dump = "# configuration file /etc/nginx/nginx.conf:\nhttp { include conf.d/*.conf; }\n\n\
                    # configuration file /etc/nginx/conf.d/default.conf:\nserver {\n    listen 80;\n    server_name localhost;\n}\n\n\
                    # configuration file /etc/nginx/conf.d/bgd-web.conf:\ninclude /etc/nginx/bgd/web/active.conf;\n\n\
                    # configuration file /etc/nginx/bgd/web/active.conf:\nserver { listen 80 default_server; }\n\n\
                    # configuration file /etc/nginx/conf.d/shop.conf:\nserver { listen 80; server_name shop.example.com; }\n\n\
                    # configuration file /etc/nginx/conf.d/other.conf:\nserver { listen 9000 default_server; }\n";
        let hosts = ["localhost", "127.0.0.1"];
        // the stock localhost server clashes; a virtual host for another name does not
        assert_eq!(
            clashing_files(dump, &[80, 8081], &hosts, true),
            ["/etc/nginx/conf.d/default.conf"]
        );
        assert!(clashing_files(dump, &[8000, 8001], &hosts, true).is_empty());
        assert_eq!(
            clashing_files(dump, &[9000], &hosts, true),
            ["/etc/nginx/conf.d/other.conf"]
        );
        // a server without a name on bgd's port is no default unless it says so
        let plain =
            "# configuration file /etc/nginx/conf.d/a.conf:\nserver { listen 127.0.0.1; }\n";
        assert!(clashing_files(plain, &[80], &hosts, true).is_empty());
        let default = "# configuration file /etc/nginx/conf.d/a.conf:\nserver { listen 127.0.0.1 default; }\n";
        assert_eq!(
            clashing_files(default, &[80], &hosts, true),
            ["/etc/nginx/conf.d/a.conf"]
        );
        // with names of its own, bgd's server lives beside another default server
        assert!(clashing_files(default, &[80], &["shop.example.com"], false).is_empty());
    }
}
