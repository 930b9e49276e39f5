//! `rehearse` (`hooks.migrate.rehearse`): the migration and both versions on a scratch copy
//! of the data, before the real migration touches anything shared. Named volumes are copied
//! to scratch volumes by a one-off helper (nginx's image: it has `sh`); an external database
//! gets a scratch copy from the user's `prepare` command, and `env` points every rehearsal
//! container at it. On the copy: the new image's migration, then one replica of the live
//! image and one of the new, each through readiness and the smoke probes on the preview
//! listener (routes `rehearsal-live` and `rehearsal-new`, resolved by name). Only when both
//! pass does the real migration run. Scratch containers and volumes go, and `cleanup` runs,
//! whatever happens.

use super::gates::{smoke_probes, Listener};
use super::run::Run;
use super::specs::{migration_spec, rehearsal_name, replica_specs};
use crate::config::{Config, Rehearse};
use crate::docker::ContainerSpec;
use crate::error;
use crate::model::{Release, LABEL_MANAGED, LABEL_ROLE};
use crate::output::fmt_duration;
use crate::probe::{Request, PROBE_REPLICA_HEADER};
use anyhow::Result;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The rehearsal's own names on the host.
struct Scratch {
    /// (the app's volume, its scratch copy)
    volumes: Vec<(String, String)>,
    containers: Vec<String>,
}

impl Scratch {
    fn of(config: &Config, r: &Rehearse) -> Scratch {
        Scratch {
            volumes: r
                .volumes
                .iter()
                .map(|v| (v.clone(), format!("{}-rehearsal-{v}", config.app)))
                .collect(),
            containers: [
                "rehearsal-live",
                "rehearsal-new",
                "rehearsal-migrate",
                "rehearsal-copy",
            ]
            .iter()
            .map(|k| rehearsal_name(config, k))
            .collect(),
        }
    }

    /// The app's binds with each copied volume replaced by its scratch copy, and every other
    /// one read-only: nothing in a rehearsal writes shared data.
    fn binds(&self, binds: &[String]) -> Vec<String> {
        binds
            .iter()
            .map(|b| {
                let parts: Vec<&str> = b.split(':').collect();
                let (source, target) = (parts[0], parts.get(1).copied().unwrap_or(""));
                match self.volumes.iter().find(|(v, _)| v == source) {
                    Some((_, scratch)) => match parts.get(2) {
                        Some(mode) => format!("{scratch}:{target}:{mode}"),
                        None => format!("{scratch}:{target}"),
                    },
                    None => {
                        let mode = parts.get(2).map_or(String::new(), |m| {
                            m.split(',')
                                .filter(|o| *o != "rw" && *o != "ro")
                                .collect::<Vec<_>>()
                                .join(",")
                        });
                        if mode.is_empty() {
                            format!("{source}:{target}:ro")
                        } else {
                            format!("{source}:{target}:ro,{mode}")
                        }
                    }
                }
            })
            .collect()
    }
}

pub async fn rehearse(run: &mut Run<'_>) -> Result<String> {
    let config = run.host.config;
    let Some((m, r)) = config
        .hooks
        .migrate
        .as_ref()
        .and_then(|m| Some((m, m.rehearse.as_ref()?)))
    else {
        return Ok("no rehearsal configured".into());
    };
    let Some(live) = run.state.live.clone() else {
        run.journal.entry.rehearsal = Some("skipped: nothing was live".into());
        return Ok("skipped: nothing is live yet, so no old version must keep working".into());
    };
    let candidate = run.target()?.clone();
    let scratch = Scratch::of(config, r);
    let started = Instant::now();
    // leftovers of a run that was killed (its scratch database too), quietly
    clean(run, &scratch, r.cleanup.as_deref(), false).await;
    let outcome = on_copy(run, &scratch, r, &m.command, &live, &candidate).await;
    clean(run, &scratch, r.cleanup.as_deref(), true).await;
    let took = fmt_duration(started.elapsed());
    match outcome {
        Ok(copied) => {
            let text = format!(
                "rehearsed on a scratch copy{copied} in {took}: the migration, then the live {} and the new {} both pass on the migrated copy",
                live.image, candidate.image
            );
            run.journal.entry.rehearsal = Some(format!("passed{copied}"));
            Ok(text)
        }
        Err(e) => {
            run.journal.entry.rehearsal =
                Some(run.host.out.redact(&format!("failed: {}", first_line(&e))));
            Err(e)
        }
    }
}

