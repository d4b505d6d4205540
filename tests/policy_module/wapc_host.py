#!/usr/bin/env python3
"""A second, independent Kubewarden-style host for pitrguard-policy.wasm.

Runs the module in the `wasmtime` binding from PyPI (not the Rust crates that
pitrguard would use), speaks the waPC host protocol itself, and answers the
module's context-aware host calls (kubewarden/kubernetes/get_resource and
list_resources_by_namespace) from an inventory of Kubernetes objects, the way
Kubewarden's policy server answers them from the API server.

Usage: wapc_host.py PLAN.json  (PLAN: {"module", "inventory": [obj], "calls":
[{"op", "payload"}], "failing": [host operations that fail as if the API server
were unreachable]}). Prints one JSON array: per call {"ok", "response",
"error", "host_calls", "micros"}. Driven by tests/policy_module.rs.
"""

import importlib.metadata
import json
import sys
import time

from wasmtime import Engine, FuncType, Linker, Module, Store, ValType, WasiConfig

I32 = ValType.i32()


class Inventory:
    """Objects by (kind, namespace, name); selectors as the API server applies them."""

    def __init__(self, objects, failing=()):
        self.objects = objects
        # Operations that fail as an unreachable API server would (not a 404).
        self.failing = set(failing)

    def _matches(self, obj, api_version, kind, namespace):
        meta = obj.get("metadata", {})
        return (
            obj.get("kind") == kind
            and obj.get("apiVersion", "").split("/")[0] == api_version.split("/")[0]
            and (namespace is None or meta.get("namespace", "default") == namespace)
        )

    def get(self, req):
        for obj in self.objects:
            if self._matches(obj, req["api_version"], req["kind"], req.get("namespace")) and obj[
                "metadata"
            ].get("name") == req["name"]:
                return obj
        # What Kubewarden's policy server (policy-evaluator's get_opt) reports for an object
        # that does not exist; Rust's Debug of Option<&str> for the namespace.
        ns = req.get("namespace")
        ns = f'Some("{ns}")' if ns is not None else "None"
        raise HostError(f"Cannot find {req['api_version']}/{req['kind']} named '{req['name']}' inside of namespace '{ns}'")

    def list(self, req):
        selector = parse_selector(req.get("label_selector"))
        if req.get("field_selector"):
            raise HostError("this test host does not implement field selectors")
        items = [
            o
            for o in self.objects
            if self._matches(o, req["api_version"], req["kind"], req["namespace"])
            and all(test(o.get("metadata", {}).get("labels") or {}) for test in selector)
        ]
        return {
            "apiVersion": req["api_version"],
            "kind": req["kind"] + "List",
            "metadata": {"resourceVersion": "1"},
            "items": items,
        }


def parse_selector(text):
    """Equality-based label selectors: k=v, k==v, k!=v, k, !k (comma separated)."""
    tests = []
    for term in filter(None, (t.strip() for t in (text or "").split(","))):
        if "!=" in term:
            k, v = term.split("!=", 1)
            tests.append(lambda l, k=k, v=v: l.get(k) != v)
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            tests.append(lambda l, k=k, v=v: l.get(k) == v)
        elif term.startswith("!"):
            tests.append(lambda l, k=term[1:]: k not in l)
        else:
            tests.append(lambda l, k=term: k in l)
    return tests


class HostError(Exception):
    pass


