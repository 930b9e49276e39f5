//! `bgd repair`: rebuilds bgd's record from what nginx routes (the header bgd writes at the
//! top of every config: colors, releases, the preview's role, the generation) and the
//! containers' labels (images). It changes no routing: it makes the record say what nginx
//! does. Under the deploy lock, recorded in the history.

use super::host::Host;
use super::lock;
use super::observe::{observe, Observed};
use crate::error;
use crate::model::{Color, Release, Role};
use crate::nginx::{LockUse, RecordWrite};
use crate::state::{self, AppState, HistoryEntry, Idle};
use anyhow::Result;

/// The image of a release nginx routes but whose containers are all gone.
pub const NO_CONTAINER: &str = "(no container left)";

/// What repair decided.
pub struct Repaired {
    pub state: AppState,
    /// What was wrong with the record before (empty when nothing was)
    pub was: Vec<String>,
}

pub async fn repair(host: &Host<'_>) -> Result<Repaired> {
    let lb = host.docker.inspect(&host.config.lb.container).await?;
    host.running_lb(lb.as_ref(), "repair")?;
    let holder = lock::acquire(host, "bgd repair").await?;
    let result = async {
        let mut obs = observe(host).await?;
        host.features(&mut obs).await?;
        let was = obs.record_problems();
        let state = rebuild(&obs)?;
        let entry = HistoryEntry {
            image: state.live.as_ref().map(|l| l.image.clone()),
            release: state.live.as_ref().map(|l| l.release.clone()),
            to: state.live.as_ref().map(|l| l.color),
            message: host.out.redact(&format!(
                "record rebuilt from nginx and the labels{}",
                if was.is_empty() {
                    String::new()
                } else {
                    format!(" (was: {})", was.join("; "))
                }
            )),
            ..HistoryEntry::starting("repair")
        };
        let write = RecordWrite {
            state: Some(state.to_record()?),
            // the record this replaces is the one that could not be trusted
            replace_untrusted: true,
            history: serde_json::to_string(&entry)?,
            run: entry.run.clone(),
        };
        host.nginx()
            .record(&write, &LockUse::Held(holder.token.clone()))
            .await
            .map_err(|e| host.nginx_failure(e, "writing the repaired record"))?;
        Ok(Repaired { state, was })
    }
    .await;
    lock::release(host, &holder).await;
    result
}

/// The record that says what nginx does: its header's colors, releases and preview role,
/// and the images the containers of those releases run.
fn rebuild(obs: &Observed) -> Result<AppState> {
    let header = obs.header();
    let mut state = AppState {
        app: obs.state.app.clone(),
        nginx: obs.state.nginx.clone(),
        updated_at: state::now(),
        ..AppState::default()
    };
    let Some(h) = header else {
        // nginx routes nothing of this app: nothing is live, any container is a leftover
        return Ok(state);
    };
    state.generation = h.generation;
    // the header as the flag has it: the record says so, for bgd versions that know no flag
    state.flipped_at = obs.flipped().then_some(h.generation);
    state.live = release_of(obs, h.live.as_deref(), h.live_release.as_deref())?;
    let routed = release_of(obs, h.preview.as_deref(), h.preview_release.as_deref())?;
    let role = match (&routed, h.preview_role.as_deref()) {
        (Some(_), Some("parked")) => Role::Parked,
        // a config of an older bgd does not say: a candidate is the safe reading (rollback
        // refuses it; `switch` gates it again)
        (Some(_), _) => Role::Candidate,
        // the preview listener routes nothing: a release parked stopped (`park.mode:
        // stopped`) is still the rollback target, found by its labels alone
        (None, _) => Role::Parked,
    };
    let idle = routed.or_else(|| parked_by_labels(obs, state.live.as_ref()));
    // a waiting candidate's set-aside release: the other release in its color, under the
    // aside names (`…-parked`), which `discard` gives back
    if let (Some(candidate), Role::Candidate) = (&idle, role) {
        state.set_aside = aside_by_names(obs, candidate);
    }
    // a canary nginx serves: the candidate's share of live clients, as the header says
    if let (Some(share), Role::Candidate, Some(_)) = (h.canary, role, &idle) {
        state.canary = Some(state::Canary {
            share,
            since: state::now(),
        });
    }
    state.idle = idle.map(|release| Idle { release, role });
    Ok(state)
}

/// The one release in `candidate`'s color, other than it, whose containers all carry their
/// aside names.
fn aside_by_names(obs: &Observed, candidate: &Release) -> Option<Release> {
    let mut found: Vec<Release> = Vec::new();
    let mut named_aside = true;
    for c in obs.of_color(candidate.color) {
        let Some(release) = c.label(crate::model::LABEL_RELEASE) else {
            continue;
        };
        if release == candidate.release {
            continue;
        }
        named_aside &= c.name.ends_with("-parked");
        if !found.iter().any(|r| r.release == release) {
            found.push(Release {
                color: candidate.color,
                image: c.image.clone(),
                release: release.to_string(),
            });
        }
    }
    (found.len() == 1 && named_aside).then(|| found.remove(0))
}

/// The one release in the color that is not live, when nginx's config names none there.
/// With nothing live there is nothing to roll back from: no guess.
fn parked_by_labels(obs: &Observed, live: Option<&Release>) -> Option<Release> {
    let color = live?.color.other();
    match release_of(obs, Some(color.as_str()), None) {
        Ok(Some(r)) if r.image != NO_CONTAINER => Some(r),
        _ => None,
    }
}

/// The release nginx routes in `color`: the one its header names, else the only one whose
/// containers run in that color.
fn release_of(obs: &Observed, color: Option<&str>, named: Option<&str>) -> Result<Option<Release>> {
    let Some(color) = color.and_then(Color::parse) else {
        return Ok(None);
    };
    let mut seen: Vec<Release> = Vec::new();
    for c in obs.of_color(color) {
        let Some(release) = c.label(crate::model::LABEL_RELEASE) else {
            continue;
        };
        if named.is_some_and(|n| n != release) || seen.iter().any(|r| r.release == release) {
            continue;
        }
        seen.push(Release {
            color,
            image: c.image.clone(),
            release: release.to_string(),
        });
    }
    match seen.len() {
        1 => Ok(seen.pop()),
        // nginx routes a release whose containers are gone: the record says so, so that a
        // deploy replaces it (it will warn that the live color has no running replica)
        0 => Ok(Some(Release {
            color,
            image: NO_CONTAINER.into(),
            release: named.unwrap_or("unknown").into(),
        })),
        _ => Err(error::unsafe_state(format!(
            "nginx routes {color}, which holds several releases ({}), and its config does not say which (written by an older bgd): remove the containers of the releases that do not serve, then repair again",
            seen.iter().map(|r| r.release.as_str()).collect::<Vec<_>>().join(", ")
        ))),
    }
}
