//! Registry credentials for pulls, found as the docker CLI finds them: the registry an image
//! names (Docker Hub when it names none), then in `$DOCKER_CONFIG/config.json` (default
//! `~/.docker/config.json`) the credential helper `credHelpers` names for that registry, else
//! the `credsStore`, else the `auths` entry (base64 `user:password` in `auth`, or an
//! `identitytoken`). A helper is `docker-credential-<name>` on `PATH`, run as
//! `docker-credential-<name> get` with the registry on stdin.
//!
//! Credentials never leave through here: `Credentials` prints as `<credentials>`, and every
//! message names the registry and where bgd looked, never a value.

use base64::Engine as _;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// Docker Hub's key in config.json and for credential helpers (the docker CLI's special case).
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";
/// Longest a credential helper may take (some ask a keyring).
const HELPER_LIMIT: Duration = Duration::from_secs(30);

/// The registry an image is pulled from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    /// How people name it: `docker.io`, `registry.example.com`, `127.0.0.1:5000`
    pub name: String,
    /// Its key in config.json and for credential helpers
    pub key: String,
}

/// The registry of `image`, by the docker CLI's rule: the part before the first `/` is a
/// registry when it has a `.` or a `:`, is `localhost`, or has capitals; otherwise (or with no
/// `/`) the image is on Docker Hub.
pub fn registry_of(image: &str) -> Registry {
    let hub = || Registry {
        name: "docker.io".into(),
        key: DOCKER_HUB_KEY.into(),
    };
    let Some((first, _)) = image.split_once('/') else {
        return hub();
    };
    let is_domain = first.contains('.')
        || first.contains(':')
        || first == "localhost"
        || first.chars().any(|c| c.is_ascii_uppercase());
    if !is_domain || first == "docker.io" || first == "index.docker.io" {
        return hub();
    }
    Registry {
        name: first.to_string(),
        key: first.to_string(),
    }
}

/// What a pull sends to one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: Option<String>,
    pub password: Option<String>,
    pub identity_token: Option<String>,
    pub registry_token: Option<String>,
    pub server: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<credentials for {}>", self.server)
    }
}

impl Credentials {
    /// The values output must never show.
    pub fn secrets(&self) -> Vec<String> {
        [&self.password, &self.identity_token, &self.registry_token]
            .into_iter()
            .flatten()
            .filter(|s| s.len() >= 4)
            .cloned()
            .collect()
    }

    pub(super) fn to_bollard(&self) -> bollard::auth::DockerCredentials {
        bollard::auth::DockerCredentials {
            username: self.username.clone(),
            password: self.password.clone(),
            serveraddress: Some(self.server.clone()),
            identitytoken: self.identity_token.clone(),
            registrytoken: self.registry_token.clone(),
            ..Default::default()
        }
    }
}

/// Where the credentials for a registry are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Store {
    /// `auths` in config.json
    File,
    /// `docker-credential-<name>`
    Helper(String),
}

/// What bgd found for a registry.
#[derive(Debug, Clone)]
pub struct Lookup {
    pub registry: Registry,
    pub credentials: Option<Credentials>,
    /// Where bgd looked, for messages: `auths in /home/me/.docker/config.json`,
    /// `docker-credential-pass`, `/home/me/.docker/config.json (it does not exist)`
    pub looked: String,
    /// Something the user should know (a helper that failed or is missing): the pull goes
    /// on without credentials, as the docker CLI's would
    pub warning: Option<String>,
}

/// The docker CLI's host name for a config.json key: without `http(s)://` and any path.
fn hostname(key: &str) -> &str {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    rest.split('/').next().unwrap_or(rest)
}

/// The entry of `map` for `key`, or else the first whose host name is `key`'s (config files
/// written by older clients keep `https://registry/v1/`-style keys).
fn entry<'a>(map: Option<&'a serde_json::Map<String, Value>>, key: &str) -> Option<&'a Value> {
    let map = map?;
    map.get(key).or_else(|| {
        let host = hostname(key);
        map.iter()
            .find(|(k, _)| hostname(k) == host)
            .map(|(_, v)| v)
    })
}

/// The store config.json names for `registry`: its `credHelpers` entry, else `credsStore`,
/// else the file itself.
pub fn store_for(config: &Value, registry: &Registry) -> Store {
    fn named(v: Option<&Value>) -> Option<&str> {
        v.and_then(Value::as_str).filter(|s| !s.is_empty())
    }
    if let Some(helper) = named(entry(
        config.get("credHelpers").and_then(Value::as_object),
        &registry.key,
    )) {
        return Store::Helper(helper.to_string());
    }
    match named(config.get("credsStore")) {
        Some(store) => Store::Helper(store.to_string()),
        None => Store::File,
    }
}

