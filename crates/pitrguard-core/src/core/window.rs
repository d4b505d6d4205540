//! The restorable window of a continuous backup (SPEC.md §2), and the base a
//! restore to T starts from.
//!
//! Under the `strict` edge (the default) the window is `[W0, end(S)]` where W0
//! is one second after the earliest base that completed inside the log range,
//! minus the *completion second* `[end(B), end(B) + 1s)` of every other base
//! inside it: backup times are stored rounded down to the second, so a restore
//! to `end(B)` may ask for a point before B is consistent (R13). Under
//! `inclusive` (KubeBlocks' own reading) W0 is the earliest base's end and
//! nothing is excluded.

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};

use super::facts::BackupFacts;
use super::inventory::{BaseRef, Inventory};

/// Whether a restore may target the second in which its base backup completed (SPEC.md §2, R13).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum BaseEdge {
    /// `end(P(T)) < T`: the completion second of a base is not restorable from it.
    #[default]
    Strict,
    /// `end(P(T)) <= T`, as KubeBlocks reads it.
    Inclusive,
}

impl BaseEdge {
    pub fn as_str(self) -> &'static str {
        match self {
            BaseEdge::Strict => "strict",
            BaseEdge::Inclusive => "inclusive",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "strict" => Some(BaseEdge::Strict),
            "inclusive" => Some(BaseEdge::Inclusive),
            _ => None,
        }
    }
}

const SECOND: TimeDelta = TimeDelta::seconds(1);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window<'a> {
    /// `[start(S), end(S)]`, when both exist and are ordered (R9).
    pub log_range: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// `[W0, end(S)]`; `None` when no base backup completed inside the log range.
    pub restorable: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// The completion seconds inside `restorable` that are not restorable (strict edge only),
    /// each with the base backup whose completion second it is, by time.
    pub excluded: Vec<BaseRef<'a>>,
    /// The earliest base candidate that completed inside the log range (when one is required).
    pub first_base: Option<BaseRef<'a>>,
    pub base_required: bool,
}

/// `baseRequired(S)`: false only when S's ActionSet says `baseBackupRequired: false`.
pub fn base_required(s: &BackupFacts, inv: &dyn Inventory) -> bool {
    s.action_set.as_deref().and_then(|name| inv.base_backup_required(name)).unwrap_or(true)
}

pub fn window<'a>(s: &BackupFacts<'_>, inv: &'a dyn Inventory, edge: BaseEdge) -> Window<'a> {
    let base_required = base_required(s, inv);
    let log_range = match (s.start, s.end) {
        (Some(a), Some(b)) if a <= b => Some((a, b)),
        _ => None,
    };
    // One range query: the first base and the completion seconds after it come from the same list.
    let mut bases = match log_range.filter(|_| base_required) {
        Some((start, end)) => inv.bases_ending_between(s, start, end),
        None => Vec::new(),
    };
    let first_base = bases.first().cloned();
    let mut excluded = Vec::new();
    let restorable = log_range.and_then(|(start, end)| {
        if !base_required {
            return Some((start, end));
        }
        let first = first_base.as_ref()?;
        if edge == BaseEdge::Inclusive {
            return Some((first.end, end));
        }
        let w0 = first.end.checked_add_signed(SECOND).filter(|w0| *w0 <= end)?;
        bases.retain(|b| b.end >= w0);
        excluded = std::mem::take(&mut bases);
        excluded.dedup_by(|a, b| a.end == b.end);
        // Nothing is left when every second from W0 to end(S) is some base's completion second.
        let seconds = (end - w0).num_seconds() + 1;
        ((excluded.len() as i64) < seconds).then_some((w0, end))
    });
    Window { log_range, restorable, excluded, first_base, base_required }
}

/// P(T): the base KubeBlocks restores T from, the latest base candidate with
/// `start(S) <= end(B) <= T` (T in whole seconds).
pub fn base_for<'a>(s: &BackupFacts<'_>, inv: &'a dyn Inventory, t: DateTime<Utc>) -> Option<BaseRef<'a>> {
    let start = s.start?;
    inv.latest_base(s, start, t.trunc_subsecs(0))
}

/// A restorable second and the base a restore to it starts from (`None` when no base is required).
pub type Restorable<'a> = (DateTime<Utc>, Option<BaseRef<'a>>);

/// The nearest restorable seconds before and after `t`.
pub fn nearest_restorable<'a>(
    s: &BackupFacts<'_>,
    inv: &'a dyn Inventory,
    w: &Window<'_>,
    t: DateTime<Utc>,
) -> (Option<Restorable<'a>>, Option<Restorable<'a>>) {
    let Some((w0, end)) = w.restorable else { return (None, None) };
    let second = t.trunc_subsecs(0);
    let base = |at: DateTime<Utc>| if w.base_required { base_for(s, inv, at) } else { None };
    // Excluded seconds are sorted and distinct, so a walk over a run of them ends after at most
    // as many steps as there are bases.
    let mut before = (second - SECOND).min(end);
    while before >= w0 && w.excluded.iter().any(|e| e.end == before) {
        before -= SECOND;
    }
    let mut after = (second + SECOND).max(w0);
    while after <= end && w.excluded.iter().any(|e| e.end == after) {
        after += SECOND;
    }
    let earlier = (before >= w0).then(|| (before, base(before)));
    let later = (after <= end).then(|| (after, base(after)));
    (earlier, later)
}

/// The base backups inside the log range, for `pitrguard windows`.
pub fn bases_in_range<'a>(s: &BackupFacts<'_>, w: &Window<'_>, inv: &'a dyn Inventory) -> Vec<BaseRef<'a>> {
    match w.log_range {
        Some((start, end)) => inv.bases_ending_between(s, start, end),
        None => Vec::new(),
    }
}
