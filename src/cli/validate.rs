//! `pitrguard validate`: the admission decision, offline.

use std::io::Write;

use serde::Serialize;

use super::{Inputs, Output, PolicyArgs};
use crate::core::mutate::to_patch;
use crate::core::{Decision, Operation, Policy, judge};
use crate::load::{DEFAULT_NAMESPACE, Document, Kind, build_index, kind_of, read_documents};

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
    pub fn new(doc: &Document, decision: &Decision) -> Self {
        let field = |p: &str| doc.value.pointer(p).and_then(|v| v.as_str()).unwrap_or("").to_string();
        let namespace = Some(field("/metadata/namespace")).filter(|n| !n.is_empty());
        Self {
            api_version: field("/apiVersion"),
            kind: field("/kind"),
            namespace: namespace.unwrap_or_else(|| DEFAULT_NAMESPACE.into()),
            name: field("/metadata/name"),
            allowed: decision.allowed(),
            message: decision.message(),
            warnings: decision.warnings.iter().map(|w| w.message.clone()).collect(),
            patch: to_patch(&decision.mutations),
            rules: decision.rules().iter().map(|r| r.id().to_string()).collect(),
        }
    }
}

/// Judges every OpsRequest in `docs` against the objects in `docs`.
pub fn verdicts(docs: &[Document], policy: &Policy) -> Result<Vec<Verdict>, crate::load::LoadError> {
    Ok(verdicts_with(docs, &build_index(docs)?, policy))
}

/// Judges every OpsRequest in `docs`, as the webhook would judge its CREATE.
pub fn verdicts_with(docs: &[Document], index: &crate::core::Index, policy: &Policy) -> Vec<Verdict> {
    docs.iter()
        .filter(|d| kind_of(&d.value) == Kind::OpsRequest)
        .map(|d| {
            let decision = judge(Operation::Create, Some(&d.value), None, DEFAULT_NAMESPACE, index, policy);
            Verdict::new(d, &decision)
        })
        .collect()
}

/// Runs the command; returns the process exit code.
pub fn run(args: &Args) -> anyhow::Result<u8> {
    let docs = read_documents(&args.paths)?;
    let index = super::inventory(&args.inputs, &docs, None)?;
    let verdicts = verdicts_with(&docs, &index, &args.policy.policy());
    let mut out = std::io::stdout().lock();
    match args.inputs.output {
        Output::Json => {
            serde_json::to_writer_pretty(&mut out, &verdicts)?;
            writeln!(out)?;
        }
        Output::Text => {
            if verdicts.is_empty() {
                eprintln!("pitrguard: no OpsRequest found in {} document(s)", docs.len());
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
