//! The reconciler's `kubeblocks.io/restore-from-backup` annotation (`reconcile::cluster`:
//! `restore_from_backup`, Go's `json.Marshal` in `go_marshal`/`go_marshal_structs`) and the
//! Cluster built around it (`build_cluster`). The bytes as JSON `[opsRequest, backup]`; any
//! other JSON value is still written with `go_marshal`.
//!
//! - `go_marshal` writes JSON that reads back as the value, in Go's form: no raw `<`, `>`, `&`,
//!   control characters, U+2028 or U+2029, and writing what it reads back gives the same bytes.
//! - The annotation is an error exactly when the Backup names no component; otherwise it is
//!   `{"<component>": {...}}` with only string values, the keys KubeBlocks writes (the four it
//!   always writes), in Go's form; `name` and `namespace` are the Backup's and the source
//!   namespace; `restoreEnv` and `restoreParameters` read back as the OpsRequest's `env` and
//!   `parameters`; `restoreTime` is the normal form of a parsed time for a Continuous backup
//!   and the raw text otherwise.
//! - `build_cluster`: a Cluster named `spec.clusterName`, in the OpsRequest's namespace,
//!   without status, whose annotation is the one above and lists one pending component.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pitrguard::core::time::PointInTime;
use pitrguard::reconcile::cluster::{
    ANNOTATION_RESTORE_FROM_BACKUP, BuildError, build_cluster, component_of, components_pending, go_marshal,
    go_marshal_structs, ops_request_annotation, restore_from_backup,
};
use serde_json::{Value, json};

const KEYS: [&str; 8] = [
    "connectionPassword",
    "doReadyRestoreAfterClusterRunning",
    "name",
    "namespace",
    "restoreEnv",
    "restoreParameters",
    "restoreTime",
    "volumeRestorePolicy",
];

fn go_form(text: &str) {
    assert!(
        !text.chars().any(|c| matches!(c, '<' | '>' | '&' | '\u{0}'..='\u{1f}' | '\u{2028}' | '\u{2029}')),
        "not escaped as Go escapes: {text:?}"
    );
}

/// `text` is Go's form of a JSON value equal to `value`.
fn marshals(text: &str, value: &Value, structs: bool) {
    go_form(text);
    let back: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{text:?} is not JSON: {e}"));
    assert!(same(&back, value), "{text:?} reads back as {back} instead of {value}");
    // (Written again from a float read back off by one ulp, the text differs in that digit too.)
    if &back == value {
        let again = if structs { go_marshal_structs(&back) } else { go_marshal(&back) };
        assert_eq!(again, text, "written again differently");
    }
}

/// Equal, but for the last bit of a float: serde_json's parser (without its `float_roundtrip`
/// feature) may read the shortest form of an f64 one unit in the last place off (found by this
/// target: 8.888888888888891e+109 is written "8.88888888888889e+109" and read back 1 ulp away).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            x == y || (x - y).abs() <= x.abs().max(y.abs()) * 4.0 * f64::EPSILON
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = serde_json::from_slice::<Value>(data) else { return };
    marshals(&go_marshal(&input), &input, false);
    marshals(&go_marshal_structs(&input), &input, true);
    let Some([ops, backup]) = input.as_array().and_then(|a| <&[Value; 2]>::try_from(a.as_slice()).ok()) else {
        return;
    };
    if let Some(name) = str_at(ops, "/metadata/name") {
        let a: Value = serde_json::from_str(&ops_request_annotation(name)).unwrap();
        assert_eq!(a, json!([{"name": name, "type": "Restore"}]));
    }

    let annotation = restore_from_backup(ops, backup);
    let Some(component) = component_of(backup) else {
        assert!(matches!(annotation, Err(BuildError::NoComponent(_))), "{annotation:?}");
        return;
    };
    let text = annotation.unwrap_or_else(|e| panic!("a Backup of component {component:?}: {e}"));
    let value: Value = serde_json::from_str(&text).expect("the annotation is JSON");
    marshals(&text, &value, false);
    let outer = value.as_object().expect("an object");
    assert_eq!(outer.keys().collect::<Vec<_>>(), [&component], "{text}");
    let inner = outer[&component].as_object().expect("an object of the component");
    assert!(inner.values().all(Value::is_string), "{text}");
    assert!(inner.keys().all(|k| KEYS.contains(&k.as_str())), "{text}");
    let field = |k: &str| inner.get(k).and_then(Value::as_str);
    assert!(matches!(field("doReadyRestoreAfterClusterRunning"), Some("true" | "false")), "{text}");
    assert_eq!(field("name"), Some(str_at(backup, "/metadata/name").unwrap_or_default()));
    let restore = ops.pointer("/spec/restore").cloned().unwrap_or(Value::Null);
    let source_ns = str_at(&restore, "/backupNamespace").filter(|n| !n.is_empty());
    assert_eq!(field("namespace"), Some(source_ns.or(str_at(ops, "/metadata/namespace")).unwrap_or_default()));
    assert_eq!(field("volumeRestorePolicy"), Some(str_at(&restore, "/volumeRestorePolicy").unwrap_or_default()));
    match (restore.get("env").filter(|e| !e.is_null()), field("restoreEnv")) {
        (Some(env), Some(written)) => marshals(written, env, true),
        (None, None) => {}
        other => panic!("restoreEnv: {other:?}"),
    }
    match (restore.get("parameters").and_then(Value::as_array).filter(|p| !p.is_empty()), field("restoreParameters")) {
        (Some(params), Some(written)) => marshals(written, &Value::Array(params.clone()), true),
        (None, None) => {}
        other => panic!("restoreParameters: {other:?}"),
    }
    let raw_time = str_at(&restore, "/restorePointInTime").filter(|t| !t.is_empty());
    match (raw_time, field("restoreTime")) {
        (None, None) => {}
        (Some(raw), Some(written)) => {
            let continuous =
                str_at(backup, "/metadata/labels/dataprotection.kubeblocks.io~1backup-type") == Some("Continuous");
            match PointInTime::parse(raw).filter(|_| continuous) {
                Some(t) => {
                    assert_eq!(written, t.normal_form());
                    let back = PointInTime::parse(written).expect("the normal form parses");
                    assert_eq!(back.normal_form(), written);
                }
                None => assert_eq!(written, raw),
            }
        }
        other => panic!("restoreTime: {other:?}"),
    }

    let Ok(cluster) = build_cluster(ops, backup) else { return };
    assert_eq!(cluster["kind"], "Cluster");
    assert!(cluster.get("status").is_none());
    assert_eq!(str_at(&cluster, "/metadata/name"), str_at(ops, "/spec/clusterName"));
    assert_eq!(str_at(&cluster, "/metadata/namespace"), Some(str_at(ops, "/metadata/namespace").unwrap_or_default()));
    let key = ANNOTATION_RESTORE_FROM_BACKUP.replace('/', "~1");
    assert_eq!(str_at(&cluster, &format!("/metadata/annotations/{key}")), Some(text.as_str()));
    assert_eq!(components_pending(&cluster), Some(1));
});
