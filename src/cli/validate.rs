//! `pitrguard validate`: the admission decision, offline.

use std::io::Write;

use serde::Serialize;

use std::sync::Arc;

use serde_json::{Value, json};

use super::{Inputs, ModuleArgs, Output, PolicyArgs};
use crate::admission::Answer;
use crate::core::{Index, Operation, Policy, judge};
use crate::load::{DEFAULT_NAMESPACE, Document, Kind, build_index, kind_of, load};
use crate::policy_module::{PolicyModule, answer as module_answer};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files or directories with the OpsRequests to judge, and (without --live) the Backups, ActionSets and
    /// Clusters they are judged against; directories are searched recursively for *.yaml, *.yml, *.json;
    /// `-` reads stdin.
    #[arg(required = true, env = "PITRGUARD_PATHS", value_delimiter = ',')]
    pub paths: Vec<std::path::PathBuf>,

    #[command(flatten)]
    pub inputs: Inputs,

    #[command(flatten)]
    pub policy: PolicyArgs,

    #[command(flatten)]
    pub module: ModuleArgs,
}

/// One OpsRequest's verdict, as `--output json` prints it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub allowed: bool,
    pub message: String,
    pub warnings: Vec<String>,
    pub patch: json_patch::Patch,
    /// Ids of the broken rules (R1…R12), empty when allowed.
    pub rules: Vec<String>,
}

impl Verdict {
    pub fn new(doc: &Document, answer: &Answer) -> Self {
        let field = |p: &str| doc.value.pointer(p).and_then(|v| v.as_str()).unwrap_or("").to_string();
        let namespace = Some(field("/metadata/namespace")).filter(|n| !n.is_empty());
        Self {
            api_version: field("/apiVersion"),
            kind: field("/kind"),
            namespace: namespace.unwrap_or_else(|| DEFAULT_NAMESPACE.into()),
            name: field("/metadata/name"),
            allowed: answer.allowed,
            message: answer.message.clone(),
            warnings: answer.warnings.iter().map(|w| w.message.clone()).collect(),
            patch: answer.patch.clone(),
            rules: answer.rules.iter().map(|r| r.id().to_string()).collect(),
        }
    }
}

/// Judges every OpsRequest in `docs` against the objects in `docs`.
pub fn verdicts(docs: &[Document], policy: &Policy) -> Result<Vec<Verdict>, crate::load::LoadError> {
    Ok(verdicts_with(docs, &build_index(docs)?, policy))
}

/// Judges every OpsRequest in `docs`, as the webhook would judge its CREATE.
pub fn verdicts_with(docs: &[Document], index: &Index, policy: &Policy) -> Vec<Verdict> {
    ops_requests(docs)
        .map(|d| {
            let decision = judge(Operation::Create, Some(&d.value), None, DEFAULT_NAMESPACE, index, policy);
            Verdict::new(d, &Answer::from(&decision))
        })
        .collect()
}

/// [`verdicts_with`] through the policy module.
pub fn module_verdicts(docs: &[Document], index: Arc<Index>, module: &PolicyModule) -> Vec<Verdict> {
    ops_requests(docs)
        .map(|d| {
            let answer = match module.validate_blocking(create_request(&d.value), index.clone()) {
                Ok(a) => module_answer::to_answer(Some(&d.value), a),
                Err(e) => module_answer::failure(&e),
            };
            Verdict::new(d, &answer)
        })
        .collect()
}

fn ops_requests(docs: &[Document]) -> impl Iterator<Item = &Document> {
    docs.iter().filter(|d| kind_of(&d.value) == Kind::OpsRequest)
}

/// The AdmissionRequest of a CREATE of `object`, as the API server would send it.
pub fn create_request(object: &Value) -> Value {
    let api_version = object.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let kind = object.get("kind").cloned().unwrap_or(Value::Null);
    let gvk = json!({"group": group, "version": version, "kind": kind});
    let name = object.pointer("/metadata/name").cloned().unwrap_or(json!(""));
    let namespace = object.pointer("/metadata/namespace").cloned().unwrap_or(json!(DEFAULT_NAMESPACE));
    json!({
        "uid": "pitrguard-validate", "kind": gvk, "requestKind": gvk,
        "resource": {"group": group, "version": version, "resource": "opsrequests"},
        "name": name, "namespace": namespace, "operation": "CREATE",
        "userInfo": {"username": "pitrguard-validate"}, "object": object, "oldObject": null, "dryRun": true,
    })
}

/// Runs the command; returns the process exit code.
pub fn run(args: &Args) -> anyhow::Result<u8> {
    let loaded = load(&args.paths, true)?;
    let (docs, documents) = (loaded.ops_requests, loaded.documents);
    let index = super::inventory(&args.inputs, loaded.index, None)?;
    let policy = args.policy.policy();
    let verdicts = match args.module.load(&policy, 1, None)? {
        Some(module) => module_verdicts(&docs, Arc::new(index), &module),
        None => verdicts_with(&docs, &index, &policy),
    };
    let mut out = std::io::stdout().lock();
    match args.inputs.output {
        Output::Json => {
            serde_json::to_writer_pretty(&mut out, &verdicts)?;
            writeln!(out)?;
        }
        Output::Text => {
            if verdicts.is_empty() {
                eprintln!("pitrguard: no OpsRequest found in {documents} document(s)");
            }
            for v in &verdicts {
                let word = if v.allowed { "allowed" } else { "denied" };
                writeln!(out, "{}/{}: {word}: {}", v.namespace, v.name, v.message)?;
                for w in &v.warnings {
                    eprintln!("Warning: {}/{}: {w}", v.namespace, v.name);
                }
            }
        }
    }
    Ok(if verdicts.iter().all(|v| v.allowed) { 0 } else { 1 })
}
