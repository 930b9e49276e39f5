//! Where everything a user sees goes. Human text and progress go to stderr, results to stdout;
//! `--json` puts only JSON Lines on stdout, the last being the result; `-q` keeps errors and
//! results. Every string passes `redact` first: secrets never leave through here.

use crate::docker::PullProgress;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Map, Value};
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Human,
    Json,
    Quiet,
}

pub struct Output {
    mode: Mode,
    verbose: bool,
    command: &'static str,
    tty: bool,
    secrets: Mutex<Vec<String>>,
    spinner: Mutex<Option<(ProgressBar, Instant)>>,
    /// When the last pull progress line or event went out
    pull_shown: Mutex<Option<Instant>>,
}

const REDACTED: &str = "<redacted>";

impl Output {
    pub fn new(mode: Mode, verbose: bool, command: &'static str) -> Output {
        Output {
            mode,
            verbose,
            command,
            tty: std::io::stderr().is_terminal(),
            secrets: Mutex::new(Vec::new()),
            spinner: Mutex::new(None),
            pull_shown: Mutex::new(None),
        }
    }

    /// Values that must never be printed (env_file values).
    pub fn add_secrets(&self, secrets: Vec<String>) {
        if let Ok(mut s) = self.secrets.lock() {
            s.extend(secrets);
            // longest first, so a secret containing another is replaced whole
            s.sort_by_key(|v| std::cmp::Reverse(v.len()));
        }
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        if let Ok(secrets) = self.secrets.lock() {
            for s in secrets.iter() {
                if out.contains(s.as_str()) {
                    out = out.replace(s.as_str(), REDACTED);
                }
            }
        }
        out
    }

    fn redact_value(&self, v: Value) -> Value {
        match v {
            Value::String(s) => Value::String(self.redact(&s)),
            Value::Array(a) => Value::Array(a.into_iter().map(|v| self.redact_value(v)).collect()),
            Value::Object(o) => Value::Object(
                o.into_iter()
                    .map(|(k, v)| (k, self.redact_value(v)))
                    .collect(),
            ),
            other => other,
        }
    }

    fn json_line(&self, v: Value) {
        let v = self.redact_value(v);
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{v}");
        let _ = out.flush();
    }

    fn stderr_line(&self, line: &str) {
        let line = self.redact(line);
        if let Ok(guard) = self.spinner.lock() {
            if let Some((bar, _)) = guard.as_ref() {
                bar.suspend(|| eprintln!("{line}"));
                return;
            }
        }
        eprintln!("{line}");
    }

