//! `pitrguard windows`: what can be restored, per continuous backup.

use std::io::Write;

use serde::Serialize;

use super::{BaseEdgeArg, Inputs, Output};
use crate::core::BaseEdge;
use crate::core::facts::BackupFacts;
use crate::core::inventory::Inventory;
use crate::core::time::format_time;
use crate::core::window::{bases_in_range, window};
use crate::load::load;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files or directories with the Backups and ActionSets (searched recursively for *.yaml, *.yml, *.json);
    /// `-` reads stdin. Not needed with --live.
    #[arg(required_unless_present = "live", env = "PITRGUARD_PATHS", value_delimiter = ',')]
    pub paths: Vec<std::path::PathBuf>,

    #[command(flatten)]
    pub inputs: Inputs,

    /// Only backups in this namespace.
    #[arg(long, short = 'n', env = "PITRGUARD_NAMESPACE")]
    pub namespace: Option<String>,

    /// Only backups of this cluster (label app.kubernetes.io/instance).
    #[arg(long, short = 'c', env = "PITRGUARD_CLUSTER")]
    pub cluster: Option<String>,

    #[command(flatten)]
    pub base_edge: BaseEdgeArg,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Range {
    pub start: String,
    pub end: String,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct BaseBackup {
    pub name: String,
    pub end: String,
}

/// A second inside the restorable window that is not restorable: the completion second of a base (R13).
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ExcludedSecond {
    pub second: String,
    pub base_backup: String,
}

/// One continuous backup's windows, as `--output json` prints it.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BackupWindow {
    pub namespace: String,
    pub name: String,
    pub cluster: Option<String>,
    pub phase: Option<String>,
    pub log_range: Option<Range>,
    /// `strict` or `inclusive` (`--base-edge`).
    pub base_edge: &'static str,
    pub restorable_window: Option<Range>,
    /// Seconds inside the restorable window that are excluded from it (strict edge).
    pub excluded_seconds: Vec<ExcludedSecond>,
    pub base_backup_required: bool,
    /// Base candidates that completed inside the log range, by end time.
    pub base_backups: Vec<BaseBackup>,
}

fn range(r: Option<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)>) -> Option<Range> {
    r.map(|(a, b)| Range { start: format_time(a), end: format_time(b) })
}

/// The windows of every continuous backup that passes the filters.
pub fn windows(
    inv: &dyn Inventory,
    namespace: Option<&str>,
    cluster: Option<&str>,
    edge: BaseEdge,
) -> Vec<BackupWindow> {
    let keep = |b: &BackupFacts| {
        namespace.is_none_or(|n| *b.namespace == *n) && cluster.is_none_or(|c| b.lineage.instance.as_deref() == Some(c))
    };
    inv.continuous_backups()
        .into_iter()
        .filter(keep)
        .map(|s| {
            let w = window(&s, inv, edge);
            let bases = bases_in_range(&s, &w, inv);
            BackupWindow {
                log_range: range(w.log_range),
                base_edge: edge.as_str(),
                restorable_window: range(w.restorable),
                excluded_seconds: w
                    .excluded
                    .iter()
                    .map(|b| ExcludedSecond { second: format_time(b.end), base_backup: b.name.to_string() })
                    .collect(),
                base_backup_required: w.base_required,
                base_backups: bases
                    .into_iter()
                    .map(|b| BaseBackup { name: b.name.to_string(), end: format_time(b.end) })
                    .collect(),
                cluster: s.lineage.instance.as_deref().map(str::to_string),
                phase: s.phase.as_deref().map(str::to_string),
                namespace: s.namespace.to_string(),
                name: s.name.to_string(),
            }
        })
        .collect()
}

pub fn print(windows: &[BackupWindow], output: Output) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if output == Output::Json {
        serde_json::to_writer_pretty(&mut out, windows)?;
        writeln!(out)?;
        return Ok(());
    }
    if windows.is_empty() {
        eprintln!("pitrguard: no continuous backup found");
    }
    let text = |r: &Option<Range>, none: &str| match r {
        Some(r) => format!("{} .. {}", r.start, r.end),
        None => none.to_string(),
    };
    for w in windows {
        writeln!(
            out,
            "{}/{} (cluster {}, {})",
            w.namespace,
            w.name,
            w.cluster.as_deref().unwrap_or("<unlabelled>"),
            w.phase.as_deref().unwrap_or("no phase")
        )?;
        writeln!(out, "  log range:          {}", text(&w.log_range, "none (no start or end time yet)"))?;
        let none = match (&w.log_range, w.base_backups.first()) {
            (None, _) => "none",
            (Some(_), None) => "none (no full backup completed inside the log range)",
            (Some(_), Some(_)) => "none (base backups completed in every second from the first one to the end)",
        };
        writeln!(out, "  restorable window:  {} ({} base edge)", text(&w.restorable_window, none), w.base_edge)?;
        if !w.excluded_seconds.is_empty() {
            let list: Vec<String> = w
                .excluded_seconds
                .iter()
                .map(|e| format!("{} (base backup {} completed in it)", e.second, e.base_backup))
                .collect();
            writeln!(out, "  excluded seconds:   {}", list.join(", "))?;
        }
        if !w.base_backup_required {
            writeln!(out, "  base backups:       not required (ActionSet sets baseBackupRequired: false)")?;
        } else if w.base_backups.is_empty() {
            writeln!(out, "  base backups:       none")?;
        } else {
            let list: Vec<String> = w.base_backups.iter().map(|b| format!("{} (ended {})", b.name, b.end)).collect();
            writeln!(out, "  base backups:       {}", list.join(", "))?;
        }
    }
    Ok(())
}

pub fn run(args: &Args) -> anyhow::Result<u8> {
    let index = super::inventory(&args.inputs, load(&args.paths, false)?.index, args.namespace.as_deref())?;
    let found = windows(&index, args.namespace.as_deref(), args.cluster.as_deref(), args.base_edge.base_edge);
    print(&found, args.inputs.output)?;
    Ok(0)
}
