//! bgd-load, this repository's non-retrying load tool, running against a listener while a
//! test switches traffic.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// bgd-load running against a listener while a test switches traffic.
pub struct Load {
    child: std::process::Child,
    stop_file: PathBuf,
    expect_file: PathBuf,
}

impl Load {
    /// 20 keep-alive connections (4 saturating, 16 paced), 2 `Connection: close` clients and
    /// 2 POST clients, none of which retries.
    pub fn start(port: u16, dir: &Path) -> Load {
        Load::start_judging(port, dir, "X-Bgd-Color")
    }

    /// The same load, judged by `header` (e.g. the demo app's `X-App-Version`: which release
    /// really answered) instead of nginx's `X-Bgd-Color`.
    pub fn start_judging(port: u16, dir: &Path, header: &str) -> Load {
        Load::start_with(port, dir, header, &[])
    }

    /// The same load with `extra` bgd-load arguments (more clients, `--post-pace-ms`, a
    /// `--post-path`).
    pub fn start_with(port: u16, dir: &Path, header: &str, extra: &[&str]) -> Load {
        let stop_file = dir.join("load.stop");
        let expect_file = dir.join("load.expect");
        let _ = std::fs::remove_file(&stop_file);
        std::fs::write(&expect_file, "any").unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_bgd-load"))
            .args(["--url", &format!("http://127.0.0.1:{port}/")])
            .args([
                "--keepalive",
                "4",
                "--paced",
                "16",
                "--pace-ms",
                "5",
                "--close",
                "2",
                "--post",
                "2",
            ])
            .args(["--duration", "600"])
            .arg("--stop-file")
            .arg(&stop_file)
            .arg("--expect-file")
            .arg(&expect_file)
            .args(["--color-header", header])
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start bgd-load");
        // let every client get going before the first switch
        std::thread::sleep(Duration::from_millis(500));
        Load {
            child,
            stop_file,
            expect_file,
        }
    }

    /// From now on every new request must be served by `color` ("any" while switching; the
    /// header's value, e.g. "v2", when judging by another header).
    pub fn expect(&self, color: &str) {
        std::fs::write(&self.expect_file, color).unwrap();
        // the tool polls the file every 2 ms
        std::thread::sleep(Duration::from_millis(20));
    }

    /// Stops the load and returns its summary.
    pub fn finish(mut self) -> serde_json::Value {
        std::fs::write(&self.stop_file, "").unwrap();
        let mut out = String::new();
        if let Some(mut s) = self.child.stdout.take() {
            s.read_to_string(&mut out).unwrap();
        }
        let _ = self.child.wait();
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("bgd-load output {out:?}: {e}"))
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.stop_file, "");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
