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

/// A loopback port that was free a moment ago, below the kernel's ephemeral range
/// (32768-60999): a port handed out by `bind(0)` and released can be taken, before the server
/// binds it, as the source port of any outgoing connection, which load tests make by thousands.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, RandomState};
    let random = RandomState::new();
    (0u64..)
        .map(|i| 20_000 + (random.hash_one(i) % 12_000) as u16)
        .find(|&port| TcpListener::bind(("127.0.0.1", port)).is_ok())
        .expect("a free port below 32000")
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
