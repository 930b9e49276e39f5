//! The CI examples (examples/ci/) are meant to be copied as they are: both files parse, have
//! the shape their CI system needs, serialise deploys per environment, offer a manual
//! rollback, map bgd's exit codes, pass shellcheck, and every bgd command line in them parses
//! with bgd's own argument parser; every BGD_/DOCKER_ variable the bgd jobs use is one bgd
//! reads and docs/configuration.md documents.

use clap::Parser;
use serde_yaml::Value;
use std::collections::BTreeSet;
use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn load(name: &str) -> (String, Value) {
    let path = root().join("examples/ci").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let yaml: Value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    (text, yaml)
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// The command lines of a script as words (quotes removed), cut at pipes, `;`, `&&`, `||`
/// and redirections outside quotes; comments dropped.
fn commands(script: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for line in script.lines() {
        let (mut words, mut cur, mut quote, mut any) = (Vec::new(), String::new(), None, false);
        let end_word = |words: &mut Vec<String>, cur: &mut String, any: &mut bool| {
            if *any {
                words.push(std::mem::take(cur));
                *any = false;
            }
        };
        for c in line.chars() {
            match (quote, c) {
                (None, '\'' | '"') => {
                    quote = Some(c);
                    any = true;
                }
                (Some(q), c) if c == q => quote = None,
                (None, '#') if !any => break,
                (None, '|' | ';' | '&' | '>') => {
                    end_word(&mut words, &mut cur, &mut any);
                    if !words.is_empty() {
                        out.push(std::mem::take(&mut words));
                    }
                }
                (None, c) if c.is_whitespace() => end_word(&mut words, &mut cur, &mut any),
                (_, c) => {
                    cur.push(c);
                    any = true;
                }
            }
        }
        end_word(&mut words, &mut cur, &mut any);
        if !words.is_empty() {
            out.push(words);
        }
    }
    out
}

/// Every bgd invocation in `scripts`, parsed by bgd's own parser (variables stand for an
/// image name).
fn check_bgd_lines(file: &str, scripts: &[String]) -> Vec<String> {
    let mut seen = Vec::new();
    for script in scripts {
        for cmd in commands(script) {
            if cmd[0] != "bgd" {
                // bgd behind a wrapper or in a substitution would escape the check
                let wrapped = ["timeout", "env", "xargs", "sudo", "exec", "time", "nice"]
                    .contains(&cmd[0].as_str())
                    && cmd.iter().any(|w| w == "bgd");
                assert!(
                    !wrapped
                        && !cmd
                            .iter()
                            .any(|w| w.contains("$(bgd") || w.contains("`bgd")),
                    "{file}: bgd inside another command, which this test cannot check: {cmd:?}"
                );
                continue;
            }
            let args: Vec<String> = cmd
                .iter()
                .map(|w| {
                    if w.contains('$') {
                        "registry.example.com/shop/web:0123abc".to_string()
                    } else {
                        w.clone()
                    }
                })
                .collect();
            if let Err(e) = bgd::cli::Cli::try_parse_from(&args) {
                panic!("{file}: `{}` is not a bgd command line: {e}", cmd.join(" "));
            }
            seen.push(cmd.join(" "));
        }
    }
    seen
}

/// Every `NAME` of the form BGD_* or DOCKER_* in `text` (keys, `$NAME`, `NAME=`).
fn variables(text: &str) -> BTreeSet<String> {
    let b = text.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut out = BTreeSet::new();
    let mut i = 0;
    while i < b.len() {
        let at_start = i == 0 || !word(b[i - 1]);
        if at_start && (b[i..].starts_with(b"BGD_") || b[i..].starts_with(b"DOCKER_")) {
            let end = (i..b.len())
                .find(|&j| !(b[j].is_ascii_uppercase() || b[j].is_ascii_digit() || b[j] == b'_'))
                .unwrap_or(b.len());
            out.insert(text[i..end].to_string());
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

/// Each variable is read by bgd (its name is a string in src/) and documented.
fn check_variables(file: &str, names: &BTreeSet<String>) {
    let docs = std::fs::read_to_string(root().join("docs/configuration.md")).unwrap();
    let mut src = String::new();
    for entry in walk(&root().join("src")) {
        src.push_str(&std::fs::read_to_string(entry).unwrap());
    }
    for name in names {
        assert!(
            src.contains(&format!("\"{name}\"")),
            "{file} sets {name}, which bgd does not read"
        );
        assert!(
            docs.contains(&format!("`{name}`")),
            "{file} uses {name}, which docs/configuration.md does not document"
        );
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out
}

/// shellcheck (as bash) on each script; CI expressions stand for plain words.
fn shellcheck(file: &str, scripts: &[String]) {
    let dir = std::env::temp_dir().join(format!("bgd-ci-examples-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (i, script) in scripts.iter().enumerate() {
        let mut text = script.clone();
        while let Some(a) = text.find("${{") {
            let b = text[a..].find("}}").map_or(text.len(), |b| a + b + 2);
            text.replace_range(a..b, "X");
        }
        let path = dir.join(format!("{}-{i}.sh", file.replace('.', "-")));
        std::fs::write(&path, format!("#!/bin/bash\nset -e\n{text}\n")).unwrap();
        let out = std::process::Command::new("shellcheck")
            .args(["-s", "bash"])
            .arg(&path)
            .output()
            .expect("run shellcheck (apt-get install shellcheck)");
        assert!(
            out.status.success(),
            "{file}: shellcheck on\n{text}\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The exit codes the scripts map, as docs/exit-codes.md defines them.
fn check_exit_codes(file: &str, deploy_script: &str) {
    let codes = std::fs::read_to_string(root().join("docs/exit-codes.md")).unwrap();
    for (code, words) in [
        ("3", "rejected"),
        ("4", "switched back"),
        ("5", "lock"),
        ("6", "registry"),
        ("7", "UNSAFE"),
    ] {
        let arm = deploy_script
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{code})")))
            .unwrap_or_else(|| panic!("{file}: the deploy does not map exit {code}"));
        assert!(
            arm.contains(words),
            "{file}: exit {code} is said as {arm:?}"
        );
        assert!(
            codes.contains(&format!("| {code} |")),
            "docs/exit-codes.md has no exit {code}"
        );
    }
    assert!(
        deploy_script.contains("--lock-wait"),
        "{file}: a busy lock (exit 5) should be waited for with --lock-wait"
    );
}

/// What both pipelines must do: pass shellcheck, map the deploy's exit codes, and run the
/// deploy, its plan, a rollback and status.
fn check_scripts(file: &str, all_scripts: &[String], bgd_lines: &[String]) {
    shellcheck(file, all_scripts);
    let deploy = all_scripts
        .iter()
        .find(|sc| sc.contains("deploy \"$IMAGE\"") && sc.contains("--json"))
        .expect("the deploy script");
    check_exit_codes(file, deploy);
    for needed in [
        "bgd --json --lock-wait 10m deploy $IMAGE",
        "bgd --json --lock-wait 2m rollback",
        "bgd deploy --plan $IMAGE",
        "bgd status",
    ] {
        assert!(
            bgd_lines.iter().any(|l| l == needed),
            "{file}: no `{needed}` in {bgd_lines:?}"
        );
    }
}

#[test]
fn the_github_actions_example_is_ready_to_copy() {
    let file = "github-actions.yml";
    let (text, y) = load(file);
    assert!(y.get("on").is_some(), "{file}: no triggers");
    let concurrency = &y["concurrency"];
    assert!(
        !s(&concurrency["group"]).is_empty(),
        "{file}: deploys must be serialised"
    );
    assert_eq!(concurrency["cancel-in-progress"], Value::Bool(false));
    let dispatch = &y["on"]["workflow_dispatch"]["inputs"]["action"]["options"];
    assert!(
        dispatch
            .as_sequence()
            .is_some_and(|o| o.iter().any(|v| s(v) == "rollback")),
        "{file}: a manual rollback is offered through workflow_dispatch"
    );
    let jobs = y["jobs"].as_mapping().expect("jobs");
    let mut all_scripts = Vec::new();
    let mut bgd_lines = Vec::new();
    let mut names = BTreeSet::new();
    let global_env: BTreeSet<String> = y["env"]
        .as_mapping()
        .map(|m| m.keys().map(|k| s(k).to_string()).collect())
        .unwrap_or_default();
    for (name, job) in jobs {
        let name = s(name);
        assert!(
            job.get("runs-on").is_some(),
            "{file}: job {name} has no runs-on"
        );
        let steps = job["steps"].as_sequence().expect("steps");
        let scripts: Vec<String> = steps
            .iter()
            .filter_map(|st| st.get("run").map(|r| s(r).to_string()))
            .collect();
        for st in steps {
            assert!(
                st.get("run").is_some() || st.get("uses").is_some(),
                "{file}: a step of {name} neither runs nor uses anything"
            );
        }
        let lines = check_bgd_lines(file, &scripts);
        if !lines.is_empty() {
            assert_eq!(
                s(&job["environment"]),
                "production",
                "{file}: job {name} deploys without an environment"
            );
            assert!(
                s(&job["if"]).contains("github.ref == 'refs/heads/main'"),
                "{file}: job {name} must not deploy from any branch"
            );
            assert!(
                s(&job["env"]["DOCKER_HOST"]).starts_with("ssh://"),
                "{file}: DOCKER_HOST belongs to the bgd jobs (a workflow-wide one captures docker build)"
            );
            let job_text = serde_yaml::to_string(job).unwrap();
            names.extend(variables(&job_text));
            names.extend(
                global_env
                    .iter()
                    .filter(|n| n.starts_with("DOCKER_") || n.starts_with("BGD_"))
                    .cloned(),
            );
        }
        bgd_lines.extend(lines);
        all_scripts.extend(scripts);
    }
    check_scripts(file, &all_scripts, &bgd_lines);
    assert!(
        names.contains("DOCKER_HOST") && names.contains("BGD_SSH_COMMAND"),
        "{names:?}"
    );
    check_variables(file, &names);
    assert!(text.contains("known_hosts") && text.contains("StrictHostKeyChecking=yes"));
    assert!(text.contains("docker login"), "{file}: the registry login");
    assert!(
        y["env"].get("DOCKER_HOST").is_none(),
        "{file}: a workflow-wide DOCKER_HOST would send docker build to the Docker host"
    );
    // secrets land in the job's temporary directory, private, never in the home directory
    assert!(
        text.contains("umask 077") && text.contains("$RUNNER_TEMP"),
        "{file}"
    );
    assert!(
        !text.contains("> ~/.ssh") && !text.contains("$HOME/.ssh"),
        "{file}"
    );
    assert_eq!(s(&y["permissions"]["contents"]), "read", "{file}");
}

#[test]
fn the_gitlab_ci_example_is_ready_to_copy() {
    let file = "gitlab-ci.yml";
    let (text, y) = load(file);
    let map = y.as_mapping().expect("a mapping");
    let stages: Vec<&str> = y["stages"]
        .as_sequence()
        .expect("stages")
        .iter()
        .map(s)
        .collect();
    let global_vars: BTreeSet<String> = y["variables"]
        .as_mapping()
        .map(|m| m.keys().map(|k| s(k).to_string()).collect())
        .unwrap_or_default();
    let mut all_scripts = Vec::new();
    let mut bgd_lines = Vec::new();
    let mut names = BTreeSet::new();
    let mut manual_rollback = false;
    for (name, job) in map {
        let name = s(name);
        if matches!(
            name,
            "stages" | "variables" | "default" | "include" | "workflow"
        ) {
            continue;
        }
        // a job with `extends` takes the template's keys it does not set itself
        let base = job
            .get("extends")
            .map(|e| &y[s(e)])
            .filter(|b| b.is_mapping());
        let key =
            |k: &str| -> Option<&Value> { job.get(k).or_else(|| base.and_then(|b| b.get(k))) };
        let stage = key("stage").map(s).unwrap_or("test");
        if !name.starts_with('.') {
            assert!(
                stages.contains(&stage),
                "{file}: job {name}'s stage {stage} is not in stages"
            );
            assert!(key("script").is_some(), "{file}: job {name} has no script");
        }
        let mut scripts = Vec::new();
        for k in ["before_script", "script", "after_script"] {
            if let Some(seq) = job.get(k).and_then(Value::as_sequence) {
                scripts.push(
                    seq.iter()
                        .map(|v| s(v).to_string())
                        .collect::<Vec<_>>()
                        .join("\n"),
                );
            }
        }
        let lines = check_bgd_lines(file, &scripts);
        if !lines.is_empty() || name == ".bgd" {
            assert_eq!(
                key("resource_group").map(s),
                Some("production"),
                "{file}: job {name} must be serialised per environment"
            );
            let job_text = serde_yaml::to_string(job).unwrap()
                + &base
                    .map(|b| serde_yaml::to_string(b).unwrap())
                    .unwrap_or_default();
            names.extend(variables(&job_text));
            names.extend(
                global_vars
                    .iter()
                    .filter(|n| n.starts_with("DOCKER_") || n.starts_with("BGD_"))
                    .cloned(),
            );
        }
        if name == "rollback" {
            manual_rollback = job["rules"]
                .as_sequence()
                .is_some_and(|r| r.iter().any(|r| s(&r["when"]) == "manual"));
        }
        bgd_lines.extend(lines);
        all_scripts.extend(scripts);
    }
    assert!(manual_rollback, "{file}: the rollback job is manual");
    check_scripts(file, &all_scripts, &bgd_lines);
    assert!(
        names.contains("DOCKER_HOST")
            && names.contains("BGD_SSH_COMMAND")
            && names.contains("DOCKER_CONFIG"),
        "{names:?}"
    );
    check_variables(file, &names);
    assert!(text.contains("known_hosts") && text.contains("StrictHostKeyChecking=yes"));
    // secrets land in a private temporary directory, never in the (cached) project directory
    assert!(
        text.contains("umask 077") && text.contains("mktemp -d"),
        "{file}"
    );
    assert!(!text.contains("DOCKER_CONFIG=\"$CI_PROJECT_DIR"), "{file}");
}

#[test]
fn the_checks_catch_what_they_are_for() {
    // a flag bgd does not have is caught by the parser
    assert!(bgd::cli::Cli::try_parse_from(["bgd", "deploy", "--force", "x"]).is_err());
    assert!(
        bgd::cli::Cli::try_parse_from(["bgd", "--json", "--lock-wait", "10m", "deploy", "x"])
            .is_ok()
    );
    assert_eq!(
        commands("bgd --json deploy \"$IMAGE\" | tee out # note\nbgd status || true"),
        vec![
            vec!["bgd", "--json", "deploy", "$IMAGE"],
            vec!["tee", "out"],
            vec!["bgd", "status"],
            vec!["true"],
        ]
    );
    assert_eq!(
        variables("export BGD_SSH_COMMAND=x; $DOCKER_HOST ${DOCKER_CONFIG} MY_DOCKER_X"),
        BTreeSet::from([
            "BGD_SSH_COMMAND".to_string(),
            "DOCKER_CONFIG".into(),
            "DOCKER_HOST".into()
        ])
    );
}
