//! The outcome of judging one OpsRequest.

use std::fmt;

use chrono::{DateTime, Utc};

use super::mutate::Mutation;

/// Stable rule ids (SPEC.md §3). `Schema` is ours: the object could not be read at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum Rule {
    Schema,
    R1,
    R2,
    R3,
    R4,
    R5,
    R6,
    R7,
    R8,
    R9,
    R10,
    R11,
    R12,
    R13,
}

impl Rule {
    pub const ALL: [Rule; 14] = [
        Rule::Schema,
        Rule::R1,
        Rule::R2,
        Rule::R3,
        Rule::R4,
        Rule::R5,
        Rule::R6,
        Rule::R7,
        Rule::R8,
        Rule::R9,
        Rule::R10,
        Rule::R11,
        Rule::R12,
        Rule::R13,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Rule::Schema => "schema",
            Rule::R1 => "R1",
            Rule::R2 => "R2",
            Rule::R3 => "R3",
            Rule::R4 => "R4",
            Rule::R5 => "R5",
            Rule::R6 => "R6",
            Rule::R7 => "R7",
            Rule::R8 => "R8",
            Rule::R9 => "R9",
            Rule::R10 => "R10",
            Rule::R11 => "R11",
            Rule::R12 => "R12",
            Rule::R13 => "R13",
        }
    }

    /// The rule with this id (`R5`, `schema`), as [`Rule::id`] writes it.
    pub fn from_id(id: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.id() == id)
    }

    /// Rules whose denial newer Backups could turn into an allow: a Backup that
    /// appeared, completed, or grew its time range a moment ago.
    pub fn may_be_stale(self) -> bool {
        matches!(self, Rule::R3 | Rule::R4 | Rule::R9 | Rule::R10 | Rule::R11)
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// Stable warning ids (SPEC.md §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum WarningId {
    W1,
    W2,
    W3,
}

impl WarningId {
    pub const ALL: [WarningId; 3] = [WarningId::W1, WarningId::W2, WarningId::W3];

    pub fn id(self) -> &'static str {
        match self {
            WarningId::W1 => "W1",
            WarningId::W2 => "W2",
            WarningId::W3 => "W3",
        }
    }

    pub fn from_id(id: &str) -> Option<WarningId> {
        WarningId::ALL.into_iter().find(|w| w.id() == id)
    }
}

/// A broken rule: `message` names the field, what is wrong and what would be valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub rule: Rule,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub id: WarningId,
    pub message: String,
}

impl Warning {
    /// W1 and W2 explain the mutating webhook's patch; W3 is about the restore itself.
    pub fn explains_mutation(&self) -> bool {
        self.id.explains_mutation()
    }
}

impl WarningId {
    /// See [`Warning::explains_mutation`].
    pub fn explains_mutation(self) -> bool {
        matches!(self, WarningId::W1 | WarningId::W2)
    }
}

/// What a restore that passes the rules will do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub backup_namespace: String,
    pub backup_name: String,
    /// `restorePointInTime` in its normal form (UTC, whole seconds; [`super::time::format_time`]
    /// writes it), when there is one.
    pub point_in_time: Option<DateTime<Utc>>,
    /// M3's pick: the base backup a point-in-time restore starts from.
    pub base_backup: Option<String>,
    pub volume_restore_policy: String,
}

/// Why an object was let through without being judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    NotAnOpsRequest,
    NotARestore(String),
    Operation(String),
    UpdateWithoutRestoreChange,
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skip::NotAnOpsRequest => f.write_str("not a KubeBlocks OpsRequest; not judged"),
            Skip::NotARestore(t) if t.is_empty() => f.write_str("OpsRequest without spec.type; not judged"),
            Skip::NotARestore(t) => write!(f, "{t} OpsRequest, not a Restore; not judged"),
            Skip::Operation(op) => write!(f, "{op} is not judged"),
            Skip::UpdateWithoutRestoreChange => {
                f.write_str("update leaves spec.restore and spec.clusterName unchanged; not judged")
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Set when the object was let through untouched without judging it.
    pub skipped: Option<Skip>,
    pub violations: Vec<Violation>,
    pub warnings: Vec<Warning>,
    /// Empty whenever there is a violation.
    pub mutations: Vec<Mutation>,
    pub plan: Option<Plan>,
}

impl Decision {
    pub fn skip(why: Skip) -> Self {
        Self { skipped: Some(why), violations: vec![], warnings: vec![], mutations: vec![], plan: None }
    }

    pub fn allowed(&self) -> bool {
        self.violations.is_empty()
    }

    /// The denial message (every violation), or a one-line summary of an allowed restore.
    pub fn message(&self) -> String {
        if !self.violations.is_empty() {
            return self.violations.iter().map(|v| v.message.as_str()).collect::<Vec<_>>().join("; ");
        }
        if let Some(skip) = &self.skipped {
            return skip.to_string();
        }
        match &self.plan {
            Some(p) => {
                let mut s = String::with_capacity(160);
                for part in ["restore from backup \"", &p.backup_namespace, "/", &p.backup_name, "\""] {
                    s.push_str(part);
                }
                if let Some(t) = p.point_in_time {
                    s.push_str(" to ");
                    super::time::push_time(&mut s, t);
                }
                if let Some(base) = &p.base_backup {
                    for part in [" starting from base backup \"", base, "\""] {
                        s.push_str(part);
                    }
                }
                s
            }
            None => String::from("allowed"),
        }
    }

    pub fn rules(&self) -> Vec<Rule> {
        self.violations.iter().map(|v| v.rule).collect()
    }
}

/// Inclusive instant range, printed `a .. b`.
pub fn range_text(from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    let mut out = String::with_capacity(44);
    push_range(&mut out, from, to);
    out
}

/// [`range_text`] appended to `out`.
pub fn push_range(out: &mut String, from: DateTime<Utc>, to: DateTime<Utc>) {
    super::time::push_time(out, from);
    out.push_str(" .. ");
    super::time::push_time(out, to);
}
