//! The floor of reading an inventory file: the parser alone, on one thread.
//!
//! `cargo run --release --example parse-floor -- FILE...` reads each file into memory, then parses
//! it three times with serde_yaml (libyaml) or serde_json (by the file's extension) into
//! `IgnoredAny` (no tree built) and into a `serde_json::Value` tree, and prints the wall times.
//! `serve --inventory` decodes on every core; its time to ready cannot go below this figure
//! divided by the cores.

use std::time::Instant;

use serde::de::IgnoredAny;

fn parse<T: serde::de::DeserializeOwned>(yaml: bool, text: &str) -> Result<f64, String> {
    let started = Instant::now();
    let parsed: T = if yaml {
        serde_yaml::from_str(text).map_err(|e| e.to_string())?
    } else {
        serde_json::from_str(text).map_err(|e| e.to_string())?
    };
    std::hint::black_box(&parsed);
    Ok(started.elapsed().as_secs_f64())
}

fn main() {
    let paths: Vec<String> = std::env::args().skip(1).collect();
    if paths.is_empty() {
        eprintln!("usage: parse-floor FILE...  (.json: serde_json; anything else: serde_yaml)");
        std::process::exit(2);
    }
    for path in paths {
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            eprintln!("parse-floor: {path}: {e}");
            std::process::exit(1)
        });
        let yaml = !path.ends_with(".json");
        for _ in 0..3 {
            match (parse::<IgnoredAny>(yaml, &text), parse::<serde_json::Value>(yaml, &text)) {
                (Ok(nothing), Ok(tree)) => println!(
                    "{path} ({} MB, {}): into IgnoredAny {nothing:.3} s, into a Value {tree:.3} s, one thread",
                    text.len() / 1_000_000,
                    if yaml { "serde_yaml" } else { "serde_json" }
                ),
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("parse-floor: {path}: {e}");
                    std::process::exit(1)
                }
            }
        }
    }
}
