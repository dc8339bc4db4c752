"""Write the JSON schema of a KEDA custom resource from KEDA's CRD file.

    python tests/unit/deploy_schemas/derive_keda.py keda.sh_scaledobjects.yaml > \
        tests/unit/deploy_schemas/keda-2.20.2-scaledobject.json

The CRD files are KEDA's config/crd/bases/keda.sh_*.yaml at the release tag. What is
kept: the served version's openAPIV3Schema without `status` and descriptions. What is
added, so that the check is as strict as the API server's strict field validation
(`kubectl apply --validate=strict`): `additionalProperties: false` on every object that
lists its properties and does not preserve unknown fields, apiVersion and kind as
constants, and `metadata` limited to what Kiln's manifests set.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

METADATA = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string"},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    """One schema node; the keys of `properties` are field names, not keywords."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "description":
            continue
        if key == "properties":
            out[key] = {name: strict(sub) for name, sub in value.items()}
        elif key in {"items", "additionalProperties"} and isinstance(value, dict):
            out[key] = strict(value)
        elif key in {"allOf", "anyOf", "oneOf"}:
            out[key] = [strict(sub) for sub in value]
        else:
            out[key] = value
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def derive(crd: dict[str, Any], source: str) -> dict[str, Any]:
    (version,) = [v for v in crd["spec"]["versions"] if v.get("served") and v.get("storage")]
    schema = dict(version["schema"]["openAPIV3Schema"])
    properties = dict(schema["properties"])
    properties.pop("status", None)
    group = crd["spec"]["group"]
    properties["apiVersion"] = {"const": f"{group}/{version['name']}"}
    properties["kind"] = {"const": crd["spec"]["names"]["kind"]}
    properties["metadata"] = METADATA
    schema["properties"] = properties
    schema["required"] = sorted(
        {*schema.get("required", []), "apiVersion", "kind", "metadata", "spec"}
    )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": f"Derived by derive_keda.py from {source}; do not edit by hand.",
        **strict(schema),
    }


if __name__ == "__main__":
    path = Path(sys.argv[1])
    source = sys.argv[2] if len(sys.argv) > 2 else path.name
    sys.stdout.write(
        json.dumps(derive(yaml.safe_load(path.read_text()), source), indent=1, sort_keys=True)
        + "\n"
    )
