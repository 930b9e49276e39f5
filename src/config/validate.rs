//! The semantic pass: `RawConfig` -> `Config`, with defaults filled in, one section at a
//! time. Each problem names its key path; `mod.rs` turns that into a line and column.
//! Single values are checked in `checks.rs`.

use super::checks::*;
use super::envfile;
use super::raw::*;
use super::*;

pub struct Issue {
    pub path: String,
    pub message: String,
}

pub(super) fn issue(path: impl Into<String>, message: impl Into<String>) -> Issue {
    Issue {
        path: path.into(),
        message: message.into(),
    }
}

pub(super) type Checked<T> = std::result::Result<T, Issue>;

pub fn validate(raw: RawConfig, dir: &Path) -> Checked<Config> {
    if !valid_app_name(&raw.app) {
        return Err(issue(
            "app",
            format!(
                "{:?} must be 1-40 characters of a-z, 0-9 and '-', not starting with '-' (and not `logs`)",
                raw.app
            ),
        ));
    }
    let app = raw.app;
    let replicas = raw.replicas.unwrap_or(1);
    if !(1..=64).contains(&replicas) {
        return Err(issue("replicas", "must be between 1 and 64"));
    }
    let network = raw.network.unwrap_or_else(|| format!("{app}-net"));
    if !valid_docker_name(&network) || matches!(network.as_str(), "bridge" | "host" | "none") {
        return Err(issue(
            "network",
            format!("{network:?} must be a user-defined network name ([a-zA-Z0-9][a-zA-Z0-9_.-]*, not bridge/host/none)"),
        ));
    }
    let retain = raw.retain.unwrap_or(3);
    if retain == 0 {
        return Err(issue(
            "retain",
            "must be at least 1 (the live release's image is always kept anyway)",
        ));
    }
    let s = raw.switch;
    let app_volumes = raw.container.volumes.clone();
    Ok(Config {
        file: PathBuf::new(),
        container: container(raw.container, dir)?,
        readiness: readiness(raw.readiness)?,
        smoke: smoke(raw.smoke)?,
        hooks: Hooks {
            migrate: migrate(raw.hooks.migrate, &app_volumes)?,
        },
        lb: lb(raw.lb, &app, dir)?,
        switch: Switch {
            verify: s.verify.map_or(Duration::from_secs(10), |d| d.0),
            auto_rollback: s.auto_rollback.unwrap_or(true),
            drain: positive("switch.drain", s.drain, Duration::from_secs(30))?,
        },
        park: raw.park.mode.unwrap_or(ParkMode::Running),
        pull: Pull {
            timeout: positive("pull.timeout", raw.pull.timeout, Duration::from_secs(600))?,
            policy: raw.pull.policy.unwrap_or(PullPolicy::Missing),
        },
        retain,
        prune: raw.prune.unwrap_or(PruneMode::Manual),
        drill: Drill {
            rto: positive("drill.rto", raw.drill.rto, Duration::from_secs(60))?,
        },
        warmup: warmup(raw.warmup)?,
        canary: canary(raw.canary)?,
        app,
        replicas,
        network,
    })
}

fn container(c: RawContainer, dir: &Path) -> Checked<ContainerConfig> {
    if c.port == 0 {
        return Err(issue("container.port", "must be between 1 and 65535"));
    }
    if let Some(cmd) = &c.command {
        if cmd.is_empty() || cmd.iter().any(|a| a.contains('\0')) {
            return Err(issue(
                "container.command",
                "must be a non-empty list of arguments",
            ));
        }
    }
    let env = env(c.env)?;
    let (env_file, env_file_path) = match c.env_file {
        None => (Vec::new(), None),
        Some(rel) => {
            let (path, text) = read_relative(dir, "container.env_file", &rel)?;
            let vars = envfile::parse(&text)
                .map_err(|e| issue("container.env_file", format!("{}: {e}", path.display())))?;
            (vars, Some(path))
        }
    };
    for (i, v) in c.volumes.iter().enumerate() {
        let key = format!("container.volumes[{i}]");
        let parts: Vec<&str> = v.split(':').collect();
        let ok = matches!(parts.len(), 2 | 3)
            && !parts[0].is_empty()
            && parts[1].starts_with('/')
            && !v.chars().any(|c| c.is_control());
        if !ok {
            return Err(issue(
                key,
                format!("{v:?} must be \"source:/container/path[:ro]\""),
            ));
        }
    }
    let labels = labels(c.labels)?;
    let stop_timeout = c.stop_timeout.map_or(Duration::from_secs(10), |d| d.0);
    let memory = c
        .memory
        .map(|m| parse_memory(&m.0).map_err(|e| issue("container.memory", e)))
        .transpose()?;
    let nano_cpus = c
        .cpus
        .map(|m| parse_cpus(&m.0).map_err(|e| issue("container.cpus", e)))
        .transpose()?;
    Ok(ContainerConfig {
        port: c.port,
        command: c.command,
        env,
        env_file,
        env_file_path,
        volumes: c.volumes,
        labels,
        stop_timeout,
        memory,
        nano_cpus,
    })
}

