//! Loopback ports for tests, chosen without a race. A port is claimed with a lock file
//! (`flock`, released when the test's process ends, however it ends) in a range below the
//! kernel's ephemeral ports, so neither another test process nor an outgoing connection can
//! be handed the same port between the claim and the moment Docker binds it.

use std::fs::File;
use std::net::TcpListener;

/// Below Linux's default ephemeral range (32768-60999): bind(0) and connect() never pick these.
const FIRST: u16 = 20000;
const COUNT: u16 = 12000;

/// A claimed port; the claim lasts as long as this value.
#[derive(Debug)]
pub struct Port {
    pub port: u16,
    _claim: File,
}

pub fn claim_port() -> Port {
    let dir = std::env::temp_dir().join("bgd-test-ports");
    std::fs::create_dir_all(&dir).expect("the port claims directory");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        ^ std::process::id();
    for i in 0..COUNT {
        let port = FIRST + ((seed as u16).wrapping_add(i)) % COUNT;
        let Ok(file) = File::create(dir.join(port.to_string())) else {
            continue;
        };
        if file.try_lock().is_err() {
            continue; // another test holds it
        }
        // free of anything else on this machine right now
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Port { port, _claim: file };
        }
    }
    panic!("no free loopback port in {FIRST}..{}", FIRST + COUNT);
}
