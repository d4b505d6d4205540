#!/usr/bin/env python3
"""Writes the committed seed corpora of the fuzz targets (fuzz/seeds/<target>/) from the
examples and the test fixtures. Run by hand when they change: python3 fuzz/seeds/make_seeds.py
(needs PyYAML). Regression seeds (files named regression-*) are kept; every other file is
written anew."""

import copy
import json
import os
import pathlib

import yaml

root = pathlib.Path(__file__).resolve().parents[2]
seeds = root / "fuzz" / "seeds"
examples = root / "examples"


def documents(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


restores = []
for p in sorted((examples / "postgresql" / "restores").iterdir()):
    restores += [(p.stem, d) for d in documents(p)]
backups = documents(examples / "postgresql" / "backups.yaml")


def review(operation, obj, old):
    ref = obj or old
    group, _, version = ref["apiVersion"].partition("/")
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": group, "version": version, "kind": "OpsRequest"},
            "resource": {"group": group, "version": version, "resource": "opsrequests"},
            "name": ref["metadata"]["name"],
            "namespace": "demo",
            "operation": operation,
            "userInfo": {"username": "admin"},
            "object": obj,
            "oldObject": old,
            "dryRun": False,
        },
    }


def write(target, name, data):
    d = seeds / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def compact(v):
    return json.dumps(v, separators=(",", ":"))


for target in ["admission", "loader", "time", "patch", "restore_annotation"]:
    d = seeds / target
    if d.is_dir():
        for f in d.iterdir():
            if not f.name.startswith("regression-"):
                f.unlink()

# admission (and policy_module, which reads the same directory): the fixtures, and every
# example OpsRequest as CREATE, UPDATE with a changed restore, DELETE.
for f in sorted((examples / "admission").iterdir()):
    write("admission", f.name, f.read_bytes())
for stem, obj in restores:
    write("admission", f"{stem}-create.json", compact(review("CREATE", obj, None)))
    old = copy.deepcopy(obj)
    old["spec"]["clusterName"] = "before"
    write("admission", f"{stem}-update.json", compact(review("UPDATE", obj, old)))
write("admission", "delete.json", compact(review("DELETE", None, restores[0][1])))
sub = review("UPDATE", restores[0][1], restores[0][1])
sub["request"]["subResource"] = "status"
write("admission", "status-subresource.json", compact(sub))

# loader: the example files, and the same objects as a JSON List (items before kind, as
# kubectl writes it), a kubectl-style YAML List, and multi-document YAML.
for f in sorted((examples / "postgresql").glob("*.yaml")):
    write("loader", f.name, f.read_bytes())
items = backups[:3] + [restores[0][1]]
write("loader", "list.json", json.dumps({"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}}, indent=4))
write("loader", "list.yaml", yaml.safe_dump({"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}}, sort_keys=True))
write("loader", "restores.yaml", "---\n".join(yaml.safe_dump(o) for _, o in restores[:4]))
write("loader", "empty-list.json", '{"kind": "List", "items": null}')
write("loader", "flow-list.yaml", "kind: List\nitems: [{kind: Backup, metadata: {name: a}}]\n")

# time: restorePointInTime values of the examples and the tests' layouts.
times = {o["spec"].get("restore", {}).get("restorePointInTime") for _, o in restores} - {None}
times |= {
    "2024-05-07T18:07:45+08:00",
    "2024-05-07T10:07:45.999Z",
    "2024-05-07T10:07:45.000000001Z",
    "May 07,2024 05:07:45 UTC-0500",
    "Jan 01,2025 00:30:00 UTC+0100",
    "0000-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999Z",
    "2024-02-29T10:07:45.5Z",
    "2024-05-07T10:30:60Z",
}
for i, t in enumerate(sorted(times)):
    write("time", f"time-{i:02}", t)

# patch: the example OpsRequests as the JSON an AdmissionReview carries.
for stem, obj in restores:
    write("patch", f"{stem}.json", compact(obj))

# restore_annotation: [OpsRequest, Backup] for every example restore with the backup it names.
by_name = {b["metadata"]["name"]: b for b in backups}
for stem, obj in restores:
    name = obj["spec"].get("restore", {}).get("backupName")
    if name in by_name:
        ops = copy.deepcopy(obj)
        ops["metadata"]["uid"] = "u-1"
        write("restore_annotation", f"{stem}.json", compact([ops, by_name[name]]))
print("seeds:", {d.name: len(list(d.iterdir())) for d in sorted(seeds.iterdir()) if d.is_dir()})