/// The `auths` entry for `registry`, if it holds anything usable. `Err` says what is wrong
/// with it (never its value).
pub fn from_file(config: &Value, registry: &Registry) -> Result<Option<Credentials>, String> {
    let Some(e) = entry(
        config.get("auths").and_then(Value::as_object),
        &registry.key,
    ) else {
        return Ok(None);
    };
    let text = |k: &str| {
        e.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let (mut username, mut password) = (text("username"), text("password"));
    if let Some(auth) = text("auth") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                format!(
                    "the auths entry for {} has an \"auth\" value that is not base64 of user:password; run `docker login {}` again",
                    registry.name, registry.name
                )
            })?;
        let (u, p) = decoded.split_once(':').ok_or_else(|| {
            format!(
                "the auths entry for {} has an \"auth\" value without a user:password pair; run `docker login {}` again",
                registry.name, registry.name
            )
        })?;
        username = Some(u.to_string());
        password = Some(p.trim_end_matches('\n').to_string());
    }
    let credentials = Credentials {
        username,
        password,
        identity_token: text("identitytoken"),
        registry_token: text("registrytoken"),
        server: registry.key.clone(),
    };
    let usable = credentials.password.is_some()
        || credentials.identity_token.is_some()
        || credentials.registry_token.is_some();
    Ok(usable.then_some(credentials))
}

/// What a credential helper's `get` answered: `{"ServerURL","Username","Secret"}`, a user
/// name of `<token>` meaning the secret is an identity token.
pub fn from_helper(stdout: &str, registry: &Registry) -> Result<Credentials, String> {
    let v: Value = serde_json::from_str(stdout.trim())
        .map_err(|_| "its answer is not the JSON credential helpers print".to_string())?;
    let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let (user, secret) = (text("Username"), text("Secret"));
    if secret.is_empty() {
        return Err("its answer has no Secret".into());
    }
    Ok(if user == "<token>" {
        Credentials {
            username: None,
            password: None,
            identity_token: Some(secret),
            registry_token: None,
            server: registry.key.clone(),
        }
    } else {
        Credentials {
            username: Some(user),
            password: Some(secret),
            identity_token: None,
            registry_token: None,
            server: registry.key.clone(),
        }
    })
}

/// Whether a helper's failure means "no credentials for this registry" (not an error: the
/// docker CLI pulls anonymously then).
fn not_found(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("credentials not found") || t.contains("not found in native keychain")
}

/// The credentials the docker CLI would send when pulling `image`, config.json being in
/// `config_dir`. Never fails: what goes wrong becomes a warning and an anonymous pull, as
/// with the docker CLI (public images still pull).
pub async fn lookup(config_dir: Option<&Path>, image: &str) -> Lookup {
    let registry = registry_of(image);
    let Some(dir) = config_dir else {
        return Lookup {
            registry,
            credentials: None,
            looked: "nowhere: neither DOCKER_CONFIG nor HOME is set".into(),
            warning: None,
        };
    };
    let path = dir.join("config.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Lookup {
                registry,
                credentials: None,
                looked: format!("{} (it does not exist)", path.display()),
                warning: None,
            }
        }
        Err(e) => {
            return Lookup {
                warning: Some(format!(
                    "cannot read {}: {e}; pulling without credentials",
                    path.display()
                )),
                registry,
                credentials: None,
                looked: path.display().to_string(),
            }
        }
    };
    let config: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            return Lookup {
                warning: Some(format!(
                    "{} does not parse ({e}); pulling without credentials",
                    path.display()
                )),
                registry,
                credentials: None,
                looked: path.display().to_string(),
            }
        }
    };
    match store_for(&config, &registry) {
        Store::File => {
            let looked = format!("auths in {}", path.display());
            match from_file(&config, &registry) {
                Ok(credentials) => Lookup {
                    registry,
                    credentials,
                    looked,
                    warning: None,
                },
                Err(why) => Lookup {
                    registry,
                    credentials: None,
                    looked,
                    warning: Some(format!("{why}; pulling without credentials")),
                },
            }
        }
        Store::Helper(name) => {
            let program = format!("docker-credential-{name}");
            let (credentials, warning) = match run_helper(&program, &registry).await {
                Ok(c) => (c, None),
                Err(why) => (
                    None,
                    Some(format!(
                        "the credential helper {program} (named in {}) {why}; pulling {} without credentials",
                        path.display(),
                        registry.name
                    )),
                ),
            };
            Lookup {
                registry,
                credentials,
                looked: program,
                warning,
            }
        }
    }
}