fn env(raw: BTreeMap<String, Scalar>) -> Checked<BTreeMap<String, String>> {
    let mut env = BTreeMap::new();
    for (k, v) in raw {
        if !valid_env_name(&k) {
            return Err(issue(
                format!("container.env.{k}"),
                format!("{k:?} is not a valid variable name"),
            ));
        }
        if v.0.contains('\0') {
            return Err(issue(format!("container.env.{k}"), "must not contain NUL"));
        }
        env.insert(k, v.0);
    }
    Ok(env)
}

fn labels(raw: BTreeMap<String, Scalar>) -> Checked<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    for (k, v) in raw {
        let key = format!("container.labels.{k}");
        if k.starts_with("bgd.") {
            return Err(issue(key, "labels starting with 'bgd.' are bgd's own"));
        }
        if k.is_empty() || k.chars().chain(v.0.chars()).any(|c| c.is_control()) {
            return Err(issue(key, "labels must be printable"));
        }
        labels.insert(k, v.0);
    }
    Ok(labels)
}

fn readiness(r: RawReadiness) -> Checked<Readiness> {
    let readiness = Readiness {
        path: r.path.unwrap_or_else(|| "/".into()),
        expect_status: check_status("readiness.expect_status", r.expect_status.unwrap_or(200))?,
        interval: positive("readiness.interval", r.interval, Duration::from_millis(500))?,
        timeout: positive("readiness.timeout", r.timeout, Duration::from_secs(2))?,
        successes: r.successes.unwrap_or(2),
        deadline: positive("readiness.deadline", r.deadline, Duration::from_secs(60))?,
    };
    check_path("readiness.path", &readiness.path)?;
    if readiness.successes == 0 || readiness.successes > 100 {
        return Err(issue("readiness.successes", "must be between 1 and 100"));
    }
    if readiness.deadline < readiness.interval {
        return Err(issue(
            "readiness.deadline",
            "must be at least readiness.interval",
        ));
    }
    Ok(readiness)
}

