//! The module in wasmtime, through the waPC host crates Kubewarden's policy
//! server builds on (`wapc`, `wasmtime-provider`).
//!
//! - [`Runtime`]: one wasmtime engine with epoch interruption, and the thread
//!   that ticks its epoch: the per-evaluation deadline is counted in ticks.
//! - [`Compiled`]: a module compiled and checked once (it speaks the policy ABI
//!   and accepts the settings); cheap to instantiate again.
//! - [`Instance`]: one instantiated module. waPC instances are single-threaded
//!   (`WapcHost` is neither `Send` nor `Sync`), so each worker owns its own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};
use wapc::WapcHost;
use wasmtime_provider::{EpochDeadlines, ResourceLimits, WasmtimeEngineProviderBuilder, WasmtimeEngineProviderPre};

use crate::inventory::View;

/// How often the engine's epoch advances: the deadline's resolution.
const TICK: Duration = Duration::from_millis(10);

/// What one evaluation may use.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Wall time of one call into the module, host calls included.
    pub deadline: Duration,
    /// Size the module's linear memory may grow to.
    pub memory_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { deadline: Duration::from_secs(1), memory_bytes: 64 * 1024 * 1024 }
    }
}

impl Limits {
    fn ticks(&self) -> u64 {
        (self.deadline.as_nanos() / TICK.as_nanos()).max(1) as u64
    }
}

/// Why a module could not be used, or why one evaluation failed.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("cannot compile the policy module: {0}")]
    Compile(String),
    #[error("the policy module does not start: {0}")]
    Start(String),
    #[error("the policy module refuses pitrguard's settings: {0}")]
    Settings(String),
    #[error("the policy module exceeded its deadline of {0:?} and was stopped")]
    Deadline(Duration),
    #[error("the policy module failed: {0}")]
    Trap(String),
    #[error("the policy module's answer is not a Kubewarden ValidationResponse: {0}")]
    Answer(String),
    #[error("the policy module is busy: {0} requests are already waiting; retry")]
    Busy(usize),
}

impl ModuleError {
    /// The metrics label of an evaluation failure.
    pub fn kind(&self) -> &'static str {
        match self {
            ModuleError::Compile(_) | ModuleError::Start(_) | ModuleError::Settings(_) => "load",
            ModuleError::Deadline(_) => "deadline",
            ModuleError::Trap(_) => "trap",
            ModuleError::Answer(_) => "answer",
            ModuleError::Busy(_) => "busy",
        }
    }
}

/// One engine for every module generation, and its epoch ticker.
pub struct Runtime {
    engine: wasmtime_provider::wasmtime::Engine,
    limits: Limits,
    stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
}

impl Runtime {
    pub fn new(limits: Limits) -> Result<Self, ModuleError> {
        let mut config = wasmtime_provider::wasmtime::Config::default();
        config.epoch_interruption(true);
        let engine =
            wasmtime_provider::wasmtime::Engine::new(&config).map_err(|e| ModuleError::Compile(e.to_string()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let (engine, stop) = (engine.clone(), stop.clone());
            std::thread::Builder::new()
                .name("wasm-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| ModuleError::Start(format!("cannot start the epoch thread: {e}")))?
        };
        Ok(Self { engine, limits, stop, ticker: Some(ticker) })
    }

    /// Compiles `bytes` and checks the result: it starts within the deadline,
    /// speaks Kubewarden's policy ABI and accepts `settings`.
    pub fn compile(&self, bytes: &[u8], settings: &Value) -> Result<Arc<Compiled>, ModuleError> {
        let started = Instant::now();
        let limits =
            ResourceLimits { max_memory_size: Some(self.limits.memory_bytes), max_table_elements: Some(100_000) };
        let pre = WasmtimeEngineProviderBuilder::new()
            .engine(self.engine.clone())
            .module_bytes(bytes)
            .enable_resource_limits(limits)
            .build_pre()
            .map_err(|e| ModuleError::Compile(e.to_string()))?;
        let compile_time = started.elapsed();
        let compiled = Arc::new(Compiled {
            pre,
            ticks: self.limits.ticks(),
            deadline: self.limits.deadline,
            settings: settings.clone(),
            sha256: sha256_hex(bytes),
            size: bytes.len(),
            compile_time,
        });
        let instance = Instance::new(&compiled)?;
        let version = instance.call("protocol_version", b"").map_err(|e| ModuleError::Start(e.to_string()))?;
        if serde_json::from_slice::<Value>(&version).ok() != Some(json!("v1")) {
            return Err(ModuleError::Start(format!(
                "protocol_version answered {:?}; pitrguard speaks Kubewarden's v1",
                String::from_utf8_lossy(&version)
            )));
        }
        let answer = instance.call("validate_settings", settings.to_string().as_bytes()).map_err(|e| match e {
            e @ ModuleError::Deadline(_) => e,
            other => ModuleError::Settings(other.to_string()),
        })?;
        let checked: SettingsAnswer =
            serde_json::from_slice(&answer).map_err(|e| ModuleError::Settings(format!("unreadable answer: {e}")))?;
        if !checked.valid {
            return Err(ModuleError::Settings(checked.message.unwrap_or_default()));
        }
        Ok(compiled)
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}

/// The request as Kubewarden's policy server passes it: fields that are `null`
/// (some clients write them; the API server omits them) left out, as the
/// policy SDK reads a missing field as its default but refuses `null`.
fn without_nulls(request: &Value) -> Value {
    match request {
        Value::Object(fields) => {
            Value::Object(fields.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), v.clone())).collect())
        }
        other => other.clone(),
    }
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Deserialize)]
struct SettingsAnswer {
    valid: bool,
    message: Option<String>,
}

