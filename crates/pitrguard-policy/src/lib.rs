//! pitrguard's rules as a Kubewarden policy module (waPC guest, `wasm32-wasip1`).
//!
//! ```text
//!  host ──validate──► request + settings ──► judge (empty Index) ── skipped? ──► accept
//!                                                 │ a Restore to judge
//!                        host capabilities ◄──────┘
//!                        get_resource: the source Backup S, its ActionSet, the Cluster
//!                        list_resources_by_namespace: S's lineage (label selector)
//!                                                 │
//!                                Index ──► judge ──► accept (+ mutated object, M1–M3)
//!                                                   or reject (message, code 422)
//! ```
//!
//! The answer is the native one: the verdict and message of the validating
//! webhook, every warning (W1–W3: Kubewarden runs one policy for both
//! webhooks), and for an allowed restore the object with the mutating
//! webhook's patch applied. Built by `hack/build-policy.sh`.

#![deny(unsafe_code)]

use k8s_openapi_sdk as k8s;
use kubewarden_policy_sdk::host_capabilities::kubernetes::{
    GetResourceRequest, ListResourcesByNamespaceRequest, get_resource, list_resources_by_namespace,
};
use kubewarden_policy_sdk::request::KubernetesAdmissionRequest;
use kubewarden_policy_sdk::response::ValidationResponse;
use kubewarden_policy_sdk::settings::SettingsValidationResponse;
use kubewarden_policy_sdk::wapc_guest::{self as guest, CallResult};
use pitrguard_core::core::decision::Skip;
use pitrguard_core::core::facts::{ActionSetFacts, BackupFacts};
use pitrguard_core::core::mutate::to_patch;
use pitrguard_core::core::request::decode;
use pitrguard_core::core::{Decision, Index, Operation, Policy, judge};
use pitrguard_core::crd::{actionset::ActionSet, backup::Backup};
use pitrguard_core::module_abi::{Settings, audit_annotations};
use serde::Deserialize;
use serde_json::Value;

/// The waPC entry point: registers the three functions of Kubewarden's policy ABI.
#[allow(unsafe_code)] // `no_mangle` is how a waPC guest exports its init function.
#[unsafe(no_mangle)]
pub extern "C" fn wapc_init() {
    guest::register_function("validate", validate);
    guest::register_function("validate_settings", validate_settings);
    guest::register_function("protocol_version", kubewarden_policy_sdk::protocol_version_guest);
}

// === Settings ===

fn policy_from(raw: &Value) -> Result<Policy, String> {
    Settings::parse(raw)?.policy()
}

/// `validate_settings`: every problem is a refusal with a message, never a trap.
fn validate_settings(payload: &[u8]) -> CallResult {
    let checked = serde_json::from_slice::<Value>(payload)
        .map_err(|e| format!("settings are not JSON: {e}"))
        .and_then(|raw| policy_from(&raw));
    let response = SettingsValidationResponse { valid: checked.is_ok(), message: checked.err() };
    Ok(serde_json::to_vec(&response)?)
}

// === Validation ===

#[derive(Deserialize)]
struct ValidationRequest {
    #[serde(default)]
    settings: Value,
    request: KubernetesAdmissionRequest,
}

fn validate(payload: &[u8]) -> CallResult {
    let req: ValidationRequest = serde_json::from_slice(payload)?;
    let response = match policy_from(&req.settings) {
        Ok(policy) => answer(&req.request, &policy),
        Err(message) => reject(message),
    };
    Ok(serde_json::to_vec(&response)?)
}

/// The HTTP status code a denial carries, as in the native webhook.
const DENIED_CODE: u16 = 422;

/// A refusal that is not a rule's: bad settings, an unreadable request, a host that cannot answer.
fn reject(message: String) -> ValidationResponse {
    ValidationResponse {
        accepted: false,
        message: Some(message),
        code: Some(DENIED_CODE),
        mutated_object: None,
        audit_annotations: None,
        warnings: None,
    }
}