    /// A step begins. On a terminal a spinner shows it until `done`/`failed`.
    pub fn step(&self, step: &str, message: &str) {
        match self.mode {
            Mode::Json => self.json_line(
                json!({"event": "step", "step": step, "status": "started", "message": message}),
            ),
            Mode::Quiet => {}
            Mode::Human => {
                if self.tty {
                    let bar = ProgressBar::new_spinner();
                    bar.set_style(
                        ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    bar.set_message(self.redact(message));
                    bar.enable_steady_tick(Duration::from_millis(100));
                    if let Ok(mut s) = self.spinner.lock() {
                        if let Some((old, _)) = s.take() {
                            old.finish_and_clear();
                        }
                        *s = Some((bar, Instant::now()));
                    }
                } else {
                    self.stderr_line(&format!("... {message}"));
                }
            }
        }
    }

    /// Updates the running step's message (e.g. "2/3 replicas ready").
    pub fn progress(&self, message: &str) {
        if self.mode == Mode::Human && self.tty {
            if let Ok(s) = self.spinner.lock() {
                if let Some((bar, _)) = s.as_ref() {
                    bar.set_message(self.redact(message));
                }
            }
        }
    }

    fn end_spinner(&self) {
        if let Ok(mut s) = self.spinner.lock() {
            if let Some((bar, _)) = s.take() {
                bar.finish_and_clear();
            }
        }
    }

    pub fn done(&self, step: &str, message: &str, took: Duration) {
        self.end_spinner();
        match self.mode {
            Mode::Json => self.json_line(json!({"event": "step", "step": step, "status": "done", "message": message, "ms": took.as_millis() as u64})),
            Mode::Quiet => {}
            Mode::Human => self.stderr_line(&format!(" ok  {message} ({})", fmt_duration(took))),
        }
    }

    /// A step failed with `message`. Humans see the step's name here and the message once,
    /// as the error the command ends with.
    pub fn failed(&self, step: &str, message: &str, took: Duration) {
        self.end_spinner();
        match self.mode {
            Mode::Json => self.json_line(
                json!({"event": "step", "step": step, "status": "failed", "message": message}),
            ),
            Mode::Quiet => {}
            Mode::Human => self.stderr_line(&format!("FAIL {step} ({})", fmt_duration(took))),
        }
    }

    /// A deploy failed with `message` and undoes what it did (`--json`: the `deploy` step's
    /// `failed` event).
    pub fn undoing(&self, message: &str) {
        if self.mode == Mode::Json {
            self.json_line(
                json!({"event": "step", "step": "deploy", "status": "failed", "message": message}),
            );
        }
    }

    pub fn info(&self, message: &str) {
        match self.mode {
            Mode::Json => {
                self.json_line(json!({"event": "log", "level": "info", "message": message}))
            }
            Mode::Quiet => {}
            Mode::Human => self.stderr_line(&format!("     {message}")),
        }
    }

    pub fn warn(&self, message: &str) {
        match self.mode {
            Mode::Json => {
                self.json_line(json!({"event": "log", "level": "warn", "message": message}))
            }
            // warnings matter at 3 a.m.: even -q shows them
            Mode::Quiet | Mode::Human => self.stderr_line(&format!("warning: {message}")),
        }
    }

    /// Only with -v.
    pub fn detail(&self, message: &str) {
        if !self.verbose {
            return;
        }
        match self.mode {
            Mode::Json => {
                self.json_line(json!({"event": "log", "level": "debug", "message": message}))
            }
            Mode::Quiet => {}
            Mode::Human => self.stderr_line(&format!("     {message}")),
        }
    }

    /// A machine event (JSON mode only).
    pub fn event(&self, event: &str, mut fields: Map<String, Value>) {
        if self.mode == Mode::Json {
            fields.insert("event".into(), Value::String(event.into()));
            self.json_line(Value::Object(fields));
        }
    }

    /// Whether a pull progress report is due, `every` after the last (the first one at once
    /// when `first` is set).
    fn pull_due(&self, every: Duration, first: bool) -> bool {
        let Ok(mut last) = self.pull_shown.lock() else {
            return false;
        };
        let now = Instant::now();
        let due = match *last {
            None => first,
            Some(t) => now.duration_since(t) >= every,
        };
        if due || last.is_none() {
            *last = Some(now);
        }
        due
    }

    /// A pull's progress: on a terminal the running step becomes a bar (layers, bytes,
    /// speed); without one, a line every 5 seconds; with `--json`, a `pull` event at most
    /// every second.
    pub fn pull_progress(&self, image: &str, p: &PullProgress, elapsed: Duration) {
        match self.mode {
            Mode::Quiet => {}
            Mode::Json => {
                if self.pull_due(Duration::from_secs(1), true) {
                    self.json_line(pull_event(image, "progress", p, elapsed));
                }
            }
            Mode::Human if self.tty => {
                if let Ok(s) = self.spinner.lock() {
                    if let Some((bar, _)) = s.as_ref() {
                        let msg =
                            format!("pulling {image}: {}/{} layers", p.layers_done(), p.layers());
                        if p.total_bytes() > 0 {
                            if bar.length().is_none() {
                                bar.set_style(
                                    ProgressStyle::with_template(
                                        "{spinner} {msg} [{bar:24}] {bytes}/{total_bytes} {bytes_per_sec} {elapsed}",
                                    )
                                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                                    .progress_chars("=> "),
                                );
                            }
                            bar.set_length(p.total_bytes());
                            bar.set_position(p.bytes());
                        }
                        bar.set_message(self.redact(&msg));
                    }
                }
            }
            Mode::Human => {
                if self.pull_due(Duration::from_secs(5), false) {
                    self.stderr_line(&format!(
                        "     pulling {image}: {}",
                        pull_summary(p, elapsed)
                    ));
                }
            }
        }
    }

    /// A pull finished (`--json`: a last `pull` event).
    pub fn pull_done(&self, image: &str, p: &PullProgress, took: Duration) {
        if let Ok(mut last) = self.pull_shown.lock() {
            *last = None;
        }
        if self.mode == Mode::Json {
            self.json_line(pull_event(image, "done", p, took));
        }
    }

    /// The human result on stdout (not in JSON mode).
    pub fn print(&self, text: &str) {
        self.end_spinner();
        if self.mode != Mode::Json {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", self.redact(text.trim_end()));
            let _ = out.flush();
        }
    }

    /// The last line in JSON mode: `{"event":"result","command":..,"ok":..,"exit_code":..}`.
    pub fn result(&self, ok: bool, exit_code: i32, fields: Map<String, Value>) {
        self.end_spinner();
        if self.mode != Mode::Json {
            return;
        }
        let mut line = Map::new();
        line.insert("event".into(), json!("result"));
        line.insert("command".into(), json!(self.command));
        line.insert("ok".into(), json!(ok));
        line.insert("exit_code".into(), json!(exit_code));
        for (k, v) in fields {
            line.insert(k, v);
        }
        self.json_line(Value::Object(line));
    }

    /// An error, in the form the mode asks for.
    pub fn error(&self, err: &anyhow::Error, exit_code: i32) {
        self.end_spinner();
        let text = format!("{err:#}");
        match self.mode {
            Mode::Json => {
                let mut f = Map::new();
                f.insert("error".into(), json!(text));
                self.result(false, exit_code, f);
            }
            Mode::Human | Mode::Quiet => {
                self.stderr_line(&format!("error: {text}"));
            }
        }
    }
}

fn pull_event(image: &str, status: &str, p: &PullProgress, elapsed: Duration) -> Value {
    json!({
        "event": "pull",
        "image": image,
        "status": status,
        "layers": p.layers(),
        "layers_done": p.layers_done(),
        "bytes": p.bytes(),
        "total_bytes": p.total_bytes(),
        "ms": elapsed.as_millis() as u64,
    })
}

/// `3/7 layers, 12.0 MiB of 40.0 MiB (2.0 MiB/s)`
pub fn pull_summary(p: &PullProgress, elapsed: Duration) -> String {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let secs = elapsed.as_secs_f64().max(0.001);
    format!(
        "{}/{} layers, {:.1} MiB of {:.1} MiB ({:.1} MiB/s, {})",
        p.layers_done(),
        p.layers(),
        mib(p.bytes()),
        mib(p.total_bytes()),
        mib(p.bytes()) / secs,
        fmt_duration(elapsed)
    )
}

pub fn fmt_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_longest_first() {
        let o = Output::new(Mode::Quiet, false, "status");
        o.add_secrets(vec!["hunter2".into(), "hunter2-extra".into()]);
        assert_eq!(
            o.redact("a hunter2-extra b hunter2"),
            "a <redacted> b <redacted>"
        );
        let v = o.redact_value(json!({"m": ["x hunter2"]}));
        assert_eq!(v, json!({"m": ["x <redacted>"]}));
    }
}