fn smoke(raw: Vec<RawSmoke>) -> Checked<Vec<SmokeProbe>> {
    let mut smoke = Vec::new();
    for (i, s) in raw.into_iter().enumerate() {
        let key = |k: &str| format!("smoke[{i}].{k}");
        if s.name.is_empty()
            || s.name.len() > 64
            || !s
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || " _.-".contains(c))
        {
            return Err(issue(
                key("name"),
                "must be 1-64 characters of letters, digits, space, '_', '.', '-'",
            ));
        }
        if smoke.iter().any(|p: &SmokeProbe| p.name == s.name) {
            return Err(issue(
                key("name"),
                format!("{:?} is used by another probe", s.name),
            ));
        }
        let method = s.method.unwrap_or_else(|| "GET".into());
        if method.is_empty() || method.len() > 16 || !method.chars().all(|c| c.is_ascii_uppercase())
        {
            return Err(issue(
                key("method"),
                format!("{method:?} is not an HTTP method (GET, POST, ...)"),
            ));
        }
        check_path(&key("path"), &s.path)?;
        let headers = check_headers(&key("headers"), &s.headers)?;
        let status = s.expect.status.unwrap_or_else(|| vec![200]);
        if status.is_empty() {
            return Err(issue(key("expect.status"), "list at least one status"));
        }
        for st in &status {
            check_status(&key("expect.status"), *st)?;
        }
        let expect = Expect {
            status,
            body_contains: s.expect.body_contains,
            headers: check_headers(&key("expect.headers"), &s.expect.headers)?,
        };
        let target = match s.target.as_deref() {
            None | Some("candidate") => ProbeTarget::Candidate,
            Some("live") => ProbeTarget::Live,
            Some(other) => {
                return Err(issue(
                    key("target"),
                    format!("{other:?}: use candidate (the default) or live"),
                ))
            }
        };
        let body = s.body.unwrap_or_default();
        // every ${NAME} must be captured by an earlier probe
        let texts = std::iter::once(("path".to_string(), s.path.as_str()))
            .chain(
                headers
                    .iter()
                    .map(|(k, v)| (format!("headers.{k}"), v.as_str())),
            )
            .chain(std::iter::once(("body".to_string(), body.as_str())));
        let captured: Vec<&str> = smoke
            .iter()
            .flat_map(|p: &SmokeProbe| p.capture.iter().map(|(n, _)| n.as_str()))
            .collect();
        for (field, text) in texts {
            for name in crate::probe::session::references(text) {
                if !captured.contains(&name.as_str()) {
                    let known = if captured.is_empty() {
                        "none is".to_string()
                    } else {
                        format!("{} are", captured.join(", "))
                    };
                    return Err(issue(
                        key(&field),
                        format!("${{{name}}} is not captured by an earlier probe ({known}; capture: {{{name}: \"cookie:...\"}})"),
                    ));
                }
            }
        }
        let mut capture = Vec::new();
        for (name, spec) in s.capture {
            let ok = !name.is_empty()
                && name.len() <= 64
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                return Err(issue(
                    key("capture"),
                    format!("{name:?} must be letters, digits and '_'"),
                ));
            }
            let how = crate::probe::session::Capture::parse(&spec)
                .map_err(|e| issue(format!("smoke[{i}].capture.{name}"), e))?;
            capture.push((name, how));
        }
        smoke.push(SmokeProbe {
            name: s.name,
            method,
            path: s.path,
            headers,
            body,
            expect,
            target,
            capture,
        });
    }
    Ok(smoke)
}

fn migrate(raw: Option<RawMigrate>, volumes: &[String]) -> Checked<Option<Migrate>> {
    Ok(match raw {
        None => None,
        Some(m) => {
            if m.command.is_empty() {
                return Err(issue(
                    "hooks.migrate.command",
                    "must be a non-empty list of arguments",
                ));
            }
            Some(Migrate {
                command: m.command,
                timeout: positive("hooks.migrate.timeout", m.timeout, Duration::from_secs(300))?,
                rehearse: m.rehearse.map(|r| rehearse(r, volumes)).transpose()?,
            })
        }
    })
}

fn warmup(raw: RawWarmup) -> Checked<Warmup> {
    let mut requests = Vec::new();
    for (i, r) in raw.requests.into_iter().enumerate() {
        let key = |k: &str| format!("warmup.requests[{i}].{k}");
        check_path(&key("path"), &r.path)?;
        if !crate::probe::session::references(&r.path).is_empty() {
            return Err(issue(
                key("path"),
                "warm-up requests take no captured values (${...} is for smoke probes)",
            ));
        }
        let method = r.method.unwrap_or_else(|| "GET".into());
        if method.is_empty() || method.len() > 16 || !method.chars().all(|c| c.is_ascii_uppercase())
        {
            return Err(issue(
                key("method"),
                format!("{method:?} is not an HTTP method (GET, POST, ...)"),
            ));
        }
        let count = r.count.unwrap_or(1);
        if !(1..=10_000).contains(&count) {
            return Err(issue(
                key("count"),
                "must be between 1 and 10000 (per replica)",
            ));
        }
        requests.push(WarmupRequest {
            method,
            path: r.path,
            count,
        });
    }
    Ok(Warmup {
        requests,
        must_pass: raw.must_pass.unwrap_or(false),
        mirror: raw.mirror.map(mirror).transpose()?,
    })
}

