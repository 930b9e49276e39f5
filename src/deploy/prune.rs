//! `bgd prune`: removes the images of this app's old releases from the Docker host. What to
//! remove is decided by pure code (`decide`) from the history (the releases, newest first),
//! the record (live and idle releases) and every container on the host; the removal runs
//! under the deploy lock, never by force, and is recorded in the history.

use super::lock;
use super::observe::observe;
use super::Host;
use crate::nginx::{LockUse, RecordWrite};
use crate::state::{AppState, HistoryEntry};
use anyhow::Result;
use std::collections::HashMap;

/// What prune removes and what it keeps, with why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrunePlan {
    /// Image references to remove, oldest release first
    pub remove: Vec<String>,
    /// (image reference, why it stays), newest release first
    pub keep: Vec<(String, String)>,
}

/// Decides, without touching anything: the images of this app's releases (deploys in the
/// history that succeeded, newest first) that are still on the host (`ids`: reference -> image ID, `None`
/// when absent) go, except the live and idle releases' images, those of the last `retain`
/// releases, and any image a container on the host uses (`users`: name, reference, ID).
pub fn decide(
    history: &[HistoryEntry],
    record: &AppState,
    users: &[(String, String, String)],
    ids: &HashMap<String, Option<String>>,
    retain: usize,
) -> PrunePlan {
    let mut newest_first: Vec<&str> = Vec::new();
    for e in history.iter().rev() {
        let Some(image) = e.image.as_deref() else {
            continue;
        };
        // releases that went live or waited as a candidate; a rejected one's image is junk
        if e.command.starts_with("deploy") && e.outcome == "ok" && !newest_first.contains(&image) {
            newest_first.push(image);
        }
    }
    let mut plan = PrunePlan::default();
    for (i, image) in newest_first.iter().enumerate() {
        let Some(Some(id)) = ids.get(*image) else {
            continue; // not on the host any more
        };
        let why = if record.live.as_ref().is_some_and(|l| l.image == *image) {
            Some("the live release's".to_string())
        } else if let Some(idle) = record.idle.as_ref().filter(|i| i.release.image == *image) {
            Some(format!("the {} release's", idle.role.as_str()))
        } else if i < retain {
            Some(format!("one of the last {retain} releases"))
        } else {
            users
                .iter()
                .find(|(_, r, used)| r == image || used == id)
                .map(|(name, _, _)| format!("used by the container {name}"))
        };
        match why {
            Some(why) => plan.keep.push((image.to_string(), why)),
            None => plan.remove.push(image.to_string()),
        }
    }
    plan.remove.reverse();
    plan
}

/// What `prune` did (or, with `--plan`, would do).
#[derive(Debug, Clone, Default)]
pub struct Pruned {
    pub plan: PrunePlan,
    /// Removed (empty with `--plan`)
    pub removed: Vec<String>,
    /// (image, why) that Docker refused to remove after all
    pub refused: Vec<(String, String)>,
}

/// Looks at the host and decides (`decide`); with `apply`, removes under the deploy lock and
/// records it in the history.
pub async fn prune(host: &Host<'_>, apply: bool) -> Result<Pruned> {
    let holder = if apply {
        let lb = host.docker.inspect(&host.config.lb.container).await?;
        host.running_lb(lb.as_ref(), "prune")?;
        Some(lock::acquire(host, "bgd prune").await?)
    } else {
        None
    };
    let result = async {
        let obs = observe(host).await?;
        let users = host.docker.image_users().await?;
        let mut ids = HashMap::new();
        for e in &obs.history {
            if let Some(image) = &e.image {
                if !ids.contains_key(image) {
                    ids.insert(image.clone(), host.docker.image_id(image).await?);
                }
            }
        }
        let plan = decide(
            &obs.history,
            &obs.state,
            &users,
            &ids,
            host.config.retain as usize,
        );
        let mut pruned = Pruned {
            plan,
            ..Pruned::default()
        };
        let Some(holder) = &holder else {
            return Ok(pruned);
        };
        for image in &pruned.plan.remove {
            match host.docker.remove_image(image).await {
                Ok(_) => pruned.removed.push(image.clone()),
                Err(e) => pruned.refused.push((image.clone(), format!("{e:#}"))),
            }
        }
        if !pruned.removed.is_empty() || !pruned.refused.is_empty() {
            let mut entry = HistoryEntry::starting("prune");
            if !pruned.refused.is_empty() {
                entry.outcome = "failed".into();
                entry.exit_code = 6;
            }
            entry.message = host.out.redact(&summary(&pruned));
            let write = RecordWrite {
                state: None,
                replace_untrusted: false,
                history: serde_json::to_string(&entry)?,
                run: entry.run.clone(),
            };
            host.nginx()
                .record(&write, &LockUse::Held(holder.token.clone()))
                .await
                .map_err(|e| host.nginx_failure(e, "recording the prune in the history"))?;
        }
        Ok(pruned)
    }
    .await;
    if let Some(holder) = &holder {
        lock::release(host, holder).await;
    }
    result
}

