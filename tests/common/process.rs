//! Processes and ports for tests that run real programs: every process a test
//! starts is stopped by its id, also when the test fails or its binary dies.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `script` once this test process has exited, however it exits: a watchdog, detached with
/// `setsid --fork`, that polls for this process and then runs the script.
pub fn after_exit(script: &str) {
    let me = std::process::id();
    Command::new("setsid")
        .args(["--fork", "sh", "-c", &format!("while kill -0 {me} 2>/dev/null; do sleep 0.5; done; {script}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("start the clean-up watchdog");
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Polls `ok` every 100 ms until it holds; fails the test after `limit`.
pub fn wait_for(limit: Duration, what: &str, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A child process that is killed (by its id) and reaped when the test ends, also when it fails.
pub struct Stopped(pub Child);

impl std::ops::Deref for Stopped {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Stopped {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
