//! One decision natively vs through the policy module, and what the module costs
//! to load: its size, compile time and instantiation time. Writes the
//! `<!-- module:begin -->` section of BENCHMARKS.md.
//!
//! `cargo bench --bench policy_module` (the module must be built: `hack/build-policy.sh`).
//! Without `--bench` (as `cargo test --benches` runs it) it does a short smoke run and writes nothing.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pitrguard::admission::{Answer, decide, parse_review};
use pitrguard::core::{Index, Policy};
use pitrguard::module_abi::Settings;
use pitrguard::policy_module::answer::to_answer;
use pitrguard::policy_module::{Instance, Limits, Runtime};
use serde_json::Value;

const BEGIN: &str = "<!-- module:begin -->";
const END: &str = "<!-- module:end -->";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Median and 10th/90th percentiles of `samples` runs of `f`, each timed alone.
fn measure(samples: usize, mut f: impl FnMut()) -> (Duration, Duration, Duration) {
    let mut times: Vec<Duration> = (0..samples)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    let at = |p: usize| times[(times.len() - 1) * p / 100];
    (at(50), at(10), at(90))
}

fn us(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 1000.0 { format!("{:.2} ms", us / 1000.0) } else { format!("{us:.1} µs") }
}

fn review(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(repo().join("examples/admission").join(name)).unwrap()).unwrap()
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (compiles, instances, decisions) = if full { (5, 200, 20_000) } else { (1, 3, 50) };
    let path = std::env::var_os("PITRGUARD_POLICY_WASM")
        .map_or_else(|| repo().join("target/policy/pitrguard-policy.wasm"), PathBuf::from);
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; build the module first: hack/build-policy.sh", path.display()));
    let docs = pitrguard::load::read_documents(&[repo().join("examples")]).unwrap();
    let index: Arc<Index> = Arc::new(pitrguard::load::build_index(&docs).unwrap());
    let policy = Policy::default();
    let settings = serde_json::to_value(Settings::from_policy(&policy)).unwrap();
    let runtime = Runtime::new(Limits::default()).unwrap();

    let (compile, compile_lo, compile_hi) = measure(compiles, || {
        runtime.compile(&bytes, &settings).unwrap();
    });
    let compiled = runtime.compile(&bytes, &settings).unwrap();
    let (instantiate, inst_lo, inst_hi) = measure(instances, || {
        Instance::new(&compiled).unwrap();
    });

    let mut rows = Vec::new();
    for (label, file) in [("denied (R10)", "review-denied.json"), ("allowed, patched (M1–M3)", "review-allowed.json")]
    {
        let review = review(file);
        let body = serde_json::to_vec(&review).unwrap();
        let request = review["request"].clone();
        let object = request.get("object").cloned();
        let instance = Instance::new(&compiled).unwrap();
        let native_answer = {
            let req = parse_review(&body).unwrap();
            Answer::from(&decide(&req, index.as_ref(), &policy))
        };
        let module_answer = to_answer(object.as_ref(), instance.validate(&request, index.clone()).unwrap());
        assert_eq!(module_answer, native_answer, "the module and the core disagree on {file}");
        // Each side from the AdmissionReview bytes to the Answer: what the webhook does per request.
        let (native, n_lo, n_hi) = measure(decisions, || {
            let req = parse_review(std::hint::black_box(&body)).unwrap();
            std::hint::black_box(Answer::from(&decide(&req, index.as_ref(), &policy)));
        });
        let (module, m_lo, m_hi) = measure(decisions, || {
            let mut review: Value = serde_json::from_slice(std::hint::black_box(&body)).unwrap();
            let request = review["request"].take();
            let object = request.get("object").cloned();
            let a = instance.validate(&request, index.clone()).unwrap();
            std::hint::black_box(to_answer(object.as_ref(), a));
        });
        println!("policy_module: {label}: native {} module {}", us(native), us(module));
        rows.push(format!(
            "| {label} | {} ({} – {}) | {} ({} – {}) | {:.0}× |",
            us(native),
            us(n_lo),
            us(n_hi),
            us(module),
            us(m_lo),
            us(m_hi),
            module.as_secs_f64() / native.as_secs_f64()
        ));
    }
    println!("policy_module: compile {} instantiate {}", us(compile), us(instantiate));
    if !full {
        return;
    }
    let section = format!(
        "## The policy module: native vs WebAssembly (`benches/policy_module.rs`)\n\n\
Command: `cargo bench --bench policy_module` (after `hack/build-policy.sh`)\n\n\
- date: {date}; machine: nproc {cpus}; release build (`[profile.bench]`), wasmtime {wasmtime} through wasmtime-provider 2.25 (cranelift, epoch deadline, 64 MiB memory limit)\n\
- module: `{module}`, {size} bytes ({kib} KiB), sha256 `{sha}`\n\
- one decision = from the AdmissionReview bytes to the [`Answer`] both webhooks are built from, against the examples inventory; \
native: parse with kube's types, `admission::decide`; module: parse to JSON, one waPC `validate` call on a kept instance \
(settings, request, host calls for the Backup, its lineage, the ActionSet and the Cluster answered from the same inventory), \
the answer read back (`to_answer`, the patch rebuilt from the mutated object); both answers checked equal first\n\
- median (10th – 90th percentile) of {decisions} decisions each, every one timed alone\n\n\
| request | native | module | module / native |\n|---|---:|---:|---:|\n{rows}\n\n\
Loading the module (`Runtime::compile`: cranelift compile + the ABI and settings checks, median of {compiles}): {compile} ({compile_lo} – {compile_hi}); \
a new instance (`Instance::new`, what a worker does after a reload or a failure, median of {instances}): {instantiate} ({inst_lo} – {inst_hi}).\n",
        date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        cpus = std::thread::available_parallelism().map_or(0, usize::from),
        wasmtime = "48",
        module = path.strip_prefix(repo()).unwrap_or(&path).display(),
        size = bytes.len(),
        kib = bytes.len() / 1024,
        sha = compiled.sha256,
        rows = rows.join("\n"),
        compile = us(compile),
        compile_lo = us(compile_lo),
        compile_hi = us(compile_hi),
        instantiate = us(instantiate),
        inst_lo = us(inst_lo),
        inst_hi = us(inst_hi),
    );
    let file = repo().join("BENCHMARKS.md");
    let old = std::fs::read_to_string(&file).unwrap_or_default();
    let block = format!("{BEGIN}\n{section}{END}");
    let new = match (old.find(BEGIN), old.find(END)) {
        (Some(b), Some(e)) if b < e => format!("{}{block}{}", &old[..b], &old[e + END.len()..]),
        _ => format!("{}\n\n{block}\n", old.trim_end_matches('\n')),
    };
    std::fs::write(&file, new).unwrap();
    println!("{section}");
}