fn mirror(m: RawMirror) -> Checked<Mirror> {
    const KEY: &str = "warmup.mirror";
    let share = match m.share {
        None => 10,
        Some(s) => percent(&format!("{KEY}.share"), &s.0, 1, 100)?,
    };
    let methods = m
        .methods
        .unwrap_or_else(|| vec!["GET".into(), "HEAD".into()]);
    if methods.is_empty() {
        return Err(issue(
            format!("{KEY}.methods"),
            "name at least one method (GET and HEAD have no side effects)",
        ));
    }
    for method in &methods {
        if method.is_empty() || method.len() > 16 || !method.chars().all(|c| c.is_ascii_uppercase())
        {
            return Err(issue(
                format!("{KEY}.methods"),
                format!("{method:?} is not an HTTP method (GET, HEAD, ...)"),
            ));
        }
    }
    Ok(Mirror {
        share,
        window: positive(&format!("{KEY}.for"), m.window, Duration::from_secs(60))?,
        methods,
        timeout: positive(&format!("{KEY}.timeout"), m.timeout, Duration::from_secs(5))?,
        analysis: analysis(
            KEY,
            m.max_error_increase,
            m.max_latency_ratio,
            m.min_latency,
            m.min_requests,
            m.inconclusive,
        )?,
    })
}

fn canary(c: RawCanary) -> Checked<Canary> {
    const KEY: &str = "canary";
    let mut steps = Vec::new();
    for (i, s) in c.steps.unwrap_or_default().iter().enumerate() {
        let key = format!("{KEY}.steps[{i}]");
        let share = percent(&key, &s.0, 1, 100)?;
        if steps.last().is_some_and(|&last| share <= last) {
            return Err(issue(key, "the shares must rise, step by step"));
        }
        steps.push(share);
    }
    if steps.last().is_some_and(|&last| last != 100) {
        steps.push(100);
    }
    Ok(Canary {
        steps,
        step_for: positive(
            &format!("{KEY}.step_for"),
            c.step_for,
            Duration::from_secs(60),
        )?,
        analysis: analysis(
            KEY,
            c.max_error_increase,
            c.max_latency_ratio,
            c.min_latency,
            c.min_requests,
            c.inconclusive,
        )?,
    })
}

/// A share in percent: `10`, `"10%"`, between `min` and `max`.
fn percent(key: &str, text: &str, min: u8, max: u8) -> Checked<u8> {
    let t = text.trim();
    let n = t.strip_suffix('%').unwrap_or(t).trim();
    match n.parse::<u8>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(issue(
            key,
            format!("{text:?} is not a whole percentage between {min}% and {max}% (e.g. 10%)"),
        )),
    }
}

fn analysis(
    at: &str,
    max_error_increase: Option<Scalar>,
    max_latency_ratio: Option<Scalar>,
    min_latency: Option<DurationStr>,
    min_requests: Option<u64>,
    inconclusive: Option<Inconclusive>,
) -> Checked<Analysis> {
    let d = Analysis::default();
    let number = |key: &str, v: Option<Scalar>, default: f64, range: (f64, f64)| {
        let Some(v) = v else { return Ok(default) };
        let t = v.0.trim();
        let (min, max) = range;
        match t.strip_suffix('%').unwrap_or(t).trim().parse::<f64>() {
            Ok(n) if n.is_finite() && n >= min && n <= max => Ok(n),
            _ => Err(issue(
                format!("{at}.{key}"),
                format!("{:?} is not a number between {min} and {max}", v.0),
            )),
        }
    };
    Ok(Analysis {
        max_error_increase: number(
            "max_error_increase",
            max_error_increase,
            d.max_error_increase,
            (0.0, 100.0),
        )?,
        max_latency_ratio: number(
            "max_latency_ratio",
            max_latency_ratio,
            d.max_latency_ratio,
            (1.0, 1000.0),
        )?,
        min_latency: min_latency.map_or(d.min_latency, |m| m.0),
        min_requests: min_requests.unwrap_or(d.min_requests),
        fail_inconclusive: inconclusive == Some(Inconclusive::Fail),
    })
}

