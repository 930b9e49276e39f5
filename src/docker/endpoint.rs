//! Where the Docker daemon is, resolved as the docker CLI resolves it: `--context NAME`, else
//! `DOCKER_HOST` (with `DOCKER_TLS_VERIFY`/`DOCKER_CERT_PATH`), else `DOCKER_CONTEXT`, else the
//! current context in `$DOCKER_CONFIG/config.json` (default `~/.docker`), else the local
//! socket. A context is read from the CLI's store: `contexts/meta/<sha256(name)>/meta.json`
//! for its host, `contexts/tls/<sha256(name)>/docker/{ca,cert,key}.pem` for its TLS material.

use std::path::{Path, PathBuf};

/// The docker CLI's name for the endpoint `DOCKER_HOST` or the local socket make.
pub const DEFAULT_CONTEXT: &str = "default";
const LOCAL_SOCKET: &str = "unix:///var/run/docker.sock";

/// A daemon to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `unix://...`, `tcp://...`, `ssh://...`
    pub host: String,
    /// Client certificate and CA, for `tcp://` with TLS
    pub tls: Option<Tls>,
    /// Where it came from, for messages: `DOCKER_HOST`, `context "prod"`, `the local socket`
    pub source: String,
}

/// TLS material for a `tcp://` daemon that verifies its clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The endpoint, and a warning when one setting overrode another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub endpoint: Endpoint,
    pub warning: Option<String>,
}

/// The environment the resolution reads (a function, so tests can give their own).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

fn var(env: Env, name: &str) -> Option<String> {
    env(name).filter(|v| !v.is_empty())
}