/// The answer for a decision. An allowed restore keeps its one-line summary as the
/// message (what `pitrguard validate` prints); the audit annotations name the
/// broken rules and the warnings by id (`module_abi`).
fn answer_for(decision: &Decision, mutated_object: Option<Value>) -> ValidationResponse {
    let warnings: Vec<String> = decision.warnings.iter().map(|w| w.message.clone()).collect();
    let annotations = audit_annotations(decision);
    ValidationResponse {
        accepted: decision.allowed(),
        message: Some(decision.message()),
        code: (!decision.allowed()).then_some(DENIED_CODE),
        mutated_object,
        audit_annotations: Some(annotations).filter(|a| !a.is_empty()),
        warnings: Some(warnings).filter(|w| !w.is_empty()),
    }
}

fn operation(op: &str) -> Option<Operation> {
    Some(match op {
        "CREATE" => Operation::Create,
        "UPDATE" => Operation::Update,
        "DELETE" => Operation::Delete,
        "CONNECT" => Operation::Connect,
        _ => return None,
    })
}

fn answer(req: &KubernetesAdmissionRequest, policy: &Policy) -> ValidationResponse {
    // Subresource requests (`/status`) do not change the restore (as in admission::decide).
    if !req.sub_resource.is_empty() {
        let skip = Skip::Operation(format!("the {} subresource", req.sub_resource));
        return answer_for(&Decision::skip(skip), None);
    }
    let Some(op) = operation(&req.operation) else {
        return reject(format!("unknown admission operation {:?}", req.operation));
    };
    let object = Some(&req.object).filter(|o| !o.is_null());
    let old = Some(&req.old_object).filter(|o| !o.is_null());
    // Judged once without an inventory: what is not a Restore to judge needs no host call.
    let first = judge(op, object, old, &req.namespace, &Index::new(), policy);
    let decision = match object {
        Some(o) if first.skipped.is_none() => match gather(o, &req.namespace) {
            Ok(index) => judge(op, object, old, &req.namespace, &index, policy),
            Err(message) => return reject(message),
        },
        _ => first,
    };
    respond(object, &decision)
}

fn respond(object: Option<&Value>, decision: &Decision) -> ValidationResponse {
    let mutated = match object {
        Some(o) if decision.allowed() && !decision.mutations.is_empty() => {
            let mut mutated = o.clone();
            if let Err(e) = json_patch::patch(&mut mutated, &to_patch(&decision.mutations)) {
                return reject(format!("pitrguard: its own patch does not apply: {e}"));
            }
            Some(mutated)
        }
        _ => None,
    };
    answer_for(decision, mutated)
}

// === Host capabilities ===

const DATAPROTECTION: &str = "dataprotection.kubeblocks.io/v1alpha1";
/// The Cluster version both KubeBlocks 0.9 and 1.0 serve (as src/inventory/live.rs watches it).
const CLUSTER_API: &str = "apps.kubeblocks.io/v1alpha1";

/// Asks the host for what the rules read about this restore, and indexes it:
/// the source backup S, the backups of S's lineage (base candidates, and the
/// continuous backups R6 names), S's ActionSet, and the target Cluster.
fn gather(object: &Value, namespace: &str) -> Result<Index, String> {
    let mut index = Index::new();
    let Ok(req) = decode(object, namespace) else {
        return Ok(index); // the core reports the schema error itself
    };
    if let Some(cluster) = req.cluster_name.as_deref().filter(|c| !c.is_empty())
        && get(CLUSTER_API, "Cluster", cluster, Some(&req.namespace))?.is_some()
    {
        index.apply_cluster(&req.namespace, cluster);
    }
    let backup_ns = req.backup_namespace();
    let Some(name) = req.restore.as_ref().and_then(|r| r.backup_name.as_deref()).filter(|n| !n.is_empty()) else {
        return Ok(index);
    };
    let Some(raw) = get(DATAPROTECTION, "Backup", name, Some(backup_ns))? else {
        return Ok(index);
    };
    let s = backup_facts(&raw, backup_ns)?;
    if let Some(selector) = s.candidate_match().label_selector() {
        for item in list_backups(backup_ns, &selector)? {
            index.apply_backup(backup_facts(&item, backup_ns)?);
        }
    }
    if let Some(action_set) = &s.action_set
        && let Some(raw) = get(DATAPROTECTION, "ActionSet", action_set, None)?
    {
        let a: ActionSet = serde_json::from_value(raw).map_err(|e| format!("ActionSet {action_set:?}: {e}"))?;
        index.apply_action_set(ActionSetFacts::from_action_set(&a));
    }
    index.apply_backup(s);
    Ok(index)
}

