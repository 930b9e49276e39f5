//! Images: what an image contributes to its containers, and pulls.

use super::auth::{Credentials, Lookup};
use super::{describe, Docker, ImageDefaults};
use crate::error;
use anyhow::Result;
use bollard::image::CreateImageOptions;
use bollard::models::CreateImageInfo;
use futures_util::StreamExt;
use std::collections::BTreeMap;
use std::time::Duration;

impl Docker {
    pub async fn image_present(&self, image: &str) -> Result<bool> {
        Ok(self.image_defaults(image).await?.is_some())
    }

    /// The ID (`sha256:...`) of the image `reference` names, if it is on the host.
    pub async fn image_id(&self, reference: &str) -> Result<Option<String>> {
        let found = self
            .call_opt(
                || format!("inspect image {reference}"),
                self.api.inspect_image(reference),
            )
            .await?;
        Ok(found.and_then(|i| i.id))
    }

    /// Removes the image reference `reference` (its tag; the image itself goes with its last
    /// tag), never by force: Docker refuses while a container uses it. `Ok(false)` when it was
    /// not there; the daemon's refusal is an error naming it.
    pub async fn remove_image(&self, reference: &str) -> Result<bool> {
        let removed = self
            .call_opt(
                || format!("remove image {reference}"),
                self.api.remove_image(
                    reference,
                    Some(bollard::image::RemoveImageOptions {
                        force: false,
                        noprune: false,
                    }),
                    None,
                ),
            )
            .await?;
        Ok(removed.is_some())
    }

    /// The env, command and labels an image gives its containers; `None` when the image is
    /// not on the host.
    pub async fn image_defaults(&self, image: &str) -> Result<Option<ImageDefaults>> {
        let found = self
            .call_opt(
                || format!("inspect image {image}"),
                self.api.inspect_image(image),
            )
            .await?;
        Ok(found.map(|i| {
            let config = i.config.unwrap_or_default();
            ImageDefaults {
                env: config.env.unwrap_or_default(),
                cmd: config.cmd,
                labels: config.labels.unwrap_or_default(),
            }
        }))
    }

    /// Pulls `image` with the credentials `login` found (if any), bounded by `limit`.
    /// `report` sees the progress on every message from the daemon and at least every
    /// quarter second; an `Err` from it (an interrupt) stops the pull. A failure is an
    /// environment error naming the registry and saying what went wrong — no credentials,
    /// denied, not found — never the credentials themselves.
    pub async fn pull(
        &self,
        image: &str,
        login: &Lookup,
        limit: Duration,
        report: &mut (dyn FnMut(&PullProgress) -> Result<()> + Send),
    ) -> Result<PullProgress> {
        // the whole pull under `limit`: the daemon answers only once the registry does
        let api = self.api.clone().with_timeout(limit);
        let mut stream = api.create_image(
            Some(CreateImageOptions {
                from_image: image.to_string(),
                ..Default::default()
            }),
            None,
            login.credentials.as_ref().map(Credentials::to_bollard),
        );
        let mut progress = PullProgress::default();
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let pulled = async {
            loop {
                tokio::select! {
                    item = stream.next() => match item {
                        None => return Ok(Ok(())),
                        Some(Err(e)) => return Ok(Err(e)),
                        Some(Ok(info)) => {
                            progress.observe(&info);
                            report(&progress)?;
                        }
                    },
                    _ = tick.tick() => report(&progress)?,
                }
            }
        };
        let what = || {
            format!(
                "pull {image} from {} (pull.timeout {})",
                login.registry.name,
                crate::output::fmt_duration(limit)
            )
        };
        let too_long = || {
            error::environment(format!(
                "{}: did not finish in time (Docker daemon at {}). Raise pull.timeout for a large image or a slow link, or pull it on the host first",
                what(),
                self.host
            ))
        };
        let outcome: Result<Result<(), bollard::errors::Error>> =
            tokio::time::timeout(limit, pulled)
                .await
                .map_err(|_| too_long())?;
        match outcome? {
            Ok(()) => Ok(progress),
            Err(bollard::errors::Error::RequestTimeoutError) => Err(too_long()),
            Err(e) => Err(error::environment(pull_failure(
                image,
                login,
                &describe(&e),
            ))),
        }
    }
}