class WapcHost:
    def __init__(self, module_path, inventory):
        self.inventory = inventory
        self.engine = Engine()
        started = time.perf_counter()
        self.module = Module.from_file(self.engine, module_path)
        self.compile_micros = int((time.perf_counter() - started) * 1e6)
        self.store = Store(self.engine)
        self.store.set_wasi(WasiConfig())
        linker = Linker(self.engine)
        linker.define_wasi()
        self._define(linker)
        self.instance = linker.instantiate(self.store, self.module)
        exports = self.instance.exports(self.store)
        self.memory = exports["memory"]
        self.guest_call = exports["__guest_call"]
        for init in ("_initialize", "_start", "wapc_init"):
            if init in exports:
                exports[init](self.store)
        # Per-call state of the waPC protocol.
        self.op = b""
        self.payload = b""
        self.response = None
        self.error = None
        self.host_response = b""
        self.host_error = b""
        self.host_calls = []
        self.logs = []

    def _define(self, linker):
        def fn(name, params, results, func):
            linker.define_func("wapc", name, FuncType([I32] * params, [I32] * results), func, access_caller=True)

        fn("__guest_request", 2, 0, self._guest_request)
        fn("__guest_response", 2, 0, lambda c, p, n: setattr(self, "response", self._read(c, p, n)))
        fn("__guest_error", 2, 0, lambda c, p, n: setattr(self, "error", self._read(c, p, n)))
        fn("__host_call", 8, 1, self._host_call)
        fn("__host_response_len", 0, 1, lambda c: len(self.host_response))
        fn("__host_response", 1, 0, lambda c, p: self._write(c, p, self.host_response))
        fn("__host_error_len", 0, 1, lambda c: len(self.host_error))
        fn("__host_error", 1, 0, lambda c, p: self._write(c, p, self.host_error))
        fn("__console_log", 2, 0, lambda c, p, n: self.logs.append(self._read(c, p, n).decode()))

    def _read(self, caller, ptr, length):
        return bytes(self.memory.read(caller, ptr, ptr + length))

    def _write(self, caller, ptr, data):
        self.memory.write(caller, data, ptr)

    def _guest_request(self, caller, op_ptr, ptr):
        self._write(caller, op_ptr, self.op)
        self._write(caller, ptr, self.payload)

    def _host_call(self, caller, bd, bd_len, ns, ns_len, op, op_len, ptr, length):
        binding = self._read(caller, bd, bd_len).decode()
        namespace = self._read(caller, ns, ns_len).decode()
        operation = self._read(caller, op, op_len).decode()
        request = json.loads(self._read(caller, ptr, length) or b"null")
        self.host_calls.append({"binding": binding, "namespace": namespace, "operation": operation, "request": request})
        self.host_response, self.host_error = b"", b""
        try:
            if (binding, namespace) != ("kubewarden", "kubernetes"):
                raise HostError(f"unknown capability {binding}/{namespace}/{operation}")
            if operation in self.inventory.failing:
                raise HostError("HyperError: error trying to connect: tcp connect error: Connection refused (os error 111)")
            if operation == "get_resource":
                answer = self.inventory.get(request)
            elif operation == "list_resources_by_namespace":
                answer = self.inventory.list(request)
            else:
                raise HostError(f"unknown operation kubernetes/{operation}")
            self.host_response = json.dumps(answer).encode()
            return 1
        except HostError as e:
            self.host_error = str(e).encode()
            return 0

    def call(self, op, payload):
        self.op, self.payload = op.encode(), json.dumps(payload).encode()
        self.response, self.error, self.host_calls = None, None, []
        started = time.perf_counter()
        ok = self.guest_call(self.store, len(self.op), len(self.payload))
        micros = int((time.perf_counter() - started) * 1e6)
        response = json.loads(self.response) if ok == 1 and self.response is not None else None
        error = None if ok == 1 else (self.error or b"guest call failed").decode()
        return {"ok": ok == 1, "response": response, "error": error, "host_calls": self.host_calls, "micros": micros}


def main():
    with open(sys.argv[1]) as f:
        plan = json.load(f)
    host = WapcHost(plan["module"], Inventory(plan["inventory"], plan.get("failing", [])))
    results = [host.call(c["op"], c["payload"]) for c in plan["calls"]]
    json.dump(
        {
            "wasmtime": importlib.metadata.version("wasmtime"),
            "compile_micros": host.compile_micros,
            "logs": host.logs,
            "results": results,
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
