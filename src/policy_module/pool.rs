//! The pool of worker threads that evaluate the current module, and its reload on file changes.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

use super::{Compiled, Instance, Limits, ModuleAnswer, ModuleError, Runtime, runtime};
use crate::core::Policy;
use crate::inventory::View;
use crate::metrics::{Metrics, ResultLabels};
use crate::module_abi::Settings;

/// How often the module file is compared with the one in use when no file event was seen.
pub const POLL_INTERVAL: Duration = Duration::from_secs(5);

/// Requests waiting for a worker beyond this are refused at once rather than queued.
const QUEUE: usize = 1024;

struct Job {
    request: Value,
    view: Arc<dyn View>,
    reply: tokio::sync::oneshot::Sender<Result<ModuleAnswer, ModuleError>>,
}

/// A policy module loaded from a file, evaluated by a pool of worker threads,
/// and reloaded when the file changes.
pub struct PolicyModule {
    path: PathBuf,
    settings: Value,
    runtime: Arc<Runtime>,
    current: Arc<RwLock<Arc<Compiled>>>,
    /// The sha256 of the last file refused, so that one broken file is logged once.
    last_refused: Mutex<Option<String>>,
    queue: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
    metrics: Option<Arc<Metrics>>,
}

/// The module file could not be used at start.
#[derive(Debug, thiserror::Error)]
#[error("--policy-module {path}: {reason}")]
pub struct LoadError {
    path: String,
    reason: String,
}

