//! bgd run in the background with `--json`, its events read as they come: a test acts at
//! the moment bgd reports a step (a kill point, a lock released while it waits), never
//! after a guessed sleep.

use super::Run;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// How long a test waits for an event before it fails.
const EVENT_LIMIT: Duration = Duration::from_secs(120);

pub struct Watched {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

/// Starts `bgd --json ARGS` in `dir` with `env`.
pub fn watch(dir: &std::path::Path, env: &[(&str, &str)], args: &[&str]) -> Watched {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bgd"));
    cmd.arg("--json")
        .args(args)
        .current_dir(dir)
        .env_remove("BGD_CONFIG")
        .envs(env.iter().copied());
    watch_command(cmd)
}

/// Starts `cmd` (a bgd run with `--json`, perhaps behind a wrapper such as `unshare`).
pub fn watch_command(mut cmd: Command) -> Watched {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn bgd");
    let stdout = child.stdout.take().expect("bgd's stdout");
    let (tx, lines) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Watched {
        child,
        lines,
        seen: Vec::new(),
    }
}

impl Watched {
    /// Blocks until an event matches `pred`; returns it. Fails the test if bgd ends first.
    pub fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + EVENT_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let event: Value = serde_json::from_str(&line)
                        .unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}"));
                    self.seen.push(line);
                    if pred(&event) {
                        return event;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!("no {what} within {EVENT_LIMIT:?}"),
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("bgd ended before {what}: {:?}", self.seen)
                }
            }
        }
    }

    /// Blocks until bgd reports `step` with `status` (started, done, failed).
    pub fn wait_step(&mut self, step: &str, status: &str) -> Value {
        self.wait_for(&format!("step {step} {status}"), |e| {
            e["event"] == "step" && e["step"] == step && e["status"] == status
        })
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(ok.success(), "kill {sig}");
    }

    /// Waits for bgd to end; everything it printed.
    pub fn finish(mut self) -> Run {
        let status = self.child.wait().expect("wait for bgd");
        let mut stdout = self.seen.join("\n");
        for line in self.lines.iter() {
            stdout.push('\n');
            stdout.push_str(&line);
        }
        let mut stderr = String::new();
        if let Some(mut s) = self.child.stderr.take() {
            let _ = s.read_to_string(&mut stderr);
        }
        Run {
            code: status.code().unwrap_or(-1),
            stdout: stdout.trim_start().to_string(),
            stderr,
        }
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