fn first_line(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    let first = text.lines().next().unwrap_or_default();
    first
        .strip_prefix("the rehearsal failed: ")
        .unwrap_or(first)
        .to_string()
}

/// Copy, prepare, migrate, and try both versions; the copy's size and time when it passes.
async fn on_copy(
    run: &Run<'_>,
    scratch: &Scratch,
    r: &Rehearse,
    migration: &[String],
    live: &Release,
    candidate: &Release,
) -> Result<String> {
    let (host, config) = (run.host, run.host.config);
    let mut copied = String::new();
    if !scratch.volumes.is_empty() {
        copied = copy_volumes(run, scratch, r).await?;
    }
    let env = env_with(config, r);
    if let Some(prepare) = &r.prepare {
        one_off(run, live, prepare, &env, scratch, ("prepare", r.timeout, true))
            .await
            .map_err(|why| {
                error::rejected(format!(
                    "the rehearsal could not make its scratch copy: hooks.migrate.rehearse.prepare {:?} {why}. Nothing shared was touched; live traffic stays on {}",
                    prepare.join(" "),
                    live.color
                ))
            })?;
    }
    crate::interrupt::check("during the migration's rehearsal")?;
    let m = config
        .hooks
        .migrate
        .as_ref()
        .map_or(Duration::from_secs(300), |m| m.timeout);
    one_off(run, candidate, migration, &env, scratch, ("migrate", m, true))
        .await
        .map_err(|why| {
            error::rejected(format!(
                "the migration fails on the rehearsal's copy: `{}` {why}. The real migration did not run: nothing shared was touched; live traffic stays on {}",
                migration.join(" "),
                live.color
            ))
        })?;
    for (key, release, which) in [
        ("rehearsal-live", live, "the live version"),
        ("rehearsal-new", candidate, "the new version"),
    ] {
        crate::interrupt::check("during the migration's rehearsal")?;
        try_version(run, key, release, &env, scratch).await.map_err(|why| {
            error::rejected(format!(
                "the rehearsal failed: {which} ({}) does not work on the migrated copy: {why}\nThe real migration did not run: nothing shared was touched; live traffic stays on {} ({}). {}",
                release.image,
                live.color,
                live.image,
                if key == "rehearsal-live" {
                    "The migration is not backward-compatible: the old version must keep working on the new schema until it is gone (expand first, contract later)"
                } else {
                    "Fix the new release"
                }
            ))
        })?;
    }
    host.out
        .info("rehearsal: both versions pass on the migrated copy");
    Ok(copied)
}

/// The app's env, then the rehearsal's over it (pointing both versions at the copy).
fn env_with(config: &Config, r: &Rehearse) -> Vec<String> {
    let mut env: Vec<String> = config
        .container_env()
        .into_iter()
        .filter(|kv| {
            let k = kv.split('=').next().unwrap_or_default();
            !r.env.contains_key(k)
        })
        .collect();
    env.extend(r.env.iter().map(|(k, v)| format!("{k}={v}")));
    env
}

fn labels(config: &Config) -> HashMap<String, String> {
    HashMap::from([
        (LABEL_MANAGED.to_string(), "true".to_string()),
        (LABEL_ROLE.to_string(), "rehearsal".to_string()),
        ("bgd.rehearsal-for".to_string(), config.app.clone()),
    ])
}

