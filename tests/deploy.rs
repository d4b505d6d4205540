//! The shipped manifests against a real kube-apiserver: accepted as written,
//! least-privilege RBAC that is enough to run pitrguard, and webhook
//! configurations identical to what the end-to-end tests exercise.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::cluster::*;
use serde_json::Value;

const SA: &str = "system:serviceaccount:pitrguard-system:pitrguard";

/// `pitrguard serve` with a token of the shipped ServiceAccount, bound by the
/// shipped RBAC, registered with the shipped webhook configurations. One per
/// test binary, as there is one webhook registration.
fn running_as_service_account() -> &'static Webhook {
    static HOOK: std::sync::OnceLock<Webhook> = std::sync::OnceLock::new();
    HOOK.get_or_init(|| {
        let cp = control_plane();
        pitrguard_namespace(cp);
        let token = cp.kubectl_ok(&["create", "token", "pitrguard", "-n", "pitrguard-system", "--duration=1h"], None);
        let dir = cp.scratch("sa-");
        let kubeconfig = write_temp(
            &dir,
            "kubeconfig",
            &format!(
                "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: \"{}\", certificate-authority: \"{}\"}}}}]\n\
                 users: [{{name: pitrguard, user: {{token: \"{}\"}}}}]\ncontexts: [{{name: c, context: {{cluster: c, user: pitrguard}}}}]\ncurrent-context: c\n",
                cp.env["TESTCP_API_URL"], cp.env["TESTCP_CA"], token.trim()
            ),
        );
        // Not admin: with this identity, reading Secrets is forbidden.
        let out = Command::new(cp.kubectl_path()).args(["get", "secrets", "-A", "--kubeconfig", kubeconfig.to_str().unwrap()]).output().unwrap();
        assert!(String::from_utf8_lossy(&out.stderr).contains("Forbidden"), "{}", String::from_utf8_lossy(&out.stderr));
        let hook = start_webhook(cp, &[], &[("KUBECONFIG", kubeconfig.to_str().unwrap())]);
        register_webhooks(cp, &hook);
        hook
    })
}

/// A kubeconfig with a token of the shipped ServiceAccount.
fn service_account_kubeconfig(cp: &ControlPlane) -> std::path::PathBuf {
    let token = cp.kubectl_ok(&["create", "token", "pitrguard", "-n", "pitrguard-system", "--duration=1h"], None);
    let dir = cp.scratch("sa-");
    write_temp(
        &dir,
        "kubeconfig",
        &format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: \"{}\", certificate-authority: \"{}\"}}}}]\n\
             users: [{{name: pitrguard, user: {{token: \"{}\"}}}}]\ncontexts: [{{name: c, context: {{cluster: c, user: pitrguard}}}}]\ncurrent-context: c\n",
            cp.env["TESTCP_API_URL"],
            cp.env["TESTCP_CA"],
            token.trim()
        ),
    )
}

fn dry_run_kustomize(cp: &ControlPlane, dir: &Path) {
    let out = cp.kubectl(&["apply", "--dry-run=server", "-k", dir.to_str().unwrap()], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{} rejected: {stderr}", dir.display());
    let stdout = String::from_utf8_lossy(&out.stdout);
    for object in [
        "deployment.apps/pitrguard",
        "validatingwebhookconfiguration.admissionregistration.k8s.io/pitrguard",
        "mutatingwebhookconfiguration.admissionregistration.k8s.io/pitrguard",
        "clusterrole.rbac.authorization.k8s.io/pitrguard",
        "poddisruptionbudget.policy/pitrguard",
        "service/pitrguard",
    ] {
        assert!(stdout.contains(object), "{} lacks {object}: {stdout}", dir.display());
    }
}

/// The namespace (and the RBAC in it) must exist for a server-side dry run of the objects in it.
/// Once per test binary: tests run in parallel, and two concurrent applies of one new object race.
fn pitrguard_namespace(cp: &ControlPlane) {
    static ONCE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        cp.kubectl_ok(&["apply", "-f", repo().join("manifests/base/namespace.yaml").to_str().unwrap()], None);
        cp.kubectl_ok(&["apply", "-f", repo().join("manifests/base/rbac.yaml").to_str().unwrap()], None);
    });
}