fn rehearse(r: RawRehearse, volumes: &[String]) -> Checked<Rehearse> {
    const KEY: &str = "hooks.migrate.rehearse";
    // the named volumes the app mounts (not host paths)
    let named: Vec<&str> = volumes
        .iter()
        .filter_map(|v| v.split(':').next())
        .filter(|s| !s.starts_with('/') && !s.starts_with('.') && !s.starts_with('~'))
        .collect();
    for (i, v) in r.volumes.iter().enumerate() {
        if !named.contains(&v.as_str()) {
            return Err(issue(
                format!("{KEY}.volumes[{i}]"),
                format!("{v:?} is not a named volume of container.volumes ({}): only the app's own named volumes can be copied", named.join(", ")),
            ));
        }
    }
    if r.volumes.is_empty() && r.prepare.is_none() {
        return Err(issue(
            KEY,
            "say where the scratch copy comes from: volumes (named volumes copied) and/or prepare (a command that creates a scratch database, with env pointing at it)",
        ));
    }
    if r.prepare.is_some() && r.env.is_empty() {
        return Err(issue(
            format!("{KEY}.env"),
            "prepare makes a scratch copy: env must point the rehearsal at it (e.g. DATABASE_URL), or the migration would run on the real database",
        ));
    }
    for (k, cmd) in [("prepare", &r.prepare), ("cleanup", &r.cleanup)] {
        if cmd.as_ref().is_some_and(Vec::is_empty) {
            return Err(issue(
                format!("{KEY}.{k}"),
                "must be a non-empty list of arguments",
            ));
        }
    }
    let mut env = BTreeMap::new();
    for (k, v) in r.env {
        if !valid_env_name(&k) || v.0.contains('\0') {
            return Err(issue(
                format!("{KEY}.env.{k}"),
                format!("{k:?} is not a valid variable"),
            ));
        }
        env.insert(k, v.0);
    }
    Ok(Rehearse {
        volumes: r.volumes,
        prepare: r.prepare,
        cleanup: r.cleanup,
        env,
        timeout: positive(
            &format!("{KEY}.timeout"),
            r.timeout,
            Duration::from_secs(300),
        )?,
    })
}

