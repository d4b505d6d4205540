#!/usr/bin/env python3
"""Project a KubeBlocks CRD onto the fields pitrguard reads, for kopium.

usage: crd_projection.py CRD.yaml VERSION PATH [PATH...] > projected.yaml

Each PATH is a dotted property path under the version's openAPIV3Schema
(`spec.restore`, `status.timeRange`); a path to an object keeps its whole
subtree. A path prefixed with `?` may be absent (a field that only one
KubeBlocks release has). Any other missing path is an error: that is how the
projection proves it names no field the real CRD lacks.

Three deliberate changes besides dropping fields, all so that any object the
API server could hand to a webhook decodes, and the rules (not serde) say what
is wrong with it: mutating admission sees objects before the API server has
validated them against the schema.
- `enum` lists are removed: an unknown value is named precisely (R12).
- `required` lists are removed: every field is optional, a missing
  `backupName` is R1.
- `x-kubernetes-validations` (CEL) are removed: they describe the server's
  checks, not the shape of the data.
"""
import copy
import sys

import yaml


def strip(schema):
    """Drops enum, required and CEL from a schema node and the schemas below it."""
    if not isinstance(schema, dict):
        return
    for key in ("enum", "required", "x-kubernetes-validations"):
        schema.pop(key, None)
    for child in schema.get("properties", {}).values():
        strip(child)
    for key in ("items", "additionalProperties"):
        strip(schema.get(key))
    for key in ("allOf", "anyOf", "oneOf"):
        for child in schema.get(key, []):
            strip(child)


def keep(schema, parts, out, path, optional):
    props = schema.get("properties", {})
    head, rest = parts[0], parts[1:]
    if head not in props:
        if optional:
            return
        sys.exit(f"crd_projection: {path}: no property {head!r} in the CRD")
    out.setdefault("properties", {})
    if not rest:
        out["properties"][head] = copy.deepcopy(props[head])
        return
    child = out["properties"].setdefault(
        head, {k: v for k, v in props[head].items() if k not in ("properties", "required")}
    )
    keep(props[head], rest, child, path, optional)


def main():
    crd_path, version, paths = sys.argv[1], sys.argv[2], sys.argv[3:]
    with open(crd_path) as f:
        crd = yaml.safe_load(f)
    versions = [v for v in crd["spec"]["versions"] if v["name"] == version]
    if not versions:
        sys.exit(f"crd_projection: {crd_path}: no version {version}")
    ver = versions[0]
    schema = ver["schema"]["openAPIV3Schema"]
    out = {k: v for k, v in schema.items() if k not in ("properties", "required")}
    for p in paths:
        optional = p.startswith("?")
        p = p.lstrip("?")
        keep(schema, p.split("."), out, p, optional)

    strip(out)
    ver = {k: v for k, v in ver.items() if k not in ("schema", "additionalPrinterColumns")}
    ver["schema"] = {"openAPIV3Schema": out}
    crd["spec"]["versions"] = [ver]
    yaml.safe_dump(crd, sys.stdout, sort_keys=True)


if __name__ == "__main__":
    main()