#[test]
fn every_manifest_is_accepted_by_the_api_server() {
    let cp = control_plane();
    pitrguard_namespace(cp);
    dry_run_kustomize(cp, &repo().join("manifests/base"));
    let out = cp.kubectl_ok(
        &["apply", "--dry-run=server", "-k", repo().join("manifests/overlays/cert-manager").to_str().unwrap()],
        None,
    );
    assert!(out.contains("certificate.cert-manager.io/pitrguard-serving created (server dry run)"), "{out}");
    dry_run_kustomize(cp, &repo().join("manifests/overlays/cert-manager"));
    for mode in ["perform", "observe"] {
        let overlay = repo().join(format!("manifests/overlays/reconcile-{mode}"));
        dry_run_kustomize(cp, &overlay);
        let rendered = cp.kubectl_ok(&["kustomize", overlay.to_str().unwrap()], None);
        assert!(rendered.contains(&format!("name: PITRGUARD_RECONCILE\n          value: {mode}")), "{rendered}");
    }

    // The no-cert-manager path, exactly as the README says: certs, then apply -k.
    let copy = tempfile::tempdir().unwrap();
    let status = Command::new("cp")
        .args(["-r", repo().join("manifests").to_str().unwrap(), copy.path().to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    let overlay = copy.path().join("manifests/overlays/self-signed");
    let status = Command::new(env!("CARGO_BIN_EXE_pitrguard"))
        .args(["certs", "--out", overlay.join("certs").to_str().unwrap(), "--hosts", "pitrguard.pitrguard-system.svc"])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    dry_run_kustomize(cp, &overlay);
    let rendered = cp.kubectl_ok(&["kustomize", overlay.to_str().unwrap()], None);
    let ca = std::fs::read_to_string(overlay.join("certs/ca-bundle.b64")).unwrap();
    let bundles: Vec<String> = serde_yaml::Deserializer::from_str(&rendered)
        .filter_map(|d| serde::Deserialize::deserialize(d).ok())
        .filter_map(|v: Value| v.get("webhooks").cloned())
        .flat_map(|w| w.as_array().cloned().unwrap_or_default())
        .map(|w| w["clientConfig"]["caBundle"].as_str().unwrap_or_default().split_whitespace().collect())
        .collect();
    assert_eq!(bundles.len(), 2);
    for b in bundles {
        assert_eq!(b, ca.trim(), "the caBundle is the CA that signed the serving certificate");
    }
}

#[test]
fn the_webhook_configurations_that_ship_are_the_ones_registered_in_tests() {
    let cp = control_plane();
    running_as_service_account();
    let shipped = std::fs::read_to_string(repo().join("manifests/base/webhooks.yaml")).unwrap();
    for doc in serde_yaml::Deserializer::from_str(&shipped) {
        let want: Value = serde::Deserialize::deserialize(doc).unwrap();
        let kind = want["kind"].as_str().unwrap().to_lowercase();
        let got: Value =
            serde_json::from_str(&cp.kubectl_ok(&["get", &kind, "pitrguard", "-o", "json"], None)).unwrap();
        assert_eq!(got["metadata"]["labels"], want["metadata"]["labels"]);
        let (want, got) = (want["webhooks"].as_array().unwrap(), got["webhooks"].as_array().unwrap());
        assert_eq!(want.len(), got.len());
        for (w, g) in want.iter().zip(got) {
            for (key, value) in w.as_object().unwrap() {
                if key != "clientConfig" {
                    assert_eq!(&g[key], value, "{kind} {}: {key} differs from manifests/base/webhooks.yaml", w["name"]);
                }
            }
            assert!(g["clientConfig"]["url"].as_str().unwrap().starts_with("https://127.0.0.1:"));
        }
    }
}

#[test]
fn the_service_account_can_do_what_pitrguard_needs_and_nothing_else() {
    let cp = control_plane();
    pitrguard_namespace(cp);
    let can = |verb: &str, resource: &str, ns: Option<&str>| {
        let mut args = vec!["auth", "can-i", verb, resource, "--as", SA];
        match ns {
            Some(ns) => args.extend(["-n", ns]),
            None => args.push("--all-namespaces"),
        }
        String::from_utf8_lossy(&cp.kubectl(&args, None).stdout).trim() == "yes"
    };
    for (verb, resource) in [
        ("list", "backups.dataprotection.kubeblocks.io"),
        ("watch", "backups.dataprotection.kubeblocks.io"),
        ("get", "actionsets.dataprotection.kubeblocks.io"),
        ("watch", "clusters.apps.kubeblocks.io"),
    ] {
        assert!(can(verb, resource, None), "pitrguard needs to {verb} {resource}");
    }
    // The reconciler: Events, Restores read-only, OpsRequests and their status patched, Clusters created.
    for (verb, resource) in [
        ("create", "events.events.k8s.io"),
        ("patch", "events.events.k8s.io"),
        ("get", "restores.dataprotection.kubeblocks.io"),
        ("list", "restores.dataprotection.kubeblocks.io"),
        ("watch", "restores.dataprotection.kubeblocks.io"),
        ("patch", "opsrequests.operations.kubeblocks.io"),
        ("patch", "opsrequests.apps.kubeblocks.io"),
        ("create", "clusters.apps.kubeblocks.io"),
        ("get", "clusters.apps.kubeblocks.io"),
    ] {
        assert!(can(verb, resource, None), "the reconciler needs to {verb} {resource}");
    }
    let status = |verb: &str| {
        let args =
            ["auth", "can-i", verb, "opsrequests.operations.kubeblocks.io", "--subresource=status", "--as", SA, "-A"];
        String::from_utf8_lossy(&cp.kubectl(&args, None).stdout).trim() == "yes"
    };
    assert!(status("patch"), "the reconciler writes OpsRequest status");
    assert!(can("update", "leases.coordination.k8s.io", Some("pitrguard-system")));
    for (verb, resource, ns) in [
        ("get", "secrets", None),
        ("list", "secrets", Some("pitrguard-system")),
        ("delete", "backups.dataprotection.kubeblocks.io", None),
        ("patch", "backups.dataprotection.kubeblocks.io", None),
        ("create", "backups.dataprotection.kubeblocks.io", None),
        ("delete", "clusters.apps.kubeblocks.io", None),
        ("update", "leases.coordination.k8s.io", Some("default")),
        ("create", "pods", None),
        ("create", "restores.dataprotection.kubeblocks.io", None),
        ("patch", "restores.dataprotection.kubeblocks.io", None),
        ("delete", "restores.dataprotection.kubeblocks.io", None),
        ("patch", "clusters.apps.kubeblocks.io", None),
        ("update", "clusters.apps.kubeblocks.io", None),
        ("delete", "opsrequests.operations.kubeblocks.io", None),
        ("create", "opsrequests.operations.kubeblocks.io", None),
        ("create", "events", None),
        ("delete", "events.events.k8s.io", None),
    ] {
        assert!(!can(verb, resource, ns), "pitrguard must not be able to {verb} {resource} in {ns:?}");
    }
}

#[test]
fn pitrguard_runs_with_the_shipped_service_account_and_its_verdicts_hold() {
    let cp = control_plane();
    running_as_service_account();
    let ns = namespace(cp, "rbac");
    backup(cp, &ns, "pg-wal", "Continuous", "Running", ("2024-05-07T10:07:45Z", "2024-05-07T10:47:14Z"));
    backup(cp, &ns, "pg-full", "Full", "Completed", ("2024-05-07T10:18:40Z", "2024-05-07T10:20:03Z"));
    let (ok, _, stderr) =
        apply(cp, &ns, &ops(OPERATIONS, "late", "pg-late", "pg-wal", Some("2024-05-07T11:00:00Z")), false);
    assert!(!ok && stderr.contains("12m46s after the end"), "{stderr}");
    let (ok, _, stderr) =
        apply(cp, &ns, &ops(OPERATIONS, "fine", "pg-fine", "pg-wal", Some("2024-05-07T10:30:00Z")), false);
    assert!(ok, "{stderr}");
    let o = stored(cp, &ns, "opsrequests.operations.kubeblocks.io", "fine").unwrap();
    assert_eq!(o["metadata"]["annotations"]["pitrguard.io/base-backup"], "pg-full");
}

#[test]
fn the_reconciler_performs_a_restore_with_the_shipped_service_account() {
    let cp = control_plane();
    running_as_service_account();
    let kubeconfig = service_account_kubeconfig(cp);
    let ns = namespace(cp, "rbac-rec");
    let snapshot = r#"{"apiVersion":"apps.kubeblocks.io/v1","kind":"Cluster","metadata":{"name":"pg"},"spec":{"terminationPolicy":"Delete"}}"#;
    for (name, ty, phase, range) in [
        ("pg-wal", "Continuous", "Running", ("2024-05-07T10:07:45Z", "2024-05-07T10:47:14Z")),
        ("pg-full", "Full", "Completed", ("2024-05-07T10:18:40Z", "2024-05-07T10:20:03Z")),
    ] {
        let manifest = serde_json::json!({"apiVersion": "dataprotection.kubeblocks.io/v1alpha1", "kind": "Backup",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/instance": "pg",
                "apps.kubeblocks.io/component-name": "postgresql", "dataprotection.kubeblocks.io/backup-type": ty,
                "dataprotection.kubeblocks.io/cluster-uid": "6f1c6e1d-0000-4000-8000-000000000001"},
                "annotations": {"kubeblocks.io/cluster-snapshot": snapshot}},
            "spec": {"backupPolicyName": "p", "backupMethod": "m"}});
        cp.kubectl_ok(&["apply", "-n", &ns, "-f", "-"], Some(&manifest.to_string()));
        set_status(cp, &ns, name, phase, range);
    }
    let admin_port = free_port();
    let log = cp.scratch("sa-reconciler-").join("pitrguard.log");
    let child = Command::new(env!("CARGO_BIN_EXE_pitrguard"))
        .args(["reconcile", "--mode", "perform", "--admin-listen", &format!("127.0.0.1:{admin_port}")])
        .args(["--reconcile-selector", &format!("pitrguard.io/test={ns}"), "--lease-name", &ns])
        .args(["--lease-namespace", "pitrguard-system"])
        .env("KUBECONFIG", &kubeconfig)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    cp.track(&format!("sa-reconciler-{ns}"), child.id());
    let _child = common::process::Stopped(child);
    wait_for(Duration::from_secs(60), "the reconciler to lead", || {
        http_get(admin_port, "/metrics").1.lines().any(|l| l == "pitrguard_reconcile_leader 1")
    });
    let manifest = ops(OPERATIONS, "sa", "pg-sa", "pg-wal", Some("2024-05-07T10:30:00Z"))
        .replace("  name: sa\n", &format!("  name: sa\n  labels:\n    pitrguard.io/test: {ns}\n"));
    let (ok, _, stderr) = apply(cp, &ns, &manifest, false);
    assert!(ok, "{stderr}");
    let phase = || {
        stored(cp, &ns, "opsrequests.operations.kubeblocks.io", "sa")
            .and_then(|o| o.pointer("/status/phase").and_then(Value::as_str).map(String::from))
            .unwrap_or_default()
    };
    wait_for(Duration::from_secs(60), "Running", || {
        phase() == "Running" || std::fs::read_to_string(&log).unwrap_or_default().contains("Forbidden")
    });
    assert_eq!(phase(), "Running", "{}", std::fs::read_to_string(&log).unwrap_or_default());
    cp.kubectl_ok(
        &[
            "patch",
            "clusters.apps.kubeblocks.io",
            "pg-sa",
            "-n",
            &ns,
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Running"}}"#,
        ],
        None,
    );
    wait_for(Duration::from_secs(60), "Succeed", || phase() == "Succeed");
    let events = cp.kubectl_ok(&["get", "events.events.k8s.io", "-n", &ns, "-o", "json"], None);
    assert!(events.contains("OpsRequestProcessedSuccessfully"), "the Events were published: {events}");
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!logged.contains("Forbidden") && !logged.contains("forbidden"), "{logged}");
}