/// The docker CLI's configuration directory: `DOCKER_CONFIG`, else `~/.docker`.
pub fn config_dir(env: Env) -> Option<PathBuf> {
    var(env, "DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| var(env, "HOME").map(|h| Path::new(&h).join(".docker")))
}

/// Resolves the endpoint for `--context` (`flag`) and the environment. `Err` is a message for
/// a usage error (exit 2): a context that does not exist or cannot be read.
pub fn resolve(flag: Option<&str>, env: Env) -> Result<Resolved, String> {
    let docker_host = var(env, "DOCKER_HOST");
    if let Some(name) = flag.filter(|n| !n.is_empty()) {
        let warning = docker_host.as_ref().map(|h| {
            format!(
                "--context {name} overrides DOCKER_HOST ({h}); unset DOCKER_HOST to silence this"
            )
        });
        return Ok(Resolved {
            endpoint: context(name, env)?,
            warning,
        });
    }
    if let Some(host) = docker_host {
        let chosen = var(env, "DOCKER_CONTEXT").or_else(|| current_context(env));
        let warning = chosen.filter(|c| c != DEFAULT_CONTEXT).map(|c| {
            format!(
                "DOCKER_HOST ({host}) overrides the docker context {c:?}, as the docker CLI does"
            )
        });
        return Ok(Resolved {
            endpoint: from_env(host, env),
            warning,
        });
    }
    let name = var(env, "DOCKER_CONTEXT")
        .or_else(|| current_context(env))
        .unwrap_or_else(|| DEFAULT_CONTEXT.to_string());
    Ok(Resolved {
        endpoint: context(&name, env)?,
        warning: None,
    })
}

/// `DOCKER_HOST` with the TLS settings of the environment.
fn from_env(host: String, env: Env) -> Endpoint {
    let tls = var(env, "DOCKER_TLS_VERIFY").map(|_| {
        let dir = var(env, "DOCKER_CERT_PATH")
            .map(PathBuf::from)
            .or_else(|| config_dir(env))
            .unwrap_or_default();
        Tls {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    });
    Endpoint {
        host,
        tls,
        source: "DOCKER_HOST".into(),
    }
}

/// `currentContext` in config.json, if set.
fn current_context(env: Env) -> Option<String> {
    let text = std::fs::read_to_string(config_dir(env)?.join("config.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json.get("currentContext")?
        .as_str()
        .filter(|c| !c.is_empty())
        .map(str::to_string)
}

/// A context by name from the CLI's store; `default` is the local socket (DOCKER_HOST is
/// handled before).
fn context(name: &str, env: Env) -> Result<Endpoint, String> {
    if name == DEFAULT_CONTEXT {
        return Ok(Endpoint {
            host: LOCAL_SOCKET.into(),
            tls: None,
            source: "the local socket".into(),
        });
    }
    let dir = config_dir(env).ok_or_else(|| {
        format!("docker context {name:?}: neither DOCKER_CONFIG nor HOME is set, so there is no context store")
    })?;
    let id = sha256_hex(name);
    let meta = dir.join("contexts/meta").join(&id).join("meta.json");
    let text = std::fs::read_to_string(&meta).map_err(|e| {
        format!(
            "docker context {name:?} does not exist ({}: {e}); `docker context ls` lists them",
            meta.display()
        )
    })?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        format!(
            "docker context {name:?}: {} does not parse: {e}",
            meta.display()
        )
    })?;
    let endpoint = &json["Endpoints"]["docker"];
    let host = endpoint["Host"]
        .as_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| {
            format!(
                "docker context {name:?} has no Docker endpoint ({})",
                meta.display()
            )
        })?;
    if endpoint["SkipTLSVerify"].as_bool() == Some(true) {
        return Err(format!(
            "docker context {name:?} skips TLS verification (skip-tls-verify=true); bgd does not connect without verifying the daemon: give the context its CA (`docker context update {name} --docker \"host=...,ca=...\"`)"
        ));
    }
    let tls_dir = dir.join("contexts/tls").join(&id).join("docker");
    let tls = tls_dir.join("ca.pem").exists().then(|| Tls {
        ca: tls_dir.join("ca.pem"),
        cert: tls_dir.join("cert.pem"),
        key: tls_dir.join("key.pem"),
    });
    Ok(Endpoint {
        host: host.to_string(),
        tls,
        source: format!("context {name:?}"),
    })
}

/// The hex SHA-256 of `text`: the directory name of a context in the store.
fn sha256_hex(text: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, text.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    /// A context store with `remote` (ssh) and `tls` (tcp with TLS material), current `tls`.
    fn store() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("bgd-ctx-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (name, host) in [
            ("remote", "ssh://deploy@example.com:2222"),
            ("tls", "tcp://10.0.0.1:2376"),
        ] {
            let meta = dir.join("contexts/meta").join(sha256_hex(name));
            std::fs::create_dir_all(&meta).unwrap();
            std::fs::write(
                meta.join("meta.json"),
                format!(r#"{{"Name":"{name}","Metadata":{{}},"Endpoints":{{"docker":{{"Host":"{host}","SkipTLSVerify":false}}}}}}"#),
            )
            .unwrap();
        }
        let tls = dir
            .join("contexts/tls")
            .join(sha256_hex("tls"))
            .join("docker");
        std::fs::create_dir_all(&tls).unwrap();
        for f in ["ca.pem", "cert.pem", "key.pem"] {
            std::fs::write(tls.join(f), "x").unwrap();
        }
        std::fs::write(
            dir.join("config.json"),
            r#"{"auths":{},"currentContext":"tls"}"#,
        )
        .unwrap();
        dir
    }

    #[test]
    fn resolves_as_the_docker_cli_does() {
        // the id is sha256 of the name, as `docker context create` makes it
        assert_eq!(
            sha256_hex("remote1"),
            "e0de706a7deed95a1dbbd5165af012b68bed0d6d5b342ecee8522eaed74a2352"
        );
        let dir = store();
        let d = dir.to_string_lossy().to_string();
        // the current context from config.json, with its TLS material
        let r = resolve(None, &env_of(&[("DOCKER_CONFIG", &d)])).unwrap();
        assert_eq!(r.endpoint.host, "tcp://10.0.0.1:2376");
        assert!(r
            .endpoint
            .tls
            .as_ref()
            .unwrap()
            .ca
            .ends_with("docker/ca.pem"));
        assert_eq!(r.warning, None);
        // DOCKER_CONTEXT over config.json
        let r = resolve(
            None,
            &env_of(&[("DOCKER_CONFIG", &d), ("DOCKER_CONTEXT", "remote")]),
        )
        .unwrap();
        assert_eq!(r.endpoint.host, "ssh://deploy@example.com:2222");
        assert_eq!(r.endpoint.tls, None);
        // DOCKER_HOST over any context, with a warning
        let env = env_of(&[("DOCKER_CONFIG", &d), ("DOCKER_HOST", "tcp://h:2375")]);
        let r = resolve(None, &env).unwrap();
        assert_eq!(r.endpoint.host, "tcp://h:2375");
        assert!(r
            .warning
            .unwrap()
            .contains("overrides the docker context \"tls\""));
        // --context over DOCKER_HOST, with a warning
        let r = resolve(Some("remote"), &env).unwrap();
        assert_eq!(r.endpoint.host, "ssh://deploy@example.com:2222");
        assert!(r
            .warning
            .unwrap()
            .contains("--context remote overrides DOCKER_HOST"));
        // default: the local socket; an unknown context: an error naming it
        let r = resolve(Some("default"), &env_of(&[("DOCKER_CONFIG", &d)])).unwrap();
        assert_eq!(r.endpoint.host, LOCAL_SOCKET);
        let e = resolve(Some("nope"), &env_of(&[("DOCKER_CONFIG", &d)])).unwrap_err();
        assert!(e.contains("docker context \"nope\" does not exist"), "{e}");
        // nothing set: the local socket
        let r = resolve(None, &env_of(&[("DOCKER_CONFIG", "/nonexistent")])).unwrap();
        assert_eq!(r.endpoint.host, LOCAL_SOCKET);
        // DOCKER_TLS_VERIFY: DOCKER_CERT_PATH's files
        let r = resolve(
            None,
            &env_of(&[
                ("DOCKER_HOST", "tcp://h:2376"),
                ("DOCKER_TLS_VERIFY", "1"),
                ("DOCKER_CERT_PATH", "/certs"),
            ]),
        )
        .unwrap();
        assert_eq!(r.endpoint.tls.unwrap().key, Path::new("/certs/key.pem"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
