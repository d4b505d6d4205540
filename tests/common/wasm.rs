//! The policy module file (crates/pitrguard-policy), built by hack/build-policy.sh
//! when it is missing or older than its sources.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn newest_source(dir: &Path) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let time = if path.is_dir() { newest_source(&path) } else { path.metadata().unwrap().modified().unwrap() };
        newest = newest.max(time);
    }
    newest
}

/// The module, built by the script when it is missing or older than its sources.
pub fn module() -> PathBuf {
    let module = Path::new(ROOT).join("target/policy/pitrguard-policy.wasm");
    let sources = ["crates/pitrguard-core", "crates/pitrguard-policy", "Cargo.lock"]
        .iter()
        .map(|p| Path::new(ROOT).join(p))
        .map(|p| if p.is_dir() { newest_source(&p) } else { p.metadata().unwrap().modified().unwrap() })
        .max()
        .unwrap();
    // Test binaries run at the same time; one builds, the others wait and then see it fresh.
    std::fs::create_dir_all(module.parent().unwrap()).unwrap();
    let lock = std::fs::File::create(module.with_extension("lock")).unwrap();
    lock.lock().unwrap();
    let fresh = module.metadata().and_then(|m| m.modified()).is_ok_and(|built| built >= sources);
    if !fresh {
        eprintln!("policy_module: building {} with hack/build-policy.sh", module.display());
        let status = Command::new(Path::new(ROOT).join("hack/build-policy.sh"))
            .status()
            .expect("hack/build-policy.sh could not be started");
        assert!(status.success(), "hack/build-policy.sh failed ({status}): the module cannot be tested");
    }
    assert!(module.exists(), "hack/build-policy.sh did not write {}", module.display());
    module
}