/// How far a pull is, from the daemon's progress messages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullProgress {
    /// layer id -> (bytes downloaded, bytes in all (0 while unknown), done)
    layers: BTreeMap<String, (u64, u64, bool)>,
}

impl PullProgress {
    /// Takes in one message: `Pulling fs layer`, `Downloading` (with bytes), `Download
    /// complete`, `Extracting`, `Pull complete`, `Already exists`...
    pub fn observe(&mut self, info: &CreateImageInfo) {
        let (Some(id), Some(status)) = (info.id.as_deref(), info.status.as_deref()) else {
            return;
        };
        let detail = info.progress_detail.as_ref();
        let num = |v: Option<i64>| v.and_then(|n| u64::try_from(n).ok());
        match status {
            "Pulling fs layer" | "Waiting" => {
                self.layers.entry(id.to_string()).or_default();
            }
            "Downloading" => {
                let e = self.layers.entry(id.to_string()).or_default();
                if let Some(current) = num(detail.and_then(|d| d.current)) {
                    e.0 = current;
                }
                if let Some(total) = num(detail.and_then(|d| d.total)) {
                    e.1 = total;
                }
            }
            "Download complete" | "Verifying Checksum" | "Extracting" => {
                let e = self.layers.entry(id.to_string()).or_default();
                e.0 = e.0.max(e.1);
            }
            "Pull complete" | "Already exists" => {
                let e = self.layers.entry(id.to_string()).or_default();
                e.0 = e.0.max(e.1);
                e.2 = true;
            }
            // "Pulling from <repo>" carries the tag as its id; digests and summaries none
            _ => {}
        }
    }

    pub fn layers(&self) -> usize {
        self.layers.len()
    }

    pub fn layers_done(&self) -> usize {
        self.layers.values().filter(|l| l.2).count()
    }

    /// Bytes downloaded so far
    pub fn bytes(&self) -> u64 {
        self.layers.values().map(|l| l.0).sum()
    }

    /// Bytes to download, as far as known (a layer's size is known once it starts)
    pub fn total_bytes(&self) -> u64 {
        self.layers.values().map(|l| l.1.max(l.0)).sum()
    }
}

