//! The command line: `pitrguard validate | windows | serve | reconcile | certs`.
//! Every flag can also be set as `PITRGUARD_<FLAG>`.

pub mod reconcile;
pub mod serve;
pub mod validate;
pub mod windows;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "pitrguard",
    version,
    about = "Stops bad KubeBlocks point-in-time restores before they start",
    long_about = "pitrguard checks KubeBlocks Restore OpsRequests against the backups that exist: the point in \
time must lie inside a continuous backup's log range, after a full backup that completed inside it. It runs as an \
admission webhook (serve) and offline on manifests (validate, windows).\n\nExit codes: 0 all allowed, 1 a restore \
was denied, 2 the input could not be read or the command failed."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Judge every Restore OpsRequest found in the files, against the Backups, ActionSets and Clusters found there.
    Validate(validate::Args),
    /// Show each continuous backup's log range, restorable window and base backups.
    #[command(override_usage = "pitrguard windows [OPTIONS] <PATHS>...\n       pitrguard windows [OPTIONS] --live")]
    Windows(windows::Args),
    /// Run the validating and mutating admission webhook (HTTPS) and the admin port (HTTP).
    Serve(Box<serve::Args>),
    /// Run the bundled reconciler alone: observe restores, or perform them (KubeBlocks 1.0/1.1), with leader election.
    Reconcile(reconcile::Args),
    /// Make a development CA and serving certificate for the webhook.
    Certs(crate::certs::CertsArgs),
}

/// The flags that change decisions, shared by `validate` and `serve`.
#[derive(Debug, clap::Args)]
pub struct PolicyArgs {
    /// volumeRestorePolicy that M1 fills in when it is absent.
    #[arg(long, default_value = "Parallel", value_parser = ["Serial", "Parallel"], env = "PITRGUARD_DEFAULT_VOLUME_RESTORE_POLICY")]
    pub default_volume_restore_policy: String,

    /// W3 warns when the point in time is this close to the end of a Running continuous backup (seconds).
    #[arg(long, default_value_t = 60, value_name = "SECONDS", env = "PITRGUARD_EDGE_WARNING",
          value_parser = clap::value_parser!(i64).range(0..=366 * 24 * 3600))]
    pub edge_warning: i64,

    #[command(flatten)]
    pub base_edge: BaseEdgeArg,
}

impl PolicyArgs {
    pub fn policy(&self) -> crate::core::Policy {
        crate::core::Policy {
            default_volume_restore_policy: self.default_volume_restore_policy.clone(),
            edge_warning: chrono::TimeDelta::seconds(self.edge_warning),
            base_edge: self.base_edge.base_edge,
        }
    }
}

/// `--policy-module` and its limits, shared by `validate` and `serve`.
#[derive(Debug, clap::Args)]
pub struct ModuleArgs {
    /// Judge through this WebAssembly build of the rules (pitrguard-policy.wasm, a Kubewarden policy module)
    /// instead of the built-in ones; `serve` reloads it when the file changes. The answers are the same.
    #[arg(long, value_name = "FILE.wasm", env = "PITRGUARD_POLICY_MODULE")]
    pub policy_module: Option<std::path::PathBuf>,

    /// Wall time one evaluation of the module may take before it is stopped and the request denied.
    #[arg(long, default_value_t = 1000, value_name = "MILLISECONDS", requires = "policy_module",
          env = "PITRGUARD_POLICY_MODULE_DEADLINE", value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub policy_module_deadline: u64,

    /// Size the module's memory may grow to; an evaluation that needs more is denied.
    #[arg(long, default_value_t = 64, value_name = "MIB", requires = "policy_module",
          env = "PITRGUARD_POLICY_MODULE_MEMORY", value_parser = clap::value_parser!(u64).range(2..=4096))]
    pub policy_module_memory: u64,
}

impl ModuleArgs {
    pub fn limits(&self) -> crate::policy_module::Limits {
        crate::policy_module::Limits {
            deadline: std::time::Duration::from_millis(self.policy_module_deadline),
            memory_bytes: (self.policy_module_memory * 1024 * 1024) as usize,
        }
    }

    /// The module, loaded and checked, when `--policy-module` is given.
    pub fn load(
        &self,
        policy: &crate::core::Policy,
        workers: usize,
        metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
    ) -> anyhow::Result<Option<crate::policy_module::PolicyModule>> {
        let Some(path) = &self.policy_module else { return Ok(None) };
        Ok(Some(crate::policy_module::PolicyModule::load(path, policy, self.limits(), workers, metrics)?))
    }
}

/// `--base-edge`, shared by `validate`, `windows` and `serve`.
#[derive(Debug, clap::Args)]
pub struct BaseEdgeArg {
    /// Whether a restore may target the second in which its base backup completed. `strict` refuses it (R13):
    /// backup times are rounded down to the second, and PostgreSQL refuses such a restore or returns later data.
    /// `inclusive` allows it, as KubeBlocks does.
    #[arg(long = "base-edge", default_value = "strict", env = "PITRGUARD_BASE_EDGE",
          value_parser = PossibleValuesParser::new(["strict", "inclusive"])
              .map(|s| crate::core::BaseEdge::parse(&s).expect("one of the possible values")))]
    pub base_edge: crate::core::BaseEdge,
}

/// The inventory of an offline command: the objects in the files (`from_files`), or
/// (`--live`) the cluster's.
pub fn inventory(
    inputs: &Inputs,
    from_files: crate::core::Index,
    namespace: Option<&str>,
) -> anyhow::Result<crate::core::Index> {
    if !inputs.live {
        return Ok(from_files);
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let config = kube::Config::infer().await.map_err(|e| match std::env::var("KUBECONFIG") {
            Ok(path) => anyhow::anyhow!("--live: cannot read the kubeconfig KUBECONFIG={path}: {}", root_cause(&e)),
            Err(_) => anyhow::anyhow!(
                "--live: no kubeconfig (~/.kube/config, or set KUBECONFIG) and not inside a cluster: {}",
                root_cause(&e)
            ),
        })?;
        let server = config.cluster_url.clone();
        // Which kubeconfig context, as kubectl users name their clusters.
        let context = kube::config::Kubeconfig::read()
            .ok()
            .and_then(|k| k.current_context)
            .map_or_else(|| "in-cluster config".to_string(), |c| format!("kubeconfig context \"{c}\""));
        let client = kube::Client::try_from(config)
            .map_err(|e| anyhow::anyhow!("--live: cannot use {server} ({context}): {}", root_cause(&e)))?;
        let index = crate::inventory::live::list_once(&client, namespace).await.map_err(|e| {
            anyhow::anyhow!("--live: cannot list Backups from {server} ({context}): {}", root_cause(e.as_ref()))
        })?;
        let c = index.counts();
        eprintln!(
            "pitrguard: read {} Backups, {} ActionSets, {} Clusters from {server} ({context})",
            c.backups, c.action_sets, c.clusters
        );
        Ok(index)
    })
}

/// The innermost error of a chain: the one line a user can act on ("Connection refused").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut e = e;
    while let Some(next) = e.source() {
        e = next;
    }
    e.to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// Inputs shared by the offline commands (each has its own `paths`: `validate` always needs them,
/// `windows --live` does not).
#[derive(Debug, clap::Args)]
pub struct Inputs {
    /// Read Backups, ActionSets and Clusters from the current kubeconfig's cluster instead of the files.
    #[arg(long, env = "PITRGUARD_LIVE")]
    pub live: bool,

    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "text", env = "PITRGUARD_OUTPUT")]
    pub output: Output,
}