fn lb(l: RawLb, app: &str, dir: &Path) -> Checked<Lb> {
    let lb_container = l.container.unwrap_or_else(|| format!("{app}-lb"));
    if !valid_docker_name(&lb_container) {
        return Err(issue(
            "lb.container",
            format!("{lb_container:?} is not a valid container name"),
        ));
    }
    if let Some(image) = &l.image {
        check_image_ref(image).map_err(|e| issue("lb.image", e))?;
    }
    let mut publish = Vec::new();
    for (i, p) in l.publish.iter().enumerate() {
        publish.push(parse_publish(p).map_err(|e| issue(format!("lb.publish[{i}]"), e))?);
    }
    let listen = l.listen.unwrap_or(80);
    let preview_listen = l.preview_listen.unwrap_or(8081);
    if listen == 0 {
        return Err(issue("lb.listen", "must be between 1 and 65535"));
    }
    if preview_listen == 0 {
        return Err(issue("lb.preview_listen", "must be between 1 and 65535"));
    }
    if listen == preview_listen {
        return Err(issue(
            "lb.preview_listen",
            format!("{preview_listen} clashes with lb.listen: the live and preview listeners need their own ports"),
        ));
    }
    let (url_derived, preview_url_derived) = (l.url.is_none(), l.preview_url.is_none());
    let via = match l.via.as_deref() {
        None | Some("auto") => Via::Auto,
        Some("direct") => Via::Direct,
        Some(other) => {
            return Err(issue(
                "lb.via",
                format!(
                "{other:?}: use auto (probes travel with an ssh:// Docker connection) or direct"
            ),
            ))
        }
    };
    let tls = l
        .tls
        .map(|t| super::tls::tls(t, dir, listen, preview_listen, &publish))
        .transpose()?;
    let url = match (l.url, &tls) {
        (Some(u), _) => check_url("lb.url", &u)?,
        (None, None) => url_for(&publish, listen).ok_or_else(|| {
            issue("lb", format!("set lb.url (where bgd reaches the live listener), or publish port {listen} in lb.publish"))
        })?,
        (None, Some(t)) => url_for(&publish, t.listen)
            .map(|u| u.replacen("http://", "https://", 1))
            .ok_or_else(|| {
                issue("lb", format!("set lb.url (where bgd reaches the live HTTPS listener), or publish port {} (lb.tls.listen) in lb.publish", t.listen))
            })?,
    };
    if tls.as_ref().is_some_and(|t| t.redirect_http)
        && url.to_ascii_lowercase().starts_with("http://")
    {
        return Err(issue(
            "lb.url",
            "is plain HTTP, which lb.tls.redirect_http answers with a redirect: give the HTTPS listener's URL (https://...)",
        ));
    }
    let preview_url = match l.preview_url {
        Some(u) => check_url("lb.preview_url", &u)?,
        None => url_for(&publish, preview_listen).ok_or_else(|| {
            issue("lb", format!("set lb.preview_url (where bgd reaches the preview listener), or publish port {preview_listen} in lb.publish"))
        })?,
    };
    if url == preview_url {
        return Err(issue("lb.preview_url", "must differ from lb.url"));
    }
    let template = match l.template {
        None => None,
        Some(rel) => Some(read_relative(dir, "lb.template", &rel)?),
    };
    let mut hosts = Vec::new();
    for (i, h) in l.hosts.unwrap_or_default().into_iter().enumerate() {
        let h = h.to_ascii_lowercase();
        if !valid_host_name(&h) {
            return Err(issue(
                format!("lb.hosts[{i}]"),
                format!("{h:?} is not a host name (letters, digits, '-' and dots; `*.` may lead)"),
            ));
        }
        if !hosts.contains(&h) {
            hosts.push(h);
        }
    }
    let preview_host =
        match (l.preview_host, hosts.first()) {
            (Some(_), None) => return Err(issue(
                "lb.preview_host",
                "names the preview server of an app with lb.hosts: set lb.hosts too, or drop it",
            )),
            (Some(p), _) => {
                let p = p.to_ascii_lowercase();
                if !valid_host_name(&p) || p.starts_with("*.") {
                    return Err(issue(
                        "lb.preview_host",
                        format!("{p:?} is not a host name (letters, digits, '-' and dots)"),
                    ));
                }
                if hosts.contains(&p) {
                    return Err(issue(
                        "lb.preview_host",
                        format!("{p:?} is one of lb.hosts: the preview needs a name of its own"),
                    ));
                }
                Some(p)
            }
            (None, Some(first)) => Some(format!("preview.{}", first.trim_start_matches("*."))),
            (None, None) => None,
        };
    // bgd's HTTPS probes verify the certificate for a name: with the files in the container
    // (read only at deploy time), the name must come from lb.hosts or lb.url
    let url_host_is_ip = reqwest::Url::parse(&url).ok().is_some_and(|u| {
        u.host_str()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
            .is_none_or(|h| h.parse::<std::net::IpAddr>().is_ok())
    });
    if let Some(Tls {
        source: TlsSource::Container { .. },
        ..
    }) = &tls
    {
        if hosts.is_empty() && url_host_is_ip && url.to_ascii_lowercase().starts_with("https://") {
            return Err(issue(
                "lb.tls",
                "with certificate_path and no lb.hosts, bgd cannot tell which name its HTTPS probes should verify the certificate for: set lb.hosts (or an lb.url naming the host)",
            ));
        }
    }
    Ok(Lb {
        container: lb_container,
        hosts,
        preview_host,
        image: l.image,
        publish,
        listen,
        preview_listen,
        url,
        preview_url,
        template,
        upstream_keepalive_timeout: positive(
            "lb.upstream_keepalive_timeout",
            l.upstream_keepalive_timeout,
            Duration::from_secs(1),
        )?,
        via,
        url_derived,
        preview_url_derived,
        tls,
    })
}