/// Runs `program get` with the registry's key on stdin. `Ok(None)`: it has nothing for it.
async fn run_helper(program: &str, registry: &Registry) -> Result<Option<Credentials>, String> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(program)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => "is not on PATH".to_string(),
            _ => format!("cannot be started: {e}"),
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(registry.key.as_bytes()).await;
    }
    let out = tokio::time::timeout(HELPER_LIMIT, child.wait_with_output())
        .await
        .map_err(|_| format!("gave no answer within {}s", HELPER_LIMIT.as_secs()))?
        .map_err(|e| format!("failed: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // helpers print their error on stdout; it says nothing secret
        let said = format!(
            "{} {}",
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        if not_found(&said) {
            return Ok(None);
        }
        let first = said.trim().lines().next().unwrap_or("").chars().take(200);
        return Err(format!(
            "failed ({}): {}",
            out.status,
            first.collect::<String>()
        ));
    }
    from_helper(&stdout, registry).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn images_name_their_registry_as_the_docker_cli_reads_them() {
        for (image, name) in [
            ("nginx", "docker.io"),
            ("nginx:1.27", "docker.io"),
            ("library/nginx", "docker.io"),
            ("acme/web:v2", "docker.io"),
            ("docker.io/acme/web", "docker.io"),
            ("index.docker.io/acme/web", "docker.io"),
            ("registry.example.com/web:v2", "registry.example.com"),
            ("127.0.0.1:5000/web:v1", "127.0.0.1:5000"),
            ("localhost/web", "localhost"),
            ("Registry/web", "Registry"),
            ("ghcr.io/acme/web@sha256:abcd", "ghcr.io"),
        ] {
            assert_eq!(registry_of(image).name, name, "{image}");
        }
        assert_eq!(registry_of("acme/web").key, DOCKER_HUB_KEY);
        assert_eq!(registry_of("ghcr.io/a/b").key, "ghcr.io");
    }

    #[test]
    fn a_helper_for_the_registry_beats_the_store_which_beats_the_file() {
        let hub = registry_of("acme/web");
        let ghcr = registry_of("ghcr.io/a/b");
        let config = json!({
            "auths": {"ghcr.io": {"auth": "dTpw"}},
            "credsStore": "desktop",
            "credHelpers": {"ghcr.io": "gh", "https://index.docker.io/v1/": "hub"}
        });
        assert_eq!(store_for(&config, &ghcr), Store::Helper("gh".into()));
        assert_eq!(store_for(&config, &hub), Store::Helper("hub".into()));
        let config = json!({"credsStore": "pass"});
        assert_eq!(store_for(&config, &ghcr), Store::Helper("pass".into()));
        assert_eq!(store_for(&json!({"credsStore": ""}), &ghcr), Store::File);
        assert_eq!(store_for(&json!({}), &ghcr), Store::File);
    }

    #[test]
    fn auths_entries_decode_and_docker_hub_has_its_special_key() {
        let config = json!({"auths": {
            "https://index.docker.io/v1/": {"auth": base64::engine::general_purpose::STANDARD.encode("me:s3cret:with:colons")},
            "https://legacy.example.com/v1/": {"identitytoken": "tok-123456"},
            "empty.example.com": {},
            "bad.example.com": {"auth": "%%%"}
        }});
        let hub = from_file(&config, &registry_of("acme/web"))
            .unwrap()
            .unwrap();
        assert_eq!(hub.username.as_deref(), Some("me"));
        assert_eq!(hub.password.as_deref(), Some("s3cret:with:colons"));
        assert_eq!(hub.server, DOCKER_HUB_KEY);
        let legacy = from_file(&config, &registry_of("legacy.example.com/web"))
            .unwrap()
            .unwrap();
        assert_eq!(legacy.identity_token.as_deref(), Some("tok-123456"));
        assert!(from_file(&config, &registry_of("empty.example.com/w"))
            .unwrap()
            .is_none());
        assert!(from_file(&config, &registry_of("ghcr.io/w"))
            .unwrap()
            .is_none());
        let err = from_file(&config, &registry_of("bad.example.com/w")).unwrap_err();
        assert!(
            err.contains("bad.example.com") && !err.contains("%%%"),
            "{err}"
        );
        // never printed
        assert_eq!(
            format!("{hub:?}"),
            format!("<credentials for {DOCKER_HUB_KEY}>")
        );
        assert_eq!(hub.secrets(), vec!["s3cret:with:colons".to_string()]);
    }

    #[test]
    fn helper_answers_give_a_password_or_an_identity_token() {
        let r = registry_of("ghcr.io/a/b");
        let c = from_helper(
            r#"{"ServerURL":"ghcr.io","Username":"u","Secret":"pw"}"#,
            &r,
        )
        .unwrap();
        assert_eq!(
            (c.username.as_deref(), c.password.as_deref()),
            (Some("u"), Some("pw"))
        );
        let t = from_helper(r#"{"Username":"<token>","Secret":"tok"}"#, &r).unwrap();
        assert_eq!(
            (t.username, t.identity_token.as_deref()),
            (None, Some("tok"))
        );
        assert!(from_helper("nope", &r).is_err());
        assert!(from_helper(r#"{"Username":"u"}"#, &r).is_err());
        assert!(not_found("credentials not found in native keychain"));
    }
}
