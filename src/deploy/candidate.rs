//! The release about to go live, on the idle color: freeing the color (tidy, set the parked
//! release aside), starting the candidate (or the replicas of a release parked stopped),
//! routing the preview listener to it, letting the set-aside release go, and the undo path
//! that puts all of it back when a step before the switch fails.

use super::run::{Command, Run, SetAside};
use super::specs::{pool_of, render_input, replica_specs};
use crate::docker::ContainerInfo;
use crate::error;
use crate::model::{Pool, Role, LABEL_APP, LABEL_MANAGED};
use crate::state::Idle;
use anyhow::Result;

/// `tidy`: leftovers of killed runs are removed; live containers a killed deploy left under
/// their aside names get their own names back.
pub async fn tidy(run: &mut Run<'_>) -> Result<String> {
    let host = run.host;
    let freeing = run.freeing.clone();
    host.remove_all(&freeing.remove).await;
    for (now, own) in &freeing.rename {
        if let Err(e) = host.docker.rename(now, own).await {
            host.out.warn(&format!("{e:#}"));
        }
    }
    let mut done = Vec::new();
    if !freeing.remove.is_empty() {
        done.push(format!("removed {}", freeing.remove.join(", ")));
    }
    if !freeing.rename.is_empty() {
        done.push(format!(
            "renamed {} live container(s)",
            freeing.rename.len()
        ));
    }
    Ok(done.join("; "))
}

/// `set-aside`: the parked release is renamed and keeps running, so a rejected candidate
/// gives it back. Its replicas are renamed all at once, each one's name now recorded whether
/// or not the others' renames worked, so that a set-aside failing half way is undone too.
pub async fn set_aside(run: &mut Run<'_>) -> Result<String> {
    let host = run.host;
    let Some((release, replicas)) = run.freeing.set_aside.clone() else {
        return Ok("nothing to set aside".into());
    };
    let renames = replicas.iter().map(|r| async move {
        if r.now == r.aside {
            Ok(())
        } else {
            host.docker.rename(&r.now, &r.aside).await
        }
    });
    let renamed = futures_util::future::join_all(renames).await;
    let mut containers = Vec::new();
    let mut failed = None;
    for (r, renamed) in replicas.into_iter().zip(renamed) {
        let now = match renamed {
            Ok(()) => r.aside,
            Err(e) => {
                failed.get_or_insert(e);
                // a rename whose answer was lost (a timeout, a cut connection) may still
                // have happened at the daemon: then the container bgd listed answers to
                // the new name, and its old one to nothing
                let id = run
                    .obs
                    .containers
                    .iter()
                    .find(|c| c.name == r.now)
                    .map(|c| &c.id);
                let gone = matches!(host.docker.inspect(&r.now).await, Ok(None));
                let moved = gone
                    && matches!(host.docker.inspect(&r.aside).await,
                        Ok(Some(c)) if Some(&c.id) == id);
                if moved {
                    r.aside
                } else {
                    r.now
                }
            }
        };
        containers.push((now, r.own));
    }
    let set_aside = run.undo.set_aside.insert(SetAside {
        release,
        containers,
    });
    if let Some(e) = failed {
        return Err(e);
    }
    let names: Vec<&str> = set_aside
        .containers
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    Ok(format!(
        "the parked release {} is set aside: {}",
        set_aside.release.release,
        names.join(", ")
    ))
}