impl PolicyModule {
    /// Loads and checks the module; `workers` threads evaluate it.
    pub fn load(
        path: &Path,
        policy: &Policy,
        limits: Limits,
        workers: usize,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<Self, LoadError> {
        let fail = |reason: String| LoadError { path: path.display().to_string(), reason };
        let settings = serde_json::to_value(Settings::from_policy(policy)).expect("settings always serialise");
        let runtime = Arc::new(Runtime::new(limits).map_err(|e| fail(e.to_string()))?);
        let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
        let compiled = runtime.compile(&bytes, &settings).map_err(|e| fail(e.to_string()))?;
        tracing::info!(
            path = %path.display(),
            sha256 = %compiled.sha256,
            bytes = compiled.size,
            compile_ms = compiled.compile_time.as_millis() as u64,
            "policy module loaded"
        );
        let current = Arc::new(RwLock::new(compiled));
        let (queue, jobs) = std::sync::mpsc::sync_channel::<Job>(QUEUE);
        let jobs = Arc::new(Mutex::new(jobs));
        let workers = (0..workers.max(1))
            .map(|i| {
                let (current, jobs) = (current.clone(), jobs.clone());
                std::thread::Builder::new()
                    .name(format!("policy-module-{i}"))
                    .spawn(move || work(&current, &jobs))
                    .map_err(|e| fail(format!("cannot start a worker thread: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let module = Self {
            path: path.to_owned(),
            settings,
            runtime,
            current,
            last_refused: Mutex::new(None),
            queue: Some(queue),
            workers,
            metrics,
        };
        module.record_in_use();
        Ok(module)
    }

    /// The module in use.
    pub fn current(&self) -> Arc<Compiled> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Judges one AdmissionRequest (`request` of an AdmissionReview).
    pub async fn validate(&self, request: Value, view: Arc<dyn View>) -> Result<ModuleAnswer, ModuleError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.submit(Job { request, view, reply })?;
        self.counted(answer.await.unwrap_or_else(|_| Err(ModuleError::Trap("the worker thread stopped".into()))))
    }

    /// [`Self::validate`] for callers without an async runtime (`pitrguard validate`).
    pub fn validate_blocking(&self, request: Value, view: Arc<dyn View>) -> Result<ModuleAnswer, ModuleError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.submit(Job { request, view, reply })?;
        self.counted(
            answer.blocking_recv().unwrap_or_else(|_| Err(ModuleError::Trap("the worker thread stopped".into()))),
        )
    }

    fn submit(&self, job: Job) -> Result<(), ModuleError> {
        let queue = self.queue.as_ref().expect("the queue lives as long as the module");
        queue.try_send(job).map_err(|e| {
            self.counted::<()>(Err(match e {
                TrySendError::Full(_) => ModuleError::Busy(QUEUE),
                TrySendError::Disconnected(_) => ModuleError::Trap("every worker thread stopped".into()),
            }))
            .unwrap_err()
        })
    }

    /// Re-reads the file; a new module that compiles and passes the checks
    /// replaces the one in use. Returns whether it was replaced.
    pub fn reload(&self) -> bool {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(error) => {
                self.refused(format!("read error: {error}"), || format!("cannot read the file: {error}"));
                return false;
            }
        };
        let sha256 = runtime::sha256_hex(&bytes);
        if sha256 == self.current().sha256 {
            return false;
        }
        match self.runtime.compile(&bytes, &self.settings) {
            Ok(compiled) => {
                tracing::info!(
                    path = %self.path.display(),
                    sha256 = %compiled.sha256,
                    bytes = compiled.size,
                    compile_ms = compiled.compile_time.as_millis() as u64,
                    "policy module reloaded"
                );
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = compiled;
                *self.last_refused.lock().unwrap_or_else(|e| e.into_inner()) = None;
                self.count_reload("loaded");
                self.record_in_use();
                true
            }
            Err(error) => {
                self.refused(sha256, || error.to_string());
                false
            }
        }
    }

    /// Logs and counts a refused file, once per distinct content.
    fn refused(&self, key: String, why: impl FnOnce() -> String) {
        let mut last = self.last_refused.lock().unwrap_or_else(|e| e.into_inner());
        if last.as_deref() == Some(key.as_str()) {
            return;
        }
        tracing::error!(
            path = %self.path.display(),
            error = %why(),
            in_use = %self.current().sha256,
            "new policy module refused; the one in use is kept"
        );
        self.count_reload("refused");
        *last = Some(key);
    }

    fn count_reload(&self, result: &'static str) {
        if let Some(m) = &self.metrics {
            m.module_reloads.get_or_create(&ResultLabels { result }).inc();
        }
    }

    fn record_in_use(&self) {
        if let Some(m) = &self.metrics {
            let c = self.current();
            m.module_in_use.clear();
            m.module_in_use.get_or_create(&crate::metrics::ModuleLabels { sha256: c.sha256.clone() }).set(1);
        }
    }

    /// Reloads after every change of the file, and every `poll`. Ends when the module is dropped.
    pub fn spawn_watcher(self: &Arc<Self>, poll: Duration) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        let dirs = crate::file_watch::parent_dirs([self.path.as_path()]);
        tokio::spawn(crate::file_watch::watch("policy module", dirs, poll, move || {
            weak.upgrade().map(|m| m.reload()).is_some()
        }))
    }

    /// Counts an evaluation's outcome, and logs a failure.
    fn counted<T>(&self, outcome: Result<T, ModuleError>) -> Result<T, ModuleError> {
        if let Err(error) = &outcome {
            tracing::warn!(%error, sha256 = %self.current().sha256, "policy module evaluation failed");
        }
        if let Some(m) = &self.metrics {
            let result = outcome.as_ref().map_or_else(ModuleError::kind, |_| "ok");
            m.module_evaluations.get_or_create(&ResultLabels { result }).inc();
        }
        outcome
    }
}

impl Drop for PolicyModule {
    fn drop(&mut self) {
        self.queue.take(); // the workers see the queue close and return
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// A worker: keeps one instance of the module in use, makes a new one when the
/// module is replaced, and after any failure (a trap can leave memory half-written).
fn work(current: &RwLock<Arc<Compiled>>, jobs: &Mutex<Receiver<Job>>) {
    let mut instance: Option<Instance> = None;
    loop {
        let job = match jobs.lock().unwrap_or_else(|e| e.into_inner()).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        let compiled = current.read().unwrap_or_else(|e| e.into_inner()).clone();
        if instance.as_ref().is_none_or(|i| !Arc::ptr_eq(i.compiled(), &compiled)) {
            instance = None;
        }
        let outcome = match instance.take().map_or_else(|| Instance::new(&compiled), Ok) {
            Ok(i) => {
                let outcome = i.validate(&job.request, job.view);
                if outcome.is_ok() {
                    instance = Some(i);
                }
                outcome
            }
            Err(e) => Err(e),
        };
        let _ = job.reply.send(outcome);
    }
}
