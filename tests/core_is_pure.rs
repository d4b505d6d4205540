//! The core must stay free of I/O, clocks and async runtimes, so that it can
//! become a WebAssembly policy module and so that admission, the CLI and the
//! reconciler share it without side effects.

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
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/core");
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
