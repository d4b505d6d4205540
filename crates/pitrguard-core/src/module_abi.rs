//! The contract between the policy module (`pitrguard-policy`) and the hosts
//! that run it (Kubewarden's policy server, `pitrguard --policy-module`): its
//! settings, and what its answer carries besides Kubewarden's own fields.

use std::collections::HashMap;

use chrono::TimeDelta;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::core::rules::VOLUME_RESTORE_POLICIES;
use crate::core::{BaseEdge, Decision, Policy};

/// The module's settings: the counterparts of `pitrguard serve`'s flags.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Settings {
    /// `--default-volume-restore-policy` (M1): `Serial` or `Parallel` (default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_volume_restore_policy: Option<String>,
    /// `--edge-warning` in seconds (W3), default 60.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edge_warning_seconds: Option<i64>,
    /// `--base-edge`: `strict` (default) or `inclusive`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_edge: Option<String>,
}

/// The longest edge warning accepted, as `--edge-warning`: 366 days.
pub const MAX_EDGE_WARNING_SECONDS: i64 = 366 * 24 * 3600;

impl Settings {
    /// The settings that make the module judge as `policy` does.
    pub fn from_policy(policy: &Policy) -> Self {
        Self {
            default_volume_restore_policy: Some(policy.default_volume_restore_policy.clone()),
            edge_warning_seconds: Some(policy.edge_warning.num_seconds()),
            base_edge: Some(policy.base_edge.as_str().to_string()),
        }
    }

    /// Settings as the host sends them: `null` means every default.
    pub fn parse(raw: &Value) -> Result<Self, String> {
        if raw.is_null() {
            return Ok(Self::default());
        }
        Self::deserialize(raw).map_err(|e| format!("settings: {e}"))
    }

    /// The policy these settings ask for, or what is wrong with them.
    pub fn policy(&self) -> Result<Policy, String> {
        let mut policy = Policy::default();
        if let Some(p) = &self.default_volume_restore_policy {
            if !VOLUME_RESTORE_POLICIES.contains(&p.as_str()) {
                return Err(format!(
                    "settings.defaultVolumeRestorePolicy: {p:?} is not a volume restore policy; use one of {}",
                    VOLUME_RESTORE_POLICIES.join(", ")
                ));
            }
            policy.default_volume_restore_policy = p.clone();
        }
        if let Some(s) = self.edge_warning_seconds {
            if !(0..=MAX_EDGE_WARNING_SECONDS).contains(&s) {
                return Err(format!(
                    "settings.edgeWarningSeconds: {s} is out of range; use 0 .. {MAX_EDGE_WARNING_SECONDS} seconds"
                ));
            }
            policy.edge_warning = TimeDelta::seconds(s);
        }
        if let Some(e) = &self.base_edge {
            policy.base_edge = BaseEdge::parse(e)
                .ok_or_else(|| format!("settings.baseEdge: {e:?} is not a base edge; use strict or inclusive"))?;
        }
        Ok(policy)
    }
}

// Audit annotation keys have no prefix: the API server puts the webhook's name in
// front (`<webhook>/rules`) and drops a key that already has a `/`.

/// Audit annotation: the ids of the broken rules, comma-separated (`R5,R9`).
pub const ANNOTATION_RULES: &str = "rules";
/// Audit annotation: the ids of the warnings, in the order of the answer's warnings (`W1,W3`).
/// A host that serves two webhooks, as pitrguard does, sends W1/W2 from the mutating one only.
pub const ANNOTATION_WARNINGS: &str = "warnings";
/// Audit annotation, `"true"` when the object was let through without being judged.
pub const ANNOTATION_SKIPPED: &str = "skipped";

/// The audit annotations of the module's answer for `decision`.
pub fn audit_annotations(decision: &Decision) -> HashMap<String, String> {
    let ids = |ids: Vec<&str>| ids.join(",");
    let mut out = HashMap::new();
    let rules: Vec<&str> = decision.violations.iter().map(|v| v.rule.id()).collect();
    if !rules.is_empty() {
        out.insert(ANNOTATION_RULES.to_string(), ids(rules));
    }
    let warnings: Vec<&str> = decision.warnings.iter().map(|w| w.id.id()).collect();
    if !warnings.is_empty() {
        out.insert(ANNOTATION_WARNINGS.to_string(), ids(warnings));
    }
    if decision.skipped.is_some() {
        out.insert(ANNOTATION_SKIPPED.to_string(), "true".to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_from_a_policy_give_that_policy_back() {
        let policy = Policy {
            default_volume_restore_policy: "Serial".into(),
            edge_warning: TimeDelta::seconds(5),
            base_edge: BaseEdge::Inclusive,
        };
        let settings = serde_json::to_value(Settings::from_policy(&policy)).unwrap();
        assert_eq!(
            settings,
            serde_json::json!({"defaultVolumeRestorePolicy": "Serial", "edgeWarningSeconds": 5, "baseEdge": "inclusive"})
        );
        assert_eq!(Settings::parse(&settings).unwrap().policy().unwrap(), policy);
        assert_eq!(Settings::parse(&Value::Null).unwrap().policy().unwrap(), Policy::default());
    }

    #[test]
    fn bad_settings_say_what_is_wrong() {
        let err = |v: Value| Settings::parse(&v).and_then(|s| s.policy()).unwrap_err();
        assert!(err(serde_json::json!({"baseEdge": "sideways"})).contains("settings.baseEdge"));
        assert!(err(serde_json::json!({"edgeWarningSeconds": -1})).contains("out of range"));
        assert!(err(serde_json::json!({"defaultVolumeRestorePolicy": "Later"})).contains("Serial, Parallel"));
        assert!(err(serde_json::json!({"edgeWarning": 5})).contains("unknown field"));
    }
}
