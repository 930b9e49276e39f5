use crate::config::Config;
use crate::error;
use crate::model::{Color, Pool, Server};
use crate::nginx::render;
use crate::output::Output;
use anyhow::Result;
use serde_json::{json, Map};

/// Parses the config (done by the caller) and renders the template with sample replicas, so a
/// template error shows now rather than in the middle of a deploy. Touches nothing.
pub fn run(config: &Config, out: &Output) -> Result<()> {
    let (template, which) = render::template_for(config.lb.template.as_ref());
    let sample = |color: Color| Pool {
        color,
        release: "sample".into(),
        servers: (1..=config.replicas)
            .map(|n| Server {
                replica: n,
                name: crate::model::container_name(&config.app, color, n),
                addr: format!("10.0.0.{n}:{}", config.container.port),
                dns: Some(format!(
                    "{}:{}",
                    crate::model::replica_alias(&config.app, "sample", n),
                    config.container.port
                )),
            })
            .collect(),
    };
    let input = crate::deploy::specs::render_input(
        config,
        1,
        Some(&sample(Color::Blue)),
        Some((&sample(Color::Green), crate::model::Role::Parked)),
        render::Features::ALL,
        None,
    );
    render::render(template, &input)
        .map_err(|e| error::config(format!("cannot render {which}: {e:#}")))?;
    // and with a candidate that a mirror copies to and a canary shares live clients with
    let mut progressive = crate::deploy::specs::render_input(
        config,
        2,
        Some(&sample(Color::Blue)),
        Some((&sample(Color::Green), crate::model::Role::Candidate)),
        render::Features::ALL,
        Some(10),
    );
    progressive.mirror = Some(render::MirrorRender {
        share: 10,
        methods: vec!["GET".into(), "HEAD".into()],
        timeout: std::time::Duration::from_secs(5),
    });
    render::render(template, &progressive).map_err(|e| {
        error::config(format!(
            "cannot render {which} with a mirror and a canary: {e:#}"
        ))
    })?;
    let https = config
        .lb
        .tls
        .as_ref()
        .map_or(String::new(), |t| format!(", HTTPS {}", t.listen));
    let mut text = format!(
        "{}: ok (app {}, {} replica(s), live listener {}{https} -> {}, preview {} -> {})",
        config.file.display(),
        config.app,
        config.replicas,
        config.lb.listen,
        config.lb.url,
        config.lb.preview_listen,
        config.lb.preview_url
    );
    if let Some(crate::config::TlsSource::Local { info, .. }) =
        config.lb.tls.as_ref().map(|t| &t.source)
    {
        let now = crate::tls::now();
        text.push_str(&format!("\ncertificate: {}", info.summary(now)));
        if info.expired(now) {
            out.warn(
                "the certificate has expired: a deploy or `bgd tls reload` refuses it; renew it",
            );
        } else if info.days_left(now) < crate::tls::WARN_DAYS {
            out.warn(&format!(
                "the certificate expires in {} days: renew it",
                info.days_left(now)
            ));
        }
    }
    out.print(&text);
    let mut f = Map::new();
    f.insert("app".into(), json!(config.app));
    f.insert("file".into(), json!(config.file.display().to_string()));
    out.result(true, 0, f);
    Ok(())
}
