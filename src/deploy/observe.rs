//! Observe: the host -> what bgd knows. Containers come from labels, the routing from the
//! config bgd wrote, the rest from the state record beside it. Nothing is remembered locally.
//! Every command that reads the host (deploy, switch, rollback, status, history, render, lock)
//! reads it here.

use super::host::Host;
use super::specs::pool_of;
use crate::config::Config;
use crate::docker::{ContainerInfo, Docker, ImageDefaults};
use crate::lock::{Holder, LockState};
use crate::model::{Color, Pool, Release, LABEL_APP, LABEL_COLOR, LABEL_MANAGED};
use crate::nginx::render;
use crate::state::{self, AppState, HistoryEntry, Record};
use anyhow::Result;
use std::collections::HashMap;

#[derive(Debug, Default, Clone)]
pub struct Observed {
    pub lb: Option<ContainerInfo>,
    /// The record as read
    pub record: Record,
    /// The record's state when it could be read (else as if nothing were deployed: never act
    /// on it without `record_problems` being empty)
    pub state: AppState,
    pub history: Vec<HistoryEntry>,
    /// The config file bgd activated last, as nginx has it
    pub active_config: Option<String>,
    /// Every container of this app that bgd manages, any state
    pub containers: Vec<ContainerInfo>,
    /// Who holds the deploy lock, if anyone
    pub lock: LockState,
    /// The rollback flags in bgd's directory (`flip-GENERATION`), and their markers
    /// (`promoted-GENERATION`: that config's candidate has been live)
    pub flags: Vec<String>,
}

impl Observed {
    /// Containers of one color, by replica number.
    pub fn of_color(&self, color: Color) -> Vec<&ContainerInfo> {
        let mut v: Vec<&ContainerInfo> = self
            .containers
            .iter()
            .filter(|c| c.label(LABEL_COLOR) == Some(color.as_str()))
            .collect();
        v.sort_by_key(|c| c.replica());
        v
    }

    /// The containers of one release, by replica number.
    pub fn containers_of(&self, release: &Release) -> Vec<&ContainerInfo> {
        self.of_color(release.color)
            .into_iter()
            .filter(|c| c.is_of(release))
            .collect()
    }

    /// The pool of a release's running replicas, at the addresses Docker reports now.
    pub fn pool(&self, config: &Config, release: &Release) -> Pool {
        pool_of(config, release, &self.containers_of(release))
    }

    /// The live release's pool, if anything is live.
    pub fn live_pool(&self, config: &Config) -> Option<Pool> {
        self.state.live.as_ref().map(|l| self.pool(config, l))
    }

    /// What the config nginx has now routes, from bgd's header of it (if bgd wrote one),
    /// with live and preview the other way round while its rollback flag is raised.
    pub fn header(&self) -> Option<render::Header> {
        let header = self
            .active_config
            .as_deref()
            .and_then(render::read_header)?;
        let raised = header.flip.as_ref().is_some_and(|f| self.flags.contains(f));
        // a candidate whose config's flag was ever raised has been live: it is parked now
        let marked = header.flip.is_some()
            && (raised || self.flags.contains(&render::marker_name(header.generation)));
        let mut header = header.flipped(raised);
        if marked && header.preview_role.as_deref() == Some("candidate") {
            header.preview_role = Some("parked".into());
        }
        Some(header)
    }

    /// Whether the active config's rollback flag is raised (live traffic flipped to the
    /// color its text names as the preview's).
    pub fn flipped(&self) -> bool {
        let header = self.active_config.as_deref().and_then(render::read_header);
        header
            .and_then(|h| h.flip)
            .is_some_and(|f| self.flags.contains(&f))
    }

    /// The generation nginx has now (the larger of the record and the active file's header).
    pub fn generation(&self) -> u64 {
        let from_file = self.header().map_or(0, |h| h.generation);
        self.state.generation.max(from_file)
    }

    /// How bgd's record disagrees with what nginx routes (its active config) or cannot be
    /// read at all. Acting on such a record could send the deploy into the live color's
    /// slot: deploy, switch and rollback refuse until `bgd repair` rebuilds it.
    pub fn record_problems(&self) -> Vec<String> {
        let header = self.header();
        let routed = header.as_ref().and_then(|h| h.live.clone());
        let recorded = self.state.live.as_ref().map(|l| l.color.to_string());
        match &self.record {
            Record::Unreadable(why) => vec![format!("bgd's record (state.json) cannot be read: {why}")],
            Record::TooNew(schema) => vec![format!(
                "bgd's record was written by a newer bgd (record schema {schema}; this bgd knows up to {})",
                state::SCHEMA
            )],
            Record::Absent => routed
                .map(|c| vec![format!("bgd's record is missing, but nginx routes live traffic to {c}")])
                .unwrap_or_default(),
            Record::Read(_) if header.is_some() && routed != recorded => vec![format!(
                "bgd's record says {} is live, but nginx's config routes live traffic to {}",
                recorded.as_deref().unwrap_or("nothing"),
                routed.as_deref().unwrap_or("nothing")
            )],
            Record::Read(s) => match (header.and_then(|h| h.live_release), &s.live) {
                (Some(routed), Some(l)) if routed != l.release => vec![format!(
                    "bgd's record says release {} is live in {}, but nginx's config routes release {routed}",
                    l.release, l.color
                )],
                _ => Vec::new(),
            },
        }
    }

