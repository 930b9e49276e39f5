//! The only module that imports bollard. bgd's own types go in and out; every failure becomes
//! an environment error (exit 6) that names the operation and the object, and every call is
//! bounded by a timeout so a hung daemon cannot hang bgd.

mod ssh;

use crate::error;
use anyhow::Result;
use bollard::container::{
    Config as BollardConfig, CreateContainerOptions, DownloadFromContainerOptions,
    InspectContainerOptions, ListContainersOptions, LogOutput, LogsOptions, RemoveContainerOptions,
    StartContainerOptions, StopContainerOptions, UploadToContainerOptions, WaitContainerOptions,
};
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::image::CreateImageOptions;
use bollard::models::{
    EndpointSettings, HostConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::network::{ConnectNetworkOptions, CreateNetworkOptions};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

/// How long one ordinary API call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Connecting and negotiating the API version.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Docker {
    api: bollard::Docker,
    /// Where the daemon is, for messages.
    host: String,
    /// With `ssh://`: the local socket whose connections ssh carries (kept open while used)
    _tunnel: Option<std::sync::Arc<ssh::Tunnel>>,
}

/// A container as bgd sees it.
#[derive(Debug, Clone)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub image: String,
    pub labels: HashMap<String, String>,
    /// Docker's state: created, running, exited, ...
    pub state: String,
    /// Docker's health check status, when the image defines one
    pub health: Option<String>,
    /// network name -> IPv4 address
    pub networks: HashMap<String, String>,
    pub exit_code: Option<i64>,
    /// The image's ID (`sha256:...`), which stays put when the tag moves
    pub image_id: String,
    /// How often Docker restarted it (restart policy)
    pub restart_count: i64,
    /// What it runs with, as Docker reports it (for drift checks)
    pub settings: RunSettings,
}

/// The settings a container runs with, as Docker reports them. Env and labels include what
/// the image contributed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunSettings {
    /// `NAME=value`
    pub env: Vec<String>,
    pub cmd: Option<Vec<String>>,
    /// `source:/target[:mode]` as given at creation
    pub binds: Vec<String>,
    /// `no`, `always`, `unless-stopped`, `on-failure` (empty on some daemons for `no`)
    pub restart_policy: String,
    /// bytes, 0 = unlimited
    pub memory: i64,
    /// billionths of a CPU, 0 = unlimited
    pub nano_cpus: i64,
    /// seconds
    pub stop_timeout: Option<i64>,
}

/// What an image contributes to every container made from it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageDefaults {
    /// `NAME=value`
    pub env: Vec<String>,
    pub cmd: Option<Vec<String>>,
    pub labels: HashMap<String, String>,
}

impl ContainerInfo {
    pub fn running(&self) -> bool {
        self.state == "running"
    }
    pub fn ip_on(&self, network: &str) -> Option<&str> {
        self.networks
            .get(network)
            .map(String::as_str)
            .filter(|ip| !ip.is_empty())
    }
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }
}

/// What to create. bgd builds these with pure code (deploy::plan); this module only sends them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub env: Vec<String>,
    pub cmd: Option<Vec<String>>,
    pub labels: HashMap<String, String>,
    pub network: String,
    /// `source:/target[:mode]`, named volumes or host paths
    pub binds: Vec<String>,
    pub stop_timeout: Option<Duration>,
    /// Docker restart policy `unless-stopped` when true
    pub restart: bool,
    /// (host ip, host port, container port)
    pub publish: Vec<(Option<String>, Option<u16>, u16)>,
    /// bytes, None = unlimited
    pub memory: Option<i64>,
    /// billionths of a CPU, None = unlimited
    pub nano_cpus: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct ExecOutput {
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
}

fn describe(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError {
            status_code,
            message,
        } => format!("{message} (HTTP {status_code})"),
        other => other.to_string(),
    }
}

fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

fn is_conflict(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 409,
            ..
        }
    )
}