/// Why a pull failed, said for someone who has to fix it: which registry, and whether it was
/// a missing login, refused credentials or a missing image. Credentials bgd sent are
/// replaced in the daemon's words, should they ever appear there.
pub fn pull_failure(image: &str, login: &Lookup, said: &str) -> String {
    let mut said = said.trim().to_string();
    for secret in login
        .credentials
        .as_ref()
        .map(Credentials::secrets)
        .unwrap_or_default()
    {
        said = said.replace(&secret, "<redacted>");
    }
    let registry = &login.registry.name;
    let login_hint = if login.registry.key == super::auth::DOCKER_HUB_KEY {
        "docker login".to_string()
    } else {
        format!("docker login {registry}")
    };
    let text = said.to_ascii_lowercase();
    // the registry's words (its error codes, and the daemon's wording of them); a local
    // "permission denied" is not one of them
    let refused = [
        "unauthorized",
        "authentication required",
        "no basic auth credentials",
        "denied:",
        "access denied",
        "access to the resource is denied",
        "403 forbidden",
        "incorrect username or password",
    ]
    .iter()
    .any(|w| text.contains(w));
    let missing = [
        "manifest unknown",
        "not found",
        "name unknown",
        "does not exist",
    ]
    .iter()
    .any(|w| text.contains(w));
    let hub_ambiguous = text.contains("repository does not exist or may require");
    match (&login.credentials, refused, missing) {
        (None, true, _) => format!(
            "cannot pull {image}: no credentials for the registry {registry}, which requires them{}. Where bgd looked: {}. Run `{login_hint}` on this machine (with the same DOCKER_CONFIG), or set up a credential helper. The registry said: {said}",
            if hub_ambiguous { " (or the image does not exist)" } else { "" },
            login.looked
        ),
        (Some(_), true, _) => format!(
            "cannot pull {image}: denied by the registry {registry}: it refused the credentials from {}{} (wrong password, expired token, or no access to this repository). Run `{login_hint}` again. The registry said: {said}",
            login.looked,
            if hub_ambiguous { ", or the image does not exist" } else { "" },
        ),
        (_, false, true) => format!(
            "cannot pull {image}: not found on the registry {registry}: check the repository name and the tag. The registry said: {said}"
        ),
        _ => format!(
            "cannot pull {image} from the registry {registry}: {said}. Check the name, that the Docker host can reach the registry, or build or load the image there"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::auth::registry_of;
    use bollard::models::ProgressDetail;

    fn info(id: &str, status: &str, current: Option<i64>, total: Option<i64>) -> CreateImageInfo {
        CreateImageInfo {
            id: Some(id.into()),
            status: Some(status.into()),
            progress_detail: Some(ProgressDetail { current, total }),
            ..Default::default()
        }
    }

    #[test]
    fn progress_counts_layers_and_bytes_from_the_daemons_messages() {
        let mut p = PullProgress::default();
        p.observe(&info("v2", "Pulling from web", None, None));
        p.observe(&info("a", "Already exists", None, None));
        p.observe(&info("b", "Pulling fs layer", None, None));
        p.observe(&info("c", "Waiting", None, None));
        p.observe(&info("b", "Downloading", Some(100), Some(1000)));
        assert_eq!((p.layers(), p.layers_done()), (3, 1));
        assert_eq!((p.bytes(), p.total_bytes()), (100, 1000));
        p.observe(&info("b", "Download complete", None, None));
        p.observe(&info("b", "Pull complete", None, None));
        p.observe(&info("c", "Downloading", Some(5), Some(50)));
        assert_eq!(
            (p.layers_done(), p.bytes(), p.total_bytes()),
            (2, 1005, 1050)
        );
        p.observe(&info("c", "Pull complete", None, None));
        assert_eq!((p.layers_done(), p.bytes()), (3, 1050));
    }

    fn lookup(with: bool) -> Lookup {
        Lookup {
            registry: registry_of("127.0.0.1:5000/web:v1"),
            credentials: with.then(|| super::super::auth::Credentials {
                username: Some("u".into()),
                password: Some("hunter22".into()),
                identity_token: None,
                registry_token: None,
                server: "127.0.0.1:5000".into(),
            }),
            looked: "auths in /c/config.json".into(),
            warning: None,
        }
    }

    #[test]
    fn failures_say_no_credentials_denied_or_not_found() {
        let img = "127.0.0.1:5000/web:v1";
        let said = "Head \"http://127.0.0.1:5000/v2/web/manifests/v1\": no basic auth credentials";
        let m = pull_failure(img, &lookup(false), said);
        assert!(
            m.contains("no credentials for the registry 127.0.0.1:5000"),
            "{m}"
        );
        assert!(m.contains("docker login 127.0.0.1:5000"), "{m}");
        let said = "unauthorized: authentication required hunter22";
        let m = pull_failure(img, &lookup(true), said);
        assert!(m.contains("denied by the registry 127.0.0.1:5000"), "{m}");
        assert!(!m.contains("hunter22"), "{m}");
        let said =
            "manifest for 127.0.0.1:5000/web:v9 not found: manifest unknown: manifest unknown";
        let m = pull_failure(img, &lookup(true), said);
        assert!(
            m.contains("not found on the registry 127.0.0.1:5000"),
            "{m}"
        );
        let hub = Lookup {
            registry: registry_of("acme/private"),
            ..lookup(false)
        };
        let said = "pull access denied for acme/private, repository does not exist or may require 'docker login': denied: requested access to the resource is denied";
        let m = pull_failure("acme/private", &hub, said);
        assert!(
            m.contains("no credentials for the registry docker.io") && m.contains("`docker login`"),
            "{m}"
        );
        let m = pull_failure(
            img,
            &lookup(true),
            "open /var/lib/docker/tmp/x: permission denied",
        );
        assert!(
            m.contains("cannot pull 127.0.0.1:5000/web:v1 from the registry"),
            "{m}"
        );
        let m = pull_failure(
            img,
            &lookup(false),
            "dial tcp 127.0.0.1:5000: connect: connection refused",
        );
        assert!(
            m.contains("cannot pull 127.0.0.1:5000/web:v1 from the registry 127.0.0.1:5000"),
            "{m}"
        );
    }
}
