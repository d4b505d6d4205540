//! The bytes as an AdmissionReview body, judged by the WebAssembly policy module in pitrguard's
//! own host (`policy_module::runtime`: wasmtime through wapc + wasmtime-provider, host calls
//! answered from the example inventory) and by the native core, as `--policy-module` and the
//! built-in judge would (`admission::pipeline::Admission::judge`).
//!
//! Differential: wherever both answer, the module's answer read as the native one
//! (`policy_module::answer::to_answer`) equals the native `Answer` — verdict, message, warnings
//! by id, patch, broken rules, skipped — the comparison of tests/module_host.rs. A body the
//! native parse refuses never reaches the module (the server answers 400 first).
//!
//! Not compared: an object with a repeated key (see below). Where the module does not answer (the request cannot be handed to it as a JSON tree, or
//! the module refuses the request's shape, as Kubewarden's SDK reads it more strictly), the
//! first of each kind is printed to stderr, so that a campaign shows what they were.
//!
//! The module: `PITRGUARD_POLICY_WASM`, else target/policy/pitrguard-policy.wasm of the checkout
//! (hack/build-policy.sh; hack/fuzz.sh builds it when missing).

#![no_main]

use std::cell::RefCell;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use pitrguard::admission::{Answer, Object, decide, parse_review_text};
use pitrguard::core::Index;
use pitrguard::module_abi::Settings;
use pitrguard::policy_module::answer::to_answer;
use pitrguard::policy_module::{Compiled, Instance, Limits, ModuleError, Runtime};
use serde_json::Value;

struct Module {
    _runtime: Runtime,
    /// One compiled module per policy of `pitrguard_fuzz::policies()` (the settings differ).
    compiled: Vec<Arc<Compiled>>,
}

fn module() -> &'static Module {
    static MODULE: OnceLock<Module> = OnceLock::new();
    MODULE.get_or_init(|| {
        let path = std::env::var_os("PITRGUARD_POLICY_WASM").map(PathBuf::from).unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/policy/pitrguard-policy.wasm")
        });
        let bytes = std::fs::read(&path).unwrap_or_else(|e| {
            eprintln!("policy_module: cannot read {}: {e}; build it with hack/build-policy.sh", path.display());
            std::process::exit(2);
        });
        let runtime = Runtime::new(Limits::default()).expect("a wasmtime engine");
        let compiled = pitrguard_fuzz::policies()
            .iter()
            .map(|policy| {
                let settings = serde_json::to_value(Settings::from_policy(policy)).unwrap();
                runtime.compile(&bytes, &settings).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            })
            .collect();
        Module { _runtime: runtime, compiled }
    })
}

thread_local! {
    /// An instance per policy, kept between inputs as the server's workers keep theirs, and
    /// made anew after any failure (a trap can leave its memory half-written).
    static INSTANCES: RefCell<Vec<Option<Instance>>> = const { RefCell::new(Vec::new()) };
}

fn index() -> &'static Arc<Index> {
    static INDEX: OnceLock<Arc<Index>> = OnceLock::new();
    INDEX.get_or_init(|| Arc::new(pitrguard_fuzz::load_example_index()))
}

/// Prints the first occurrence of each kind of "no answer".
fn no_answer(kind: &str, detail: &str) {
    static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let detail = detail.split(" at line ").next().unwrap_or(detail);
    let key: String = format!("{kind}: {detail}").chars().take(72).collect();
    if SEEN.get_or_init(Default::default).lock().unwrap().insert(key) {
        eprintln!("policy_module: no answer from the module ({kind}): {detail}");
    }
}

fuzz_target!(
    init: {
        // Compiling the module (cranelift, instrumented) takes longer than one input may.
        module();
        pitrguard_fuzz::example_index();
        index();
    },
    |data: &[u8]| {
    // The objects as text: the module's answer is compared with the native one on them.
    let Ok(req) = parse_review_text(data) else { return };
    let Object::Text { object, old_object } = req.object.clone() else { unreachable!("read as text") };
    let module = module();
    let which = usize::from(std::ptr::eq(pitrguard_fuzz::policy_for(data), &pitrguard_fuzz::policies()[1]));
    let policy = &pitrguard_fuzz::policies()[which];
    let native = Answer::from(&decide(&req, index().as_ref(), policy));

    // As the pipeline hands the request on: the body read once more, untyped.
    let request = match serde_json::from_slice::<Value>(data) {
        Ok(mut review) => review["request"].take(),
        Err(e) => return no_answer("the body is not a JSON tree", &e.to_string()),
    };
    let object = request.get("object").filter(|o| !o.is_null()).cloned();
    // An object with a key twice: the native core reads the text (and refuses a repeated field
    // of the restore as a schema error), the module a JSON tree that kept the last copy. The API
    // server never sends one (it sends objects it encoded itself); not compared.
    for (raw, tree) in [(object, request.get("object")), (old_object, request.get("oldObject"))] {
        if let (Some(raw), Some(tree)) = (raw, tree)
            && pitrguard_fuzz::repeats_a_key(raw, tree)
        {
            return no_answer("not compared", "an object with a repeated key");
        }
    }
    let outcome = INSTANCES.with(|instances| {
        let mut instances = instances.borrow_mut();
        instances.resize_with(module.compiled.len(), || None);
        let instance = match instances[which].take() {
            Some(i) => i,
            None => Instance::new(&module.compiled[which]).expect("an instance of the module"),
        };
        let outcome = instance.validate(&request, index().clone());
        if outcome.is_ok() {
            instances[which] = Some(instance);
        }
        outcome
    });
    let wasm = match outcome {
        Ok(answer) => to_answer(object.as_ref(), answer),
        Err(e @ (ModuleError::Deadline(_) | ModuleError::Busy(_))) => panic!("the module did not finish: {e}"),
        Err(e) => return no_answer(e.kind(), &e.to_string()),
    };
    assert_eq!(wasm, native, "the module's answer differs from the native one");
}
);