impl Docker {
    /// Connects as the docker CLI does: `DOCKER_HOST` (unix://, tcp://, https:// with
    /// DOCKER_TLS_VERIFY/DOCKER_CERT_PATH, ssh://) or the local socket, then agrees on an API
    /// version the daemon speaks (Engine 20.10 and newer).
    pub async fn connect() -> Result<Docker> {
        let host = std::env::var("DOCKER_HOST")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unix:///var/run/docker.sock".to_string());
        let unreachable = |why: String| {
            error::environment(format!(
                "cannot reach the Docker daemon at {host}: {why}. Is it running, and is DOCKER_HOST right?"
            ))
        };
        let tunnel = if host.starts_with("ssh://") {
            let target = ssh::parse(&host).map_err(error::config)?;
            let tunnel = ssh::Tunnel::open(&target)
                .map_err(|e| unreachable(format!("cannot make a local socket for ssh: {e}")))?;
            Some((std::sync::Arc::new(tunnel), target))
        } else {
            None
        };
        let api = match &tunnel {
            Some((t, _)) => bollard::Docker::connect_with_unix(
                &t.socket().to_string_lossy(),
                CALL_TIMEOUT.as_secs(),
                bollard::API_DEFAULT_VERSION,
            ),
            None if host.starts_with("tcp://")
                && std::env::var_os("DOCKER_TLS_VERIFY").is_some() =>
            {
                bollard::Docker::connect_with_ssl_defaults()
            }
            None => bollard::Docker::connect_with_defaults(),
        }
        .map_err(|e| unreachable(describe(&e)))?
        .with_timeout(CALL_TIMEOUT);
        let why = match tokio::time::timeout(CONNECT_TIMEOUT, api.negotiate_version()).await {
            Ok(Ok(api)) => {
                return Ok(Docker {
                    api,
                    host,
                    _tunnel: tunnel.map(|(t, _)| t),
                })
            }
            Ok(Err(e)) => describe(&e),
            Err(_) => format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
        };
        match &tunnel {
            Some((t, target)) => Err(error::environment(format!(
                "cannot reach the Docker daemon at {host} over ssh: {}. Check that `{} docker version` works from here (BGD_SSH_COMMAND sets ssh and its options)",
                ssh_error(t).await.unwrap_or(why),
                target.ssh_line()
            ))),
            None => Err(unreachable(why)),
        }
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// Runs one API call under the call timeout; a timeout is an environment error naming
    /// `what`, the daemon's own answer is left to the caller.
    async fn timed<T>(
        &self,
        what: &impl Fn() -> String,
        fut: impl Future<Output = Result<T, bollard::errors::Error>>,
    ) -> Result<Result<T, bollard::errors::Error>> {
        tokio::time::timeout(CALL_TIMEOUT, fut).await.map_err(|_| {
            error::environment(format!(
                "{}: the Docker daemon at {} did not answer within {}s",
                what(),
                self.host,
                CALL_TIMEOUT.as_secs()
            ))
        })
    }

    /// Runs one API call under the call timeout, naming `what` in any error.
    async fn call<T>(
        &self,
        what: impl Fn() -> String,
        fut: impl Future<Output = Result<T, bollard::errors::Error>>,
    ) -> Result<T> {
        self.timed(&what, fut)
            .await?
            .map_err(|e| error::environment(format!("{}: {}", what(), describe(&e))))
    }

    /// Like `call`, but a 404 is `None`.
    async fn call_opt<T>(
        &self,
        what: impl Fn() -> String,
        fut: impl Future<Output = Result<T, bollard::errors::Error>>,
    ) -> Result<Option<T>> {
        match self.timed(&what, fut).await? {
            Ok(v) => Ok(Some(v)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(error::environment(format!("{}: {}", what(), describe(&e)))),
        }
    }

    /// Creates a user-defined bridge network unless it exists. Returns true if created.
    pub async fn ensure_network(
        &self,
        name: &str,
        labels: HashMap<String, String>,
    ) -> Result<bool> {
        if self.network_exists(name).await? {
            return Ok(false);
        }
        let created = tokio::time::timeout(
            CALL_TIMEOUT,
            self.api.create_network(CreateNetworkOptions {
                name: name.to_string(),
                driver: "bridge".to_string(),
                check_duplicate: true,
                labels,
                ..Default::default()
            }),
        )
        .await;
        match created {
            Ok(Ok(_)) => Ok(true),
            // Another bgd created it between our look and our create: fine.
            Ok(Err(e)) if is_conflict(&e) => Ok(false),
            Ok(Err(e)) => Err(error::environment(format!(
                "create network {name}: {}",
                describe(&e)
            ))),
            Err(_) => Err(error::environment(format!(
                "create network {name}: the Docker daemon did not answer"
            ))),
        }
    }

    pub async fn network_exists(&self, name: &str) -> Result<bool> {
        Ok(self
            .call_opt(
                || format!("inspect network {name}"),
                self.api.inspect_network::<String>(name, None),
            )
            .await?
            .is_some())
    }

    pub async fn image_present(&self, image: &str) -> Result<bool> {
        Ok(self.image_defaults(image).await?.is_some())
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

    /// Pulls `image`, bounded by `limit`. Any failure is an environment error naming it.
    pub async fn pull(&self, image: &str, limit: Duration) -> Result<()> {
        let mut stream = self.api.create_image(
            Some(CreateImageOptions {
                from_image: image.to_string(),
                ..Default::default()
            }),
            None,
            None,
        );
        let pulled = tokio::time::timeout(limit, async {
            while let Some(item) = stream.next().await {
                item?;
            }
            Ok::<(), bollard::errors::Error>(())
        })
        .await;
        match pulled {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(error::environment(format!(
                "image {image} is not on the Docker host and pulling it failed: {}. Build or load it there, or check the name and registry access",
                describe(&e)
            ))),
            Err(_) => Err(error::environment(format!(
                "image {image} is not on the Docker host and pulling it took longer than {}s",
                limit.as_secs()
            ))),
        }
    }

    pub async fn create(&self, spec: &ContainerSpec) -> Result<String> {
        let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        let mut exposed: HashMap<String, HashMap<(), ()>> = HashMap::new();
        for (ip, host_port, container_port) in &spec.publish {
            let key = format!("{container_port}/tcp");
            exposed.insert(key.clone(), HashMap::new());
            port_bindings
                .entry(key)
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: ip.clone(),
                    host_port: host_port.map(|p| p.to_string()),
                });
        }
        let host_config = HostConfig {
            binds: (!spec.binds.is_empty()).then(|| spec.binds.clone()),
            network_mode: Some(spec.network.clone()),
            port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
            restart_policy: spec.restart.then_some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            memory: spec.memory,
            nano_cpus: spec.nano_cpus,
            ..Default::default()
        };
        let config = BollardConfig {
            image: Some(spec.image.clone()),
            env: Some(spec.env.clone()),
            cmd: spec.cmd.clone(),
            labels: Some(spec.labels.clone()),
            exposed_ports: (!exposed.is_empty()).then_some(exposed),
            stop_timeout: spec.stop_timeout.map(|d| d.as_secs().max(1) as i64),
            host_config: Some(host_config),
            ..Default::default()
        };
        let created = self
            .call(
                || format!("create container {}", spec.name),
                self.api.create_container(
                    Some(CreateContainerOptions {
                        name: spec.name.clone(),
                        platform: None,
                    }),
                    config,
                ),
            )
            .await?;
        Ok(created.id)
    }

    pub async fn rename(&self, name: &str, to: &str) -> Result<()> {
        self.call(
            || format!("rename container {name} to {to}"),
            self.api.rename_container(
                name,
                bollard::container::RenameContainerOptions { name: to },
            ),
        )
        .await
    }

    pub async fn start(&self, name: &str) -> Result<()> {
        self.call(
            || format!("start container {name}"),
            self.api
                .start_container(name, None::<StartContainerOptions<String>>),
        )
        .await
    }

    /// Stops a container, giving it `grace` to shut down cleanly.
    pub async fn stop(&self, name: &str, grace: Duration) -> Result<()> {
        let secs = grace.as_secs().max(1);
        let fut = self
            .api
            .stop_container(name, Some(StopContainerOptions { t: secs as i64 }));
        match tokio::time::timeout(CALL_TIMEOUT + grace, fut).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) if is_not_found(&e) => Ok(()),
            // 304: already stopped
            Ok(Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            })) => Ok(()),
            Ok(Err(e)) => Err(error::environment(format!(
                "stop container {name}: {}",
                describe(&e)
            ))),
            Err(_) => Err(error::environment(format!(
                "stop container {name}: the Docker daemon did not answer"
            ))),
        }
    }

    /// Removes a container, running or not. Absent is fine. When the daemon is already
    /// removing it (a run that was killed asked for it), waits until it is gone, so the name
    /// is free when this returns.
    pub async fn remove(&self, name: &str) -> Result<()> {
        let what = || format!("remove container {name}");
        let removed = self
            .timed(
                &what,
                self.api.remove_container(
                    name,
                    Some(RemoveContainerOptions {
                        force: true,
                        ..Default::default()
                    }),
                ),
            )
            .await?;
        match removed {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) if is_conflict(&e) => {
                let deadline = std::time::Instant::now() + CALL_TIMEOUT;
                while std::time::Instant::now() < deadline {
                    if self.inspect(name).await?.is_none() {
                        return Ok(());
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error::environment(format!("{}: {}", what(), describe(&e))))
            }
            Err(e) => Err(error::environment(format!("{}: {}", what(), describe(&e)))),
        }
    }

    pub async fn inspect(&self, name: &str) -> Result<Option<ContainerInfo>> {
        let found = self
            .call_opt(
                || format!("inspect container {name}"),
                self.api
                    .inspect_container(name, None::<InspectContainerOptions>),
            )
            .await?;
        Ok(found.map(|c| {
            let state = c.state.as_ref();
            let config = c.config.as_ref();
            let host = c.host_config.as_ref();
            let settings = RunSettings {
                env: config.and_then(|c| c.env.clone()).unwrap_or_default(),
                cmd: config.and_then(|c| c.cmd.clone()),
                binds: host.and_then(|h| h.binds.clone()).unwrap_or_default(),
                restart_policy: host
                    .and_then(|h| h.restart_policy.as_ref())
                    .and_then(|r| r.name)
                    .map(|n| n.to_string())
                    .unwrap_or_default(),
                memory: host.and_then(|h| h.memory).unwrap_or(0),
                nano_cpus: host.and_then(|h| h.nano_cpus).unwrap_or(0),
                stop_timeout: config.and_then(|c| c.stop_timeout),
            };
            ContainerInfo {
                id: c.id.clone().unwrap_or_default(),
                name: c
                    .name
                    .clone()
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_string(),
                image: config.and_then(|c| c.image.clone()).unwrap_or_default(),
                labels: config.and_then(|c| c.labels.clone()).unwrap_or_default(),
                state: state
                    .and_then(|s| s.status)
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "unknown".into()),
                health: state
                    .and_then(|s| s.health.as_ref())
                    .and_then(|h| h.status)
                    .map(|s| s.to_string()),
                networks: c
                    .network_settings
                    .as_ref()
                    .and_then(|n| n.networks.as_ref())
                    .map(|nets| {
                        nets.iter()
                            .map(|(k, v)| (k.clone(), v.ip_address.clone().unwrap_or_default()))
                            .collect()
                    })
                    .unwrap_or_default(),
                exit_code: state.and_then(|s| s.exit_code),
                image_id: c.image.clone().unwrap_or_default(),
                restart_count: c.restart_count.unwrap_or(0),
                settings,
            }
        }))
    }

    /// Names of the containers (any state) carrying every `key=value` label given.
    pub async fn list_by_labels(&self, labels: &[(&str, &str)]) -> Result<Vec<String>> {
        let filter: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut filters = HashMap::new();
        filters.insert("label".to_string(), filter);
        let list = self
            .call(
                || "list containers".to_string(),
                self.api.list_containers(Some(ListContainersOptions {
                    all: true,
                    filters,
                    ..Default::default()
                })),
            )
            .await?;
        let mut names: Vec<String> = list
            .into_iter()
            .filter_map(|c| c.names.and_then(|n| n.into_iter().next()))
            .map(|n| n.trim_start_matches('/').to_string())
            .collect();
        names.sort();
        Ok(names)
    }

    pub async fn connect_network(&self, network: &str, container: &str) -> Result<()> {
        self.call(
            || format!("connect {container} to network {network}"),
            self.api.connect_network(
                network,
                ConnectNetworkOptions {
                    container: container.to_string(),
                    endpoint_config: EndpointSettings::default(),
                },
            ),
        )
        .await
    }

    /// Runs `cmd` in a running container and waits for it, bounded by `limit`.
    pub async fn exec(&self, container: &str, cmd: &[&str], limit: Duration) -> Result<ExecOutput> {
        let what = || {
            format!(
                "run {:?} in container {container}",
                cmd.first().unwrap_or(&"")
            )
        };
        let created = self
            .call(
                what,
                self.api.create_exec(
                    container,
                    CreateExecOptions {
                        cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
                        attach_stdout: Some(true),
                        attach_stderr: Some(true),
                        ..Default::default()
                    },
                ),
            )
            .await?;
        let run = async {
            let mut stdout = Vec::new();
            let mut stderr = Vec::new();
            if let StartExecResults::Attached { mut output, .. } =
                self.api.start_exec(&created.id, None).await?
            {
                while let Some(chunk) = output.next().await {
                    match chunk? {
                        LogOutput::StdOut { message } => stdout.extend_from_slice(&message),
                        LogOutput::StdErr { message } => stderr.extend_from_slice(&message),
                        _ => {}
                    }
                }
            }
            Ok::<_, bollard::errors::Error>((stdout, stderr))
        };
        let (stdout, stderr) = match tokio::time::timeout(limit, run).await {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => return Err(error::environment(format!("{}: {}", what(), describe(&e)))),
            Err(_) => {
                return Err(error::environment(format!(
                    "{}: did not finish within {:.1}s",
                    what(),
                    limit.as_secs_f64()
                )))
            }
        };
        // The exit code comes from inspecting the exec, not from starting it.
        let inspected = self.call(what, self.api.inspect_exec(&created.id)).await?;
        Ok(ExecOutput {
            exit_code: inspected.exit_code.unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        })
    }

    /// Writes files into a container (created or running) through the archive API.
    /// `files` are (path relative to `dir`, contents); missing parent directories are created.
    pub async fn upload(&self, container: &str, dir: &str, files: &[(&str, &[u8])]) -> Result<()> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut dirs_done = std::collections::BTreeSet::new();
        for (path, data) in files {
            let mut parent = std::path::Path::new(path).parent();
            let mut parents = Vec::new();
            while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
                parents.push(p.to_path_buf());
                parent = p.parent();
            }
            for p in parents.into_iter().rev() {
                if dirs_done.insert(p.clone()) {
                    let mut header = tar::Header::new_gnu();
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(0o755);
                    header.set_size(0);
                    header.set_mtime(now_secs());
                    builder
                        .append_data(&mut header, &p, std::io::empty())
                        .map_err(|e| anyhow::anyhow!("build archive: {e}"))?;
                }
            }
            let mut header = tar::Header::new_gnu();
            header.set_mode(0o644);
            header.set_size(data.len() as u64);
            header.set_mtime(now_secs());
            builder
                .append_data(&mut header, path, *data)
                .map_err(|e| anyhow::anyhow!("build archive: {e}"))?;
        }
        let tar = builder
            .into_inner()
            .map_err(|e| anyhow::anyhow!("build archive: {e}"))?;
        self.call(
            || format!("write files into container {container}:{dir}"),
            self.api.upload_to_container(
                container,
                Some(UploadToContainerOptions {
                    path: dir.to_string(),
                    ..Default::default()
                }),
                tar.into(),
            ),
        )
        .await
    }

    /// Reads every regular file under `path` in a container: (name relative to the archive
    /// root, contents). A missing path is `None`.
    pub async fn download(
        &self,
        container: &str,
        path: &str,
    ) -> Result<Option<Vec<(String, Vec<u8>)>>> {
        let stream = self.api.download_from_container(
            container,
            Some(DownloadFromContainerOptions {
                path: path.to_string(),
            }),
        );
        let collect = async {
            let mut bytes = Vec::new();
            let mut stream = Box::pin(stream);
            while let Some(chunk) = stream.next().await {
                bytes.extend_from_slice(&chunk?);
            }
            Ok::<_, bollard::errors::Error>(bytes)
        };
        let bytes = match self
            .call_opt(|| format!("read {path} in container {container}"), collect)
            .await?
        {
            None => return Ok(None),
            Some(b) => b,
        };
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut files = Vec::new();
        let entries = archive
            .entries()
            .map_err(|e| error::environment(format!("read {path} in {container}: {e}")))?;
        for entry in entries {
            let mut entry = entry
                .map_err(|e| error::environment(format!("read {path} in {container}: {e}")))?;
            if entry.header().entry_type() != tar::EntryType::Regular {
                continue;
            }
            let name = entry
                .path()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut data)
                .map_err(|e| error::environment(format!("read {path} in {container}: {e}")))?;
            files.push((name, data));
        }
        Ok(Some(files))
    }

    /// Runs a one-off container to completion: creates and starts it, passes each line of its
    /// output to `on_line`, waits up to `limit`, and removes it whatever happened. `Ok(None)`
    /// means it ran out of time (it was killed).
    pub async fn run_to_completion(
        &self,
        spec: &ContainerSpec,
        limit: Duration,
        mut on_line: impl FnMut(&str),
    ) -> Result<Option<i64>> {
        let _ = self.remove(&spec.name).await;
        self.create(spec).await?;
        let run = async {
            self.start(&spec.name).await?;
            let mut logs = self.api.logs(
                &spec.name,
                Some(LogsOptions::<String> {
                    follow: true,
                    stdout: true,
                    stderr: true,
                    ..Default::default()
                }),
            );
            let mut partial = String::new();
            while let Some(Ok(chunk)) = logs.next().await {
                partial.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
                while let Some(i) = partial.find('\n') {
                    let line: String = partial.drain(..=i).collect();
                    on_line(line.trim_end());
                }
            }
            if !partial.trim().is_empty() {
                on_line(partial.trim_end());
            }
            let mut wait = self.api.wait_container(
                &spec.name,
                Some(WaitContainerOptions {
                    condition: "not-running",
                }),
            );
            let code = match wait.next().await {
                Some(Ok(r)) => r.status_code,
                // bollard reports a non-zero exit as this error
                Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
                Some(Err(e)) => {
                    return Err(error::environment(format!(
                        "wait for container {}: {}",
                        spec.name,
                        describe(&e)
                    )))
                }
                None => -1,
            };
            Ok::<i64, anyhow::Error>(code)
        };
        let outcome = tokio::time::timeout(limit, run).await;
        let _ = self.remove(&spec.name).await;
        match outcome {
            Ok(Ok(code)) => Ok(Some(code)),
            Ok(Err(e)) => Err(e),
            Err(_) => Ok(None),
        }
    }

    /// The last `lines` lines of a container's output, for error messages.
    pub async fn logs_tail(&self, container: &str, lines: usize) -> String {
        let mut stream = self.api.logs(
            container,
            Some(LogsOptions::<String> {
                stdout: true,
                stderr: true,
                tail: lines.to_string(),
                ..Default::default()
            }),
        );
        let mut out = String::new();
        let read = async {
            while let Some(Ok(chunk)) = stream.next().await {
                out.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), read).await;
        out
    }
}

/// What ssh said when the connection failed; it may take a moment to exit and say it.
async fn ssh_error(t: &ssh::Tunnel) -> Option<String> {
    for _ in 0..20 {
        let said = t.last_error();
        if !said.is_empty() {
            return Some(format!("ssh said: {}", said.trim_end_matches('.')));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