/// Each named volume copied to its scratch volume by a helper from nginx's image.
async fn copy_volumes(run: &Run<'_>, scratch: &Scratch, r: &Rehearse) -> Result<String> {
    let (host, config) = (run.host, run.host.config);
    let lb = host.inspect_required(&config.lb.container).await?;
    let mut kb_total = 0u64;
    let t = Instant::now();
    for (volume, copy) in &scratch.volumes {
        let spec = ContainerSpec {
            name: rehearsal_name(config, "rehearsal-copy"),
            image: lb.image_id.clone(),
            entrypoint: Some(vec!["sh".into(), "-c".into()]),
            cmd: Some(vec![
                "cp -a /from/. /to/ || exit 1; du -sk /to 2>/dev/null; exit 0".into(),
            ]),
            labels: labels(config),
            network: config.network.clone(),
            binds: vec![format!("{volume}:/from:ro"), format!("{copy}:/to")],
            stop_timeout: Some(Duration::from_secs(5)),
            ..Default::default()
        };
        let mut said = Vec::new();
        let code = host
            .docker
            .run_to_completion(&spec, r.timeout, |line| said.push(line.to_string()))
            .await?;
        match code {
            Some(0) => {}
            Some(c) => {
                return Err(error::rejected(format!(
                    "the rehearsal could not copy the volume {volume} (exit {c}): {}. Nothing shared was touched",
                    said.join(" / ")
                )))
            }
            None => {
                return Err(error::rejected(format!(
                    "copying the volume {volume} for the rehearsal took longer than hooks.migrate.rehearse.timeout ({}); nothing shared was touched",
                    fmt_duration(r.timeout)
                )))
            }
        }
        kb_total += said
            .iter()
            .rev()
            .find_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0);
    }
    let size = if kb_total >= 1024 {
        format!("{:.1} MiB", kb_total as f64 / 1024.0)
    } else {
        format!("{kb_total} KiB")
    };
    let text = format!(
        " ({} volume(s), {size} copied in {})",
        scratch.volumes.len(),
        fmt_duration(t.elapsed())
    );
    host.out.info(&format!(
        "rehearsal: copied{}",
        text.trim_end_matches(')').replacen(" (", " ", 1)
    ));
    Ok(text)
}

/// A one-off container of `release`'s image on the copy (`prepare`, `cleanup`, the
/// migration); `Err` says how it ended, with its last output.
async fn one_off(
    run: &Run<'_>,
    release: &Release,
    command: &[String],
    env: &[String],
    scratch: &Scratch,
    (what, limit, said): (&str, Duration, bool),
) -> std::result::Result<(), String> {
    let (host, config) = (run.host, run.host.config);
    let mut spec = migration_spec(config, release, command);
    spec.image = image_of(run, release);
    spec.name = rehearsal_name(config, "rehearsal-migrate");
    spec.env = env.to_vec();
    spec.binds = scratch.binds(&config.container.volumes);
    spec.labels = labels(config);
    let mut tail: Vec<String> = Vec::new();
    let code = host
        .docker
        .run_to_completion(&spec, limit, |line| {
            if said {
                host.out.info(&format!("rehearsal {what} | {line}"));
            }
            tail.push(line.to_string());
            if tail.len() > 10 {
                tail.remove(0);
            }
        })
        .await
        .map_err(|e| format!("could not run: {e:#}"))?;
    match code {
        Some(0) => Ok(()),
        Some(c) => Err(format!("exited {c}; its last output:\n{}", tail.join("\n"))),
        None => Err(format!("did not finish within {}", fmt_duration(limit))),
    }
}

/// One replica of `release` on the copy, through readiness and the smoke probes on the
/// preview listener's `key` route.
async fn try_version(
    run: &Run<'_>,
    key: &str,
    release: &Release,
    env: &[String],
    scratch: &Scratch,
) -> std::result::Result<(), String> {
    let (host, config) = (run.host, run.host.config);
    let mut spec = replica_specs(config, release)
        .into_iter()
        .next()
        .ok_or("no replica spec")?;
    spec.image = image_of(run, release);
    spec.name = rehearsal_name(config, key);
    spec.env = env.to_vec();
    spec.binds = scratch.binds(&config.container.volumes);
    spec.labels = labels(config);
    spec.aliases = Vec::new();
    spec.restart = false;
    let _ = host.docker.remove(&spec.name).await;
    host.docker
        .create(&spec)
        .await
        .map_err(|e| format!("cannot create {}: {e:#}", spec.name))?;
    host.docker
        .start(&spec.name)
        .await
        .map_err(|e| format!("cannot start {}: {e:#}", spec.name))?;
    ready(run, key, &spec.name).await?;
    let through = Listener {
        base: &config.lb.preview_url,
        color: None,
        name: "preview",
        route: Some(key),
        answered_by: Some("rehearsal"),
    };
    smoke_probes(run, through, Some(through))
        .await
        .map(drop)
        .map_err(|e| format!("{e:#}"))
}