/// `start`: the candidate's replicas are created and started, all at once (as the daemon's
/// own floor, that many `docker run`s, does), each one created recorded for the undo path
/// whether or not the others were.
pub async fn start(run: &mut Run<'_>) -> Result<String> {
    let host = run.host;
    // the idle color is the candidate's from here: a candidate left waiting there goes
    // (a parked release was set aside just before, and its undo gives it back)
    run.state.idle = None;
    run.state.candidate_failed = false;
    let specs = replica_specs(host.config, run.target()?);
    let each = specs.iter().map(|spec| async move {
        if let Err(e) = host.docker.create(spec).await {
            return (false, Err(e));
        }
        (true, host.docker.start(&spec.name).await)
    });
    let done = futures_util::future::join_all(each).await;
    let mut failed = None;
    for (spec, (created, started)) in specs.iter().zip(done) {
        if created {
            run.undo.candidates.push(spec.name.clone());
        }
        if let Err(e) = started {
            failed.get_or_insert(e);
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }
    crate::interrupt::check("while starting the candidate")?;
    Ok(format!("started {}", run.undo.candidates.join(", ")))
}

/// `start` (rollback): the replicas of a release parked stopped are started; their
/// addresses may change, so the host is read again.
pub async fn start_parked(run: &mut Run<'_>) -> Result<String> {
    let host = run.host;
    let target = run.target()?.clone();
    let stopped: Vec<String> = run
        .obs
        .containers_of(&target)
        .iter()
        .filter(|c| !c.running())
        .map(|c| c.name.clone())
        .collect();
    futures_util::future::try_join_all(stopped.iter().map(|n| host.docker.start(n))).await?;
    run.obs.containers = super::observe::list_containers(host.docker, host.config).await?;
    Ok(format!("started the parked {} replicas", target.color))
}

/// `preview`: the preview listener routes to the release about to go live: by the names nginx
/// resolves at run time (>= 1.27.3), else at the addresses Docker gives its containers now.
/// Live routing is unchanged.
pub async fn preview(run: &mut Run<'_>) -> Result<String> {
    let target = run.target()?.clone();
    match run.command {
        Command::Deploy(_) => {
            let pool = new_candidate_pool(run).await?;
            let generation = run.obs.generation() + 1;
            let text = run.host.render(&render_input(
                run.host.config,
                generation,
                run.live_pool.as_ref(),
                Some((&pool, Role::Candidate)),
                run.features,
                None,
            ))?;
            run.state.generation = generation;
            run.host
                .install(&text, "the preview of the candidate", None, &run.lock)
                .await?;
            run.undo.preview_installed = true;
            run.state.idle = Some(Idle {
                release: target,
                role: Role::Candidate,
            });
            run.pool = Some(pool);
            Ok("the preview listener routes to the candidate".into())
        }
        Command::Switch
        | Command::Rollback
        | Command::Reroute
        | Command::Discard
        | Command::TlsReload
        | Command::Canary(_) => {
            let containers = run.obs.containers_of(&target).len();
            let pool = run.obs.pool(run.host.config, &target);
            if pool.servers.len() != containers {
                return Err(error::environment(format!(
                    "only {}/{containers} {} replicas of release {} are running with an address on {}",
                    pool.servers.len(),
                    target.color,
                    target.release,
                    run.host.config.network
                )));
            }
            let role = run.state.idle.as_ref().map_or(Role::Parked, |i| i.role);
            let routed = route_preview(run, &pool, role).await?;
            run.pool = Some(pool);
            Ok(if routed {
                format!(
                    "the preview listener routes to {} at its current addresses",
                    target.color
                )
            } else {
                format!("the preview listener already routes to {}", target.color)
            })
        }
    }
}

/// The candidate just started, as one container list says (one call, however many
/// replicas): every replica running with an address, and the alias bgd gave it.
async fn new_candidate_pool(run: &Run<'_>) -> Result<Pool> {
    let host = run.host;
    let target = run.target()?;
    let labels = [
        (LABEL_MANAGED, "true"),
        (LABEL_APP, host.config.app.as_str()),
    ];
    let listed = host.docker.list_brief(&labels).await?;
    let specs = replica_specs(host.config, target);
    let mut candidates: Vec<ContainerInfo> = Vec::new();
    for name in &run.undo.candidates {
        let mut c = listed
            .iter()
            .find(|c| &c.name == name)
            .cloned()
            .ok_or_else(|| {
                error::environment(format!("container {name} disappeared while bgd worked"))
            })?;
        if let Some(spec) = specs.iter().find(|s| &s.name == name) {
            c.aliases.insert(spec.network.clone(), spec.aliases.clone());
        }
        candidates.push(c);
    }
    let refs: Vec<&ContainerInfo> = candidates.iter().collect();
    let pool = pool_of(host.config, target, &refs);
    if pool.servers.len() == candidates.len() {
        return Ok(pool);
    }
    let down: Vec<&str> = candidates
        .iter()
        .filter(|c| !c.running() || c.ip_on(&host.config.network).is_none())
        .map(|c| c.name.as_str())
        .collect();
    let name = down.first().copied().unwrap_or_default();
    let logs = host.docker.logs_tail(name, 15).await;
    Err(error::rejected(format!(
        "candidate {} stopped right after starting; last output of {name}:\n{}",
        down.join(", "),
        logs.trim()
    )))
}

/// Makes the preview listener route to `pool` (with `role`) unless the active config already
/// does. Returns whether it installed a config.
pub async fn route_preview(run: &mut Run<'_>, pool: &Pool, role: Role) -> Result<bool> {
    let (host, config) = (run.host, run.host.config);
    let current = run.obs.generation();
    let live = run.live_pool.as_ref();
    let wanted = host.render(&render_input(
        config,
        current,
        live,
        Some((pool, role)),
        run.features,
        run.state.canary.as_ref().map(|c| c.share),
    ))?;
    if run.obs.active_config.as_deref() == Some(wanted.as_str()) {
        run.state.generation = current;
        return Ok(false);
    }
    run.state.generation = current + 1;
    let text = host.render(&render_input(
        config,
        run.state.generation,
        live,
        Some((pool, role)),
        run.features,
        run.state.canary.as_ref().map(|c| c.share),
    ))?;
    host.install(
        &text,
        &format!("the preview of the {} release", role.as_str()),
        None,
        &run.lock,
    )
    .await?;
    Ok(true)
}

/// `drop-parked`: the candidate holds the idle color for good (live, or left waiting): the
/// parked release set aside is removed.
pub async fn drop_parked(run: &mut Run<'_>) -> Result<String> {
    // set aside by this run (a deploy), or by the `deploy --no-switch` that left the
    // candidate this run promotes (a switch)
    let (release, names) = match run.undo.set_aside.take() {
        Some(aside) => (
            aside.release,
            aside.containers.into_iter().map(|(now, _)| now).collect(),
        ),
        None => match run.obs.state.set_aside.clone() {
            Some(release) => {
                let names: Vec<String> = run
                    .obs
                    .containers_of(&release)
                    .iter()
                    .map(|c| c.name.clone())
                    .collect();
                (release, names)
            }
            None => return Ok("nothing was set aside".into()),
        },
    };
    run.host.remove_all(&names).await;
    run.state.set_aside = None;
    Ok(format!(
        "removed the release {} that was parked: {}",
        release.release,
        names.join(", ")
    ))
}

/// Puts the host back as it was before the candidate: nginx routes live as before, the
/// candidate containers are gone, and a parked release set aside is parked again.
pub async fn undo(run: &mut Run<'_>) {
    let host = run.host;
    if !run.undo.has_work() {
        return;
    }
    host.out
        .info("undoing: the candidate is removed, live traffic stays where it was");
    host.remove_all(&run.undo.candidates).await;
    run.undo.candidates.clear();
    run.state.idle = None;
    let mut parked_pool = None;
    if let Some(aside) = run.undo.set_aside.take() {
        match give_back(run, &aside).await {
            Ok(pool) => {
                run.state.idle = Some(Idle {
                    release: aside.release.clone(),
                    role: Role::Parked,
                });
                run.state.set_aside = None;
                parked_pool = Some(pool);
            }
            Err(e) => {
                // still aside, and recorded so: the next deploy sets it aside again
                run.state.set_aside = Some(aside.release.clone());
                host.out.warn(&format!(
                    "could not give the parked release {} its names back: {e:#}; it stays aside (`bgd status`), the next deploy parks it again",
                    aside.release.release
                ))
            }
        }
    }
    if run.undo.preview_installed {
        run.state.generation += 1;
        let preview = parked_pool.as_ref().map(|p| (p, Role::Parked));
        let input = render_input(
            host.config,
            run.state.generation,
            run.live_pool.as_ref(),
            preview,
            run.features,
            None,
        );
        let restored = match host.render(&input) {
            Ok(text) => host
                .install(&text, "restoring the routing", None, &run.lock)
                .await
                .map(drop),
            Err(e) => Err(e),
        };
        if let Err(e) = restored {
            // Live routing was never changed by the preview config; only preview is stale.
            host.out.warn(&format!(
                "could not restore the preview routing: {e:#}; live traffic is unaffected"
            ));
        }
    }
}

/// `discard`: the waiting candidate's containers are removed, the parked release it set
/// aside gets its own names back, and the preview listener routes to it (or to nothing) in
/// one validated reload. Live routing is the same before and after.
pub async fn discard(run: &mut Run<'_>) -> Result<String> {
    let (host, config) = (run.host, run.host.config);
    let candidate = run.target()?.clone();
    // everything in the candidate's color but the release set aside (a killed deploy may
    // have left another candidate there)
    let aside = run.state.set_aside.clone();
    let names: Vec<String> = run
        .obs
        .of_color(candidate.color)
        .into_iter()
        .filter(|c| !aside.as_ref().is_some_and(|a| c.is_of(a)))
        .map(|c| c.name.clone())
        .collect();
    host.remove_all(&names).await;
    let mut done = vec![format!("removed the candidate {}", names.join(", "))];
    let parked = match aside.filter(|r| !run.obs.containers_of(r).is_empty()) {
        None => None,
        Some(release) => {
            let containers: Vec<(String, String)> = run
                .obs
                .containers_of(&release)
                .iter()
                .filter_map(|c| {
                    c.replica().map(|n| {
                        (
                            c.name.clone(),
                            crate::model::container_name(&config.app, release.color, n),
                        )
                    })
                })
                .collect();
            let aside = SetAside {
                release: release.clone(),
                containers,
            };
            let pool = give_back(run, &aside).await.map_err(|e| {
                e.context(format!(
                    "the candidate is gone, but the parked release {} could not have its names back; `bgd status` shows what is there",
                    release.release
                ))
            })?;
            done.push(format!("the parked release {} is back", release.release));
            Some((release, pool))
        }
    };
    run.state.generation = run.obs.generation() + 1;
    let text = host.render(&render_input(
        config,
        run.state.generation,
        run.live_pool.as_ref(),
        parked.as_ref().map(|(_, p)| (p, Role::Parked)),
        run.features,
        None,
    ))?;
    // recorded only once nginx routes it so: a refused install leaves the record as it was,
    // and `discard` again picks up from there
    host.install(&text, "the preview after the discard", None, &run.lock)
        .await?;
    run.state.idle = parked.as_ref().map(|(release, _)| Idle {
        release: release.clone(),
        role: Role::Parked,
    });
    run.state.set_aside = None;
    run.state.candidate_failed = false;
    // a canary's share went with the candidate: all of live traffic is on the live release
    run.state.canary = None;
    done.push(match &parked {
        Some((r, _)) => format!("the preview listener routes to {} again", r.color),
        None => "the preview listener routes to nothing".to_string(),
    });
    run.journal.entry.message = done.join("; ");
    Ok(done.join("; "))
}

/// Renames a set-aside parked release back; its pool (addresses do not change).
async fn give_back(run: &Run<'_>, aside: &SetAside) -> Result<Pool> {
    let host = run.host;
    let mut containers = Vec::new();
    for (now, own) in &aside.containers {
        if now != own {
            if let Err(e) = host.docker.rename(now, own).await {
                // its answer lost, the rename may still have happened: then nothing answers
                // to the aside name any more, and the container under its own name is of
                // the release given back
                if !matches!(host.docker.inspect(now).await, Ok(None)) {
                    return Err(e);
                }
            }
        }
        let c = host.inspect_required(own).await?;
        if !c.is_of(&aside.release) {
            return Err(error::environment(format!(
                "{own} is not of the release {} set aside (another container took its name)",
                aside.release.release
            )));
        }
        containers.push(c);
    }
    let refs: Vec<&ContainerInfo> = containers.iter().collect();
    Ok(pool_of(host.config, &aside.release, &refs))
}
