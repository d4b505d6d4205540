//! The control-plane harness leaves nothing behind. A test binary that started
//! the control plane and a webhook, restarted the API server, and then crashed
//! (no destructor ran) still has every process it started stopped, and every
//! file it made removed, by the watchdog (tests/common/cluster.rs).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::cluster::*;

/// Set in the child run of this same test, which plays the crashing test binary.
const CHILD: &str = "PITRGUARD_HARNESS_CRASHING_CHILD";

#[test]
fn a_crashed_test_binary_leaves_no_process_and_no_file() {
    if std::env::var_os(CHILD).is_some() {
        let cp = control_plane();
        let hook = start_webhook(cp, &[], &[]);
        let args = cp.crash_apiserver();
        cp.restart_apiserver(&args);
        // On a line of its own: libtest has written "test … ... " without a newline.
        println!("\nDIR {}", cp.dir.display());
        for pid in [hook.child.id(), cp.apiserver_pid(), cp.env["ETCD_PID"].parse().unwrap()] {
            println!("PID {pid}");
        }
        std::process::abort();
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "a_crashed_test_binary_leaves_no_process_and_no_file", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "the child run crashes on purpose: {stdout}");
    let dir = stdout.lines().find_map(|l| l.strip_prefix("DIR ")).unwrap_or_else(|| {
        panic!("the child did not get its control plane up:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr))
    });
    let pids: Vec<&str> = stdout.lines().filter_map(|l| l.strip_prefix("PID ")).collect();
    assert_eq!(pids.len(), 3, "{stdout}");
    // The watchdog notices within half a second; down.sh then stops each process (a graceful
    // kube-apiserver within its 10 s --request-timeout, else SIGKILL after 15 s).
    wait_for(Duration::from_secs(90), "the crashed binary's processes and files to be gone", || {
        !Path::new(dir).exists() && running_with(dir).is_empty()
    });
    for pid in pids {
        assert!(!alive(pid), "process {pid} of the crashed test binary still runs");
    }
}

/// PIDs of the processes whose command line mentions `needle` (the watchdog's among them).
fn running_with(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().chars().all(|c| c.is_ascii_digit()))
        .filter(|e| alive(&e.file_name().to_string_lossy()))
        .filter(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle)))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Running: present in /proc and not a zombie.
fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .is_ok_and(|s| s.lines().any(|l| l.starts_with("State:") && !l.contains('Z')))
}
