//! The core must stay free of I/O, clocks and async runtimes, so that it
//! builds as a WebAssembly policy module (crates/pitrguard-policy) and so that
//! admission, the CLI and the reconciler share it without side effects.

use std::path::Path;

const FORBIDDEN: [&str; 12] = [
    "tokio",
    "std::fs",
    "std::net",
    "std::io",
    "std::process",
    "std::thread",
    "std::env",
    "Utc::now",
    "Local::now",
    "SystemTime",
    "Instant",
    "kube::Client",
];

#[test]
fn core_uses_no_io_no_clock_no_runtime() {
    let dir = core_crate().join("src/core");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap();
            for word in FORBIDDEN {
                assert!(!code.contains(word), "{}:{}: the core must not use {word}: {line}", path.display(), n + 1);
            }
        }
        checked += 1;
    }
    assert!(checked >= 8, "found only {checked} core files");
}

fn core_crate() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/pitrguard-core")
}

/// The crate's own dependencies must build for wasm32: no async runtime, no
/// HTTP or kube client, no clock feature.
#[test]
fn core_crate_depends_on_nothing_that_does_io() {
    let manifest = std::fs::read_to_string(core_crate().join("Cargo.toml")).unwrap();
    let deps = manifest.split("[dependencies]").nth(1).expect("a [dependencies] table");
    let deps = deps.split("\n[").next().unwrap();
    for line in deps.lines().filter(|l| !l.trim_start().starts_with('#')) {
        for word in ["tokio", "hyper", "reqwest", "axum", "\"client\"", "\"runtime\"", "\"clock\"", "notify", "rustls"]
        {
            assert!(
                !line.contains(word),
                "crates/pitrguard-core/Cargo.toml: the core must not depend on {word}: {line}"
            );
        }
    }
    assert!(deps.contains("default-features = false, features = [\"derive\"]"), "kube is for the CRD derive only");
}