/// One line: what went, what Docker refused.
pub fn summary(p: &Pruned) -> String {
    let mut text = if p.removed.is_empty() {
        "removed no image".to_string()
    } else {
        format!("removed {}", p.removed.join(", "))
    };
    if !p.refused.is_empty() {
        let refused: Vec<String> = p.refused.iter().map(|(i, _)| i.clone()).collect();
        text.push_str(&format!("; Docker refused {}", refused.join(", ")));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Color, Release, Role};
    use crate::state::Idle;

    fn deploy(image: &str) -> HistoryEntry {
        HistoryEntry {
            image: Some(image.into()),
            ..HistoryEntry::starting("deploy")
        }
    }

    fn release(color: Color, image: &str) -> Release {
        Release {
            color,
            image: image.into(),
            release: format!("r-{image}"),
        }
    }

    #[test]
    fn old_releases_go_unless_live_idle_recent_or_used() {
        let history: Vec<HistoryEntry> = ["w:1", "w:2", "w:3", "w:2", "w:4", "w:5", "w:6"]
            .iter()
            .map(|i| deploy(i))
            .chain([HistoryEntry {
                command: "rollback".into(),
                ..deploy("w:5")
            }])
            .collect();
        let record = AppState {
            live: Some(release(Color::Blue, "w:5")),
            idle: Some(Idle {
                release: release(Color::Green, "w:6"),
                role: Role::Parked,
            }),
            ..AppState::default()
        };
        let ids: HashMap<String, Option<String>> = ["w:1", "w:2", "w:3", "w:4", "w:5", "w:6"]
            .iter()
            .map(|i| (i.to_string(), Some(format!("sha256:{i}"))))
            .chain([("w:0".to_string(), None)])
            .collect();
        let users = vec![(
            "other-app".to_string(),
            "x:9".to_string(),
            "sha256:w:3".to_string(),
        )];
        let p = decide(&history, &record, &users, &ids, 3);
        // newest first: 6 (idle), 5 (live), 4 (the last 3), 2 (4th: goes), 3 (used), 1 (goes)
        assert_eq!(p.remove, vec!["w:1".to_string(), "w:2".to_string()]);
        let kept: Vec<&str> = p.keep.iter().map(|(i, _)| i.as_str()).collect();
        assert_eq!(kept, vec!["w:6", "w:5", "w:4", "w:3"]);
        assert!(p.keep[0].1.contains("parked"), "{:?}", p.keep);
        assert!(p.keep[3].1.contains("other-app"), "{:?}", p.keep);
        // nothing on the host, nothing to do
        assert_eq!(
            decide(&history, &record, &users, &HashMap::new(), 3),
            PrunePlan::default()
        );
        // retain counts releases, the live and idle ones among them
        let p = decide(&history, &record, &users, &ids, 2);
        assert_eq!(
            p.remove,
            vec!["w:1".to_string(), "w:2".to_string(), "w:4".to_string()]
        );
    }
}
