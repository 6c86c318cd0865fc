"""Prune KubeRay's RayService CRD to the JSON schema the manifest tests validate against.

    python deploy/schemas/prune_crd.py ray.io_rayservices.yaml v1.7.0 \
        > deploy/schemas/rayservice-v1.json

Pod templates and services are left as plain objects (the tests check pod templates against
Kubernetes' own strict PodTemplateSpec schema instead). Every object with listed properties
gets ``additionalProperties: false``: the API server prunes unknown fields and
``kubectl apply --validate=strict`` refuses them, so a misspelt field is an error here too.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import yaml

OPAQUE = {"template", "headService", "serveService", "autoscalerOptions", "historyServerOptions",
          "networkPolicy", "tlsOptions", "authOptions"}


def _prune(node: Any, key: str = "") -> Any:
    if not isinstance(node, dict):
        return node
    if key in OPAQUE:
        return {"type": "object"}
    out: dict[str, Any] = {}
    for k, v in node.items():
        if k.startswith("x-kubernetes-") and k != "x-kubernetes-int-or-string":
            continue
        if k == "properties":
            out[k] = {name: _prune(sub, name) for name, sub in v.items()}
        elif k == "items":
            out[k] = _prune(v, key)
        else:
            out[k] = _prune(v) if isinstance(v, dict) else v
    if "properties" in out and "additionalProperties" not in out \
            and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    if node.get("x-kubernetes-int-or-string"):
        out.pop("x-kubernetes-int-or-string", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    return out


def main(path: str, source: str) -> None:
    crd = yaml.safe_load(open(path))  # noqa: SIM115
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    schema = version["schema"]["openAPIV3Schema"]
    schema["properties"].pop("status", None)
    pruned = _prune(schema)
    pruned["$comment"] = (f"KubeRay {source} RayService CRD (ray.io/v1), pruned by "
                          "deploy/schemas/prune_crd.py")
    json.dump(pruned, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