fn backup_facts(raw: &Value, namespace: &str) -> Result<BackupFacts<'static>, String> {
    let b = Backup::deserialize(raw).map_err(|e| format!("Backup in {namespace:?} from the host: {e}"))?;
    Ok(BackupFacts::from_backup(&b, namespace).into_owned())
}

/// One object by name; `None` when the host says it does not exist. Any other
/// host failure is an error: the restore is refused rather than judged blind.
fn get(api_version: &str, kind: &str, name: &str, namespace: Option<&str>) -> Result<Option<Value>, String> {
    let req = GetResourceRequest {
        api_version: api_version.into(),
        kind: kind.into(),
        name: name.into(),
        namespace: namespace.map(Into::into),
        disable_cache: false,
        field_masks: None,
    };
    match get_resource::<Value>(&req) {
        Ok(v) if v.is_null() => Ok(None),
        Ok(v) => Ok(Some(v)),
        Err(e) if is_not_found(&e.to_string()) => Ok(None),
        Err(e) => Err(format!(
            "pitrguard: cannot read {kind} {:?} from the cluster through the policy host: {e}",
            match namespace {
                Some(ns) => format!("{ns}/{name}"),
                None => name.to_string(),
            }
        )),
    }
}

/// How hosts report a missing object. Kubewarden's policy server (policy-evaluator,
/// `get_opt`): "Cannot find apps.kubeblocks.io/v1alpha1/Cluster named 'x' inside of
/// namespace 'Some(\"demo\")'" (found by running the module under kwctl); a host on
/// kube-rs passing the API server's 404 on: "... \"x\" not found: NotFound ...".
fn is_not_found(error: &str) -> bool {
    let e = error.to_ascii_lowercase();
    e.contains("cannot find ") || e.contains("not found") || e.contains("notfound")
}

fn list_backups(namespace: &str, selector: &str) -> Result<Vec<Value>, String> {
    let req = ListResourcesByNamespaceRequest {
        api_version: DATAPROTECTION.into(),
        kind: "Backup".into(),
        namespace: namespace.into(),
        label_selector: Some(selector.into()),
        field_selector: None,
        field_masks: None,
    };
    let list = list_resources_by_namespace::<RawBackup>(&req).map_err(|e| {
        format!("pitrguard: cannot list Backups in {namespace:?} ({selector}) through the policy host: {e}")
    })?;
    Ok(list.items.into_iter().map(|b| b.0).collect())
}

/// A Backup as the host sends it; the core's own type decodes it afterwards.
/// (The SDK lists through its k8s-openapi version, so the list type is named here.)
#[derive(Clone, Deserialize)]
#[serde(transparent)]
struct RawBackup(Value);

impl k8s::Resource for RawBackup {
    const API_VERSION: &'static str = DATAPROTECTION;
    const GROUP: &'static str = "dataprotection.kubeblocks.io";
    const KIND: &'static str = "Backup";
    const VERSION: &'static str = "v1alpha1";
    const URL_PATH_SEGMENT: &'static str = "backups";
    type Scope = k8s::NamespaceResourceScope;
}

impl k8s::ListableResource for RawBackup {
    const LIST_KIND: &'static str = "BackupList";
}