    /// What the host shows, in words: what nginx routes and which releases run in each color.
    pub fn found(&self) -> String {
        let header = self.header();
        let routes = match &header {
            Some(h) => format!(
                "nginx routes live traffic to {} and the preview listener to {} (generation {})",
                h.live.as_deref().unwrap_or("nothing"),
                h.preview.as_deref().unwrap_or("nothing"),
                h.generation
            ),
            None => "nginx has no config of bgd's".to_string(),
        };
        let colors: Vec<String> = [Color::Blue, Color::Green]
            .into_iter()
            .map(|c| {
                let mut releases: Vec<String> = self
                    .of_color(c)
                    .iter()
                    .map(|x| {
                        format!(
                            "{} ({})",
                            x.label(crate::model::LABEL_RELEASE).unwrap_or("?"),
                            x.image
                        )
                    })
                    .collect();
                releases.dedup();
                format!(
                    "{c}: {}",
                    if releases.is_empty() {
                        "no containers".into()
                    } else {
                        releases.join(", ")
                    }
                )
            })
            .collect();
        format!("{routes}; containers of {}", colors.join("; "))
    }

    /// Containers of the app that belong to neither the live nor the idle release.
    pub fn strays(&self) -> Vec<&ContainerInfo> {
        let known: Vec<&Release> = self
            .state
            .live
            .iter()
            .chain(self.state.idle.iter().map(|i| &i.release))
            .chain(self.state.set_aside.iter())
            .collect();
        self.containers
            .iter()
            .filter(|c| !known.iter().any(|r| c.is_of(r)))
            .collect()
    }
}

/// Every container of the app that bgd manages (any state), inspected.
pub async fn list_containers(docker: &Docker, config: &Config) -> Result<Vec<ContainerInfo>> {
    let names = docker
        .list_by_labels(&[(LABEL_MANAGED, "true"), (LABEL_APP, &config.app)])
        .await?;
    let inspected = futures_util::future::join_all(names.iter().map(|n| docker.inspect(n))).await;
    let mut containers = Vec::new();
    for c in inspected {
        // a container removed between list and inspect is simply gone
        if let Some(c) = c? {
            containers.push(c);
        }
    }
    Ok(containers)
}

/// What the images of `containers` contribute to them (env, command, labels), by image ID,
/// for drift checks. An image no longer on the host is left out.
pub async fn image_defaults(
    docker: &Docker,
    containers: &[&ContainerInfo],
) -> Result<HashMap<String, ImageDefaults>> {
    let mut ids: Vec<&str> = containers.iter().map(|c| c.image_id.as_str()).collect();
    ids.sort();
    ids.dedup();
    let found =
        futures_util::future::join_all(ids.iter().map(|id| docker.image_defaults(id))).await;
    let mut out = HashMap::new();
    for (id, d) in ids.into_iter().zip(found) {
        if let Some(d) = d? {
            out.insert(id.to_string(), d);
        }
    }
    Ok(out)
}

/// Reads everything bgd needs about the app from the host. The reads run at once; bgd's
/// files come back in one archive read (each costs a container-filesystem operation).
pub async fn observe(host: &Host<'_>) -> Result<Observed> {
    let (docker, config) = (host.docker, host.config);
    // the nginx container and bgd's files in it are read at once (a missing container
    // simply has no files)
    let files = async {
        let read = async {
            host.nginx()
                .read_files()
                .await
                .map_err(|e| host.nginx_failure(e, "reading bgd's record"))
        };
        let (lb, files) = tokio::join!(docker.inspect(&config.lb.container), read);
        match lb? {
            Some(lb) => Ok::<_, anyhow::Error>((Some(lb), files?)),
            None => Ok((None, Vec::new())),
        }
    };
    let (containers, (lb, files)) = tokio::try_join!(list_containers(docker, config), files)?;
    let mut observed = Observed {
        lb,
        containers,
        ..Default::default()
    };
    for (name, data) in files {
        match name.as_str() {
            state::STATE_FILE => {
                observed.record = state::parse_state(&data);
                if let Record::Read(s) = &observed.record {
                    observed.state = (**s).clone();
                }
            }
            state::HISTORY_FILE => observed.history = state::parse_history(&data),
            "lock/" if observed.lock == LockState::Free => observed.lock = LockState::Unreadable,
            "lock/holder.json" => {
                observed.lock = serde_json::from_slice::<Holder>(&data)
                    .map_or(LockState::Unreadable, LockState::Held)
            }
            state::ACTIVE_FILE => {
                observed.active_config = Some(String::from_utf8_lossy(&data).into_owned())
            }
            flag if flag.starts_with("flip-") || flag.starts_with("promoted-") => {
                observed.flags.push(flag.to_string())
            }
            _ => {}
        }
    }
    observed.state.app = config.app.clone();
    Ok(observed)
}