/// A module that compiled and passed the checks.
pub struct Compiled {
    pre: WasmtimeEngineProviderPre,
    ticks: u64,
    deadline: Duration,
    settings: Value,
    pub sha256: String,
    pub size: usize,
    pub compile_time: Duration,
}

/// Kubewarden's `ValidationResponse`, as the module sends it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ModuleAnswer {
    pub accepted: bool,
    pub message: Option<String>,
    pub code: Option<u16>,
    pub mutated_object: Option<Value>,
    pub audit_annotations: Option<HashMap<String, String>>,
    pub warnings: Option<Vec<String>>,
}

/// Where the current evaluation's host calls are answered from.
type Slot = Arc<Mutex<Option<Arc<dyn View>>>>;

/// One instance of a [`Compiled`] module.
pub struct Instance {
    host: WapcHost,
    slot: Slot,
    compiled: Arc<Compiled>,
}

impl Instance {
    pub fn new(compiled: &Arc<Compiled>) -> Result<Self, ModuleError> {
        let deadlines = EpochDeadlines { wapc_init: compiled.ticks, wapc_func: compiled.ticks };
        let engine = compiled.pre.rehydrate(Some(deadlines)).map_err(|e| ModuleError::Start(e.to_string()))?;
        let slot: Slot = Arc::default();
        let reads = slot.clone();
        let callback = move |_id: u64, binding: &str, namespace: &str, operation: &str, payload: &[u8]| {
            let view = reads.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let Some(view) = view else {
                return Err("pitrguard has no inventory for this call".into());
            };
            let mut answer = Err(String::new());
            view.with(&mut |inv| {
                answer = super::capabilities::answer(inv, binding, namespace, operation, payload);
            });
            answer.map_err(Into::into)
        };
        let host = WapcHost::new(Box::new(engine), Some(Box::new(callback))).map_err(|e| match e.to_string() {
            m if m.contains("deadline") || m.contains("Timeout") => ModuleError::Deadline(compiled.deadline),
            m => ModuleError::Start(m),
        })?;
        Ok(Self { host, slot, compiled: compiled.clone() })
    }

    pub fn compiled(&self) -> &Arc<Compiled> {
        &self.compiled
    }

    fn call(&self, operation: &str, payload: &[u8]) -> Result<Vec<u8>, ModuleError> {
        self.host.call(operation, payload).map_err(|e| {
            let message = e.to_string();
            if message.contains("execution deadline exceeded") {
                ModuleError::Deadline(self.compiled.deadline)
            } else {
                ModuleError::Trap(message.trim_start_matches("Guest call failure: ").to_string())
            }
        })
    }

    /// `validate` for one Kubernetes AdmissionRequest (the `request` of an
    /// AdmissionReview), with host calls answered from `view`. After an error the
    /// instance must not be used again: a trap can leave its memory half-written.
    pub fn validate(&self, request: &Value, view: Arc<dyn View>) -> Result<ModuleAnswer, ModuleError> {
        let payload = json!({"settings": self.compiled.settings, "request": without_nulls(request)});
        *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(view);
        let result = self.call("validate", payload.to_string().as_bytes());
        *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = None;
        serde_json::from_slice(&result?).map_err(|e| ModuleError::Answer(e.to_string()))
    }
}
