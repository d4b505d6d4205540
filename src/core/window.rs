//! The restorable window of a continuous backup (SPEC.md §2): `[W0, end(S)]`,
//! where W0 is the earliest end of a base candidate inside the log range, or
//! the log start when the ActionSet needs no base backup.

use chrono::{DateTime, Utc};

use super::facts::BackupFacts;
use super::inventory::{BaseRef, Inventory};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// `[start(S), end(S)]`, when both exist and are ordered (R9).
    pub log_range: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// `[W0, end(S)]`; `None` when no base backup completed inside the log range.
    pub restorable: Option<(DateTime<Utc>, DateTime<Utc>)>,
    pub base_required: bool,
}

/// `baseRequired(S)`: false only when S's ActionSet says `baseBackupRequired: false`.
pub fn base_required(s: &BackupFacts, inv: &dyn Inventory) -> bool {
    s.action_set.as_deref().and_then(|name| inv.action_set(name)).is_none_or(|a| a.base_backup_required)
}

pub fn window(s: &BackupFacts, inv: &dyn Inventory) -> Window {
    let base_required = base_required(s, inv);
    let log_range = match (s.start, s.end) {
        (Some(a), Some(b)) if a <= b => Some((a, b)),
        _ => None,
    };
    let restorable = log_range.and_then(|(start, end)| {
        if !base_required {
            return Some((start, end));
        }
        inv.earliest_base(s, start, end).map(|b| (b.end, end))
    });
    Window { log_range, restorable, base_required }
}

/// The base backups inside the log range, for `pitrguard windows`.
pub fn bases_in_range(s: &BackupFacts, w: &Window, inv: &dyn Inventory) -> Vec<BaseRef> {
    match w.log_range {
        Some((start, end)) => inv.bases_ending_between(s, start, end),
        None => Vec::new(),
    }
}
