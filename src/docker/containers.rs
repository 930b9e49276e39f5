//! Containers and networks: create, start, stop, remove, inspect, list, rename, connect,
//! logs, and one-off containers run to completion.

use super::CALL_TIMEOUT;
use super::{describe, is_conflict, is_not_found, ContainerInfo, ContainerSpec, Docker};
use crate::error;
use anyhow::Result;
use bollard::container::{
    Config as BollardConfig, CreateContainerOptions, InspectContainerOptions,
    ListContainersOptions, LogsOptions, NetworkingConfig, RemoveContainerOptions,
    RenameContainerOptions, StartContainerOptions, StopContainerOptions, WaitContainerOptions,
};
use bollard::models::{
    EndpointSettings, HostConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::network::{ConnectNetworkOptions, CreateNetworkOptions};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::time::Duration;

impl Docker {
    /// Creates a user-defined bridge network unless it exists. Returns true if created.
    pub async fn ensure_network(
        &self,
        name: &str,
        labels: HashMap<String, String>,
    ) -> Result<bool> {
        if self.network_exists(name).await? {
            return Ok(false);
        }
        let what = || format!("create network {name}");
        let created = self
            .call_within(
                &what,
                CALL_TIMEOUT,
                self.api.create_network(CreateNetworkOptions {
                    name: name.to_string(),
                    driver: "bridge".to_string(),
                    check_duplicate: true,
                    labels,
                    ..Default::default()
                }),
            )
            .await?;
        match created {
            Ok(_) => Ok(true),
            // Another bgd created it between our look and our create: fine.
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(error::environment(format!("{}: {}", what(), describe(&e)))),
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

    /// Removes a named volume; a missing one is not an error.
    pub async fn remove_volume(&self, name: &str) -> Result<()> {
        self.call_opt(
            || format!("remove volume {name}"),
            self.api.remove_volume(
                name,
                Some(bollard::volume::RemoveVolumeOptions { force: true }),
            ),
        )
        .await?;
        Ok(())
    }

    /// The containers on a network now, as (name, IPv4 address); empty when it is gone.
    pub async fn network_members(&self, name: &str) -> Result<Vec<(String, String)>> {
        let network = self
            .call_opt(
                || format!("inspect network {name}"),
                self.api.inspect_network::<String>(name, None),
            )
            .await?;
        let mut members: Vec<(String, String)> = network
            .and_then(|n| n.containers)
            .unwrap_or_default()
            .into_values()
            .filter_map(|c| {
                let ip = c.ipv4_address?;
                let ip = ip.split('/').next().unwrap_or_default().to_string();
                Some((c.name?, ip)).filter(|(_, ip)| !ip.is_empty())
            })
            .collect();
        members.sort();
        Ok(members)
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
        // its aliases on its network, so others reach it by a name that outlives its address
        let endpoint = EndpointSettings {
            aliases: (!spec.aliases.is_empty()).then(|| spec.aliases.clone()),
            ..Default::default()
        };
        let config = BollardConfig {
            networking_config: Some(NetworkingConfig {
                endpoints_config: HashMap::from([(spec.network.clone(), endpoint)]),
            }),
            image: Some(spec.image.clone()),
            env: Some(spec.env.clone()),
            cmd: spec.cmd.clone(),
            entrypoint: spec.entrypoint.clone(),
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
            self.api
                .rename_container(name, RenameContainerOptions { name: to }),
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

    /// Stops a container, giving it `grace` to shut down cleanly. Absent or already stopped
    /// is fine.
    pub async fn stop(&self, name: &str, grace: Duration) -> Result<()> {
        let secs = grace.as_secs().max(1);
        let what = || format!("stop container {name}");
        let fut = self
            .api
            .stop_container(name, Some(StopContainerOptions { t: secs as i64 }));
        match self.call_within(&what, CALL_TIMEOUT + grace, fut).await? {
            Ok(()) => Ok(()),
            // 404: gone; 304: already stopped
            Err(e) if is_not_found(&e) || super::status_of(&e) == Some(304) => Ok(()),
            Err(e) => Err(error::environment(format!("{}: {}", what(), describe(&e)))),
        }
    }

    /// Removes a container, running or not. Absent is fine. When the daemon is already
    /// removing it (a run that was killed asked for it), waits until it is gone, so the name
    /// is free when this returns.
    pub async fn remove(&self, name: &str) -> Result<()> {
        let what = || format!("remove container {name}");
        let options = RemoveContainerOptions {
            force: true,
            ..Default::default()
        };
        let removed = self
            .call_within(
                &what,
                CALL_TIMEOUT,
                self.api.remove_container(name, Some(options)),
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
        Ok(found.map(ContainerInfo::from))
    }

    /// Names of the containers (any state) carrying every `key=value` label given.
    pub async fn list_by_labels(&self, labels: &[(&str, &str)]) -> Result<Vec<String>> {
        let mut names: Vec<String> = self
            .list_labelled(labels)
            .await?
            .into_iter()
            .filter_map(|c| c.names.and_then(|n| n.into_iter().next()))
            .map(|n| n.trim_start_matches('/').to_string())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Containers (any state) with all of `labels`, as one list call describes them: name,
    /// id, image, labels, state, how long it has run and each network's address, but no
    /// settings, aliases, health or restart count (`inspect` has those). The image is the
    /// reference it was created from, or its image's ID when that reference has moved to
    /// another image.
    pub async fn list_brief(&self, labels: &[(&str, &str)]) -> Result<Vec<ContainerInfo>> {
        let list = self.list_labelled(labels).await?;
        Ok(list
            .into_iter()
            .map(|c| ContainerInfo {
                id: c.id.unwrap_or_default(),
                name: c
                    .names
                    .and_then(|n| n.into_iter().next())
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_string(),
                image: c.image.unwrap_or_default(),
                labels: c.labels.unwrap_or_default(),
                state: c.state.unwrap_or_else(|| "unknown".into()),
                networks: c
                    .network_settings
                    .and_then(|n| n.networks)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.ip_address.unwrap_or_default()))
                    .collect(),
                image_id: c.image_id.unwrap_or_default(),
                up_for: c.status.as_deref().and_then(super::types::up_for),
                ..Default::default()
            })
            .collect())
    }

    async fn list_labelled(
        &self,
        labels: &[(&str, &str)],
    ) -> Result<Vec<bollard::models::ContainerSummary>> {
        let filter: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        self.list_filtered(
            "list containers",
            HashMap::from([("label".to_string(), filter)]),
        )
        .await
    }

    /// The containers (any state) that pass Docker's list `filters` (none: every one);
    /// `what` names the request in an error.
    async fn list_filtered(
        &self,
        what: &str,
        filters: HashMap<String, Vec<String>>,
    ) -> Result<Vec<bollard::models::ContainerSummary>> {
        self.call(
            || what.to_string(),
            self.api.list_containers(Some(ListContainersOptions {
                all: true,
                filters,
                ..Default::default()
            })),
        )
        .await
    }

    /// The values of label `key` on the containers (any state) attached to `network` that
    /// have it, sorted, each once.
    pub async fn label_values_on(&self, network: &str, key: &str) -> Result<Vec<String>> {
        let list = self
            .list_filtered(
                &format!("list the containers on {network}"),
                HashMap::from([
                    ("label".to_string(), vec![key.to_string()]),
                    ("network".to_string(), vec![network.to_string()]),
                ]),
            )
            .await?;
        let mut values: Vec<String> = list
            .into_iter()
            .filter_map(|c| c.labels?.get(key).cloned())
            .collect();
        values.sort();
        values.dedup();
        Ok(values)
    }

    /// Every container on the host (any state, any app): its name, the image reference it
    /// was created from, and that image's ID.
    pub async fn image_users(&self) -> Result<Vec<(String, String, String)>> {
        let list = self
            .list_filtered("list containers", HashMap::new())
            .await?;
        Ok(list
            .into_iter()
            .map(|c| {
                let name = c
                    .names
                    .and_then(|n| n.into_iter().next())
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_string();
                (
                    name,
                    c.image.unwrap_or_default(),
                    c.image_id.unwrap_or_default(),
                )
            })
            .collect())
    }

    /// Runs a one-off container to completion: creates and starts it, passes each line of its
    /// output to `on_line`, waits up to `limit`, and removes it whatever happened. `Ok(None)`
    /// means it ran out of time (it was killed).
    pub async fn run_to_completion(
        &self,
        spec: &ContainerSpec,
        limit: Duration,
        on_line: impl FnMut(&str),
    ) -> Result<Option<i64>> {
        let _ = self.remove(&spec.name).await;
        self.create(spec).await?;
        let outcome = tokio::time::timeout(limit, self.follow(&spec.name, on_line)).await;
        let _ = self.remove(&spec.name).await;
        match outcome {
            Ok(Ok(code)) => Ok(Some(code)),
            Ok(Err(e)) => Err(e),
            Err(_) => Ok(None),
        }
    }

    /// Starts a created container, streams its output line by line, returns its exit code.
    async fn follow(&self, name: &str, mut on_line: impl FnMut(&str)) -> Result<i64> {
        self.start(name).await?;
        let mut logs = self.api.logs(
            name,
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
            name,
            Some(WaitContainerOptions {
                condition: "not-running",
            }),
        );
        match wait.next().await {
            Some(Ok(r)) => Ok(r.status_code),
            // bollard reports a non-zero exit as this error
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(error::environment(format!(
                "wait for container {name}: {}",
                describe(&e)
            ))),
            None => Ok(-1),
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