/// The image a release's containers run (by ID: its tag may have moved since it went live),
/// else its reference (the candidate, just pulled).
fn image_of(run: &Run<'_>, release: &Release) -> String {
    run.obs
        .containers_of(release)
        .first()
        .map(|c| c.image_id.clone())
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| release.image.clone())
}

/// `readiness.successes` passes in a row through the `key` route, within
/// `readiness.deadline`.
async fn ready(run: &Run<'_>, key: &str, name: &str) -> std::result::Result<(), String> {
    let (host, config) = (run.host, run.host.config);
    let r = &config.readiness;
    let deadline = Instant::now() + r.deadline;
    let mut passes = 0;
    let mut last = String::from("no answer yet");
    while passes < r.successes {
        if Instant::now() > deadline {
            let logs = host.docker.logs_tail(name, 10).await;
            return Err(format!(
                "not ready within readiness.deadline ({}): {last}\nits last output:\n{}",
                fmt_duration(r.deadline),
                logs.trim_end()
            ));
        }
        let mut req = Request::get(format!("{}{}", config.lb.preview_url, r.path), r.timeout);
        req.headers.push((PROBE_REPLICA_HEADER, key));
        crate::interrupt::check("during the migration's rehearsal")
            .map_err(|e| format!("{e:#}"))?;
        let verdict = host.prober.probe(&req).await;
        match &verdict.answer {
            Ok(a) if a.color() != Some("rehearsal") => {
                return Err(format!(
                    "the preview listener did not route to {name} (answered for {:?}): a custom lb.template needs the built-in's rehearsal_routes",
                    a.color().unwrap_or("none")
                ));
            }
            Ok(a) if a.status == r.expect_status => passes += 1,
            Ok(a) => {
                passes = 0;
                last = format!("{} answered {}", r.path, a.status);
            }
            Err(e) => {
                passes = 0;
                last = e.clone();
            }
        }
        if passes < r.successes {
            tokio::time::sleep(r.interval).await;
        }
    }
    Ok(())
}

/// Removes the rehearsal's containers and scratch volumes, and runs `cleanup` (of the live
/// image, with the rehearsal's env). Failures are warnings: the rehearsal's verdict stands.
async fn clean(run: &Run<'_>, scratch: &Scratch, cleanup: Option<&[String]>, said: bool) {
    let (host, config) = (run.host, run.host.config);
    for name in &scratch.containers {
        let _ = host.docker.remove(name).await;
    }
    if let (Some(cmd), Some(r), Some(live)) = (
        cleanup,
        config
            .hooks
            .migrate
            .as_ref()
            .and_then(|m| m.rehearse.as_ref()),
        run.state.live.as_ref(),
    ) {
        let env = env_with(config, r);
        let cleaned = one_off(run, live, cmd, &env, scratch, ("cleanup", r.timeout, said)).await;
        if let (Err(why), true) = (cleaned, said) {
            host.out.warn(&format!(
                "the rehearsal's cleanup {:?} {why}: drop the scratch copy by hand",
                cmd.join(" ")
            ));
        }
    }
    for (_, copy) in &scratch.volumes {
        if let Err(e) = host.docker.remove_volume(copy).await {
            host.out.warn(&format!(
                "could not remove the rehearsal's scratch volume {copy}: {e:#} (docker volume rm {copy})"
            ));
        }
    }
}
