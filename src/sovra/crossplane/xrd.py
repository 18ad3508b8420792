"""The CompositeResourceDefinition for InferenceService, generated from the pydantic model that
`sovra validate` uses — so the two can never drift.

pydantic's JSON Schema becomes a Kubernetes structural schema (OpenAPI v3.0): references inlined,
`Optional` as a nullable type, numeric `exclusiveMinimum` as OpenAPI's boolean form, free-form
objects marked `x-kubernetes-preserve-unknown-fields`. What a schema cannot say is written as CEL
(`x-kubernetes-validations`), each rule the twin of a pydantic validator.
"""

from __future__ import annotations

from typing import Any

from sovra.spec import MANAGED_FLAGS, ServiceSpec

__all__ = ["CEL_RULES", "openapi_schema", "xrd"]

_DROP = {"title", "description", "$defs"}

# (path within spec, rule, message): the pydantic validators, in CEL.
_FLAG_SHAPE = "^--[a-z0-9][a-z0-9-]*(=.*)?$"
_MANAGED = ", ".join(f"'{flag}'" for flag in sorted(MANAGED_FLAGS))
CEL_RULES: dict[str, list[dict[str, str]]] = {
    "scaling": [
        {
            "rule": "!has(self.minReplicas) || !has(self.maxReplicas) "
            "|| self.minReplicas <= self.maxReplicas",
            "message": "minReplicas must not exceed maxReplicas",
        },
    ],
    "engineArgs": [
        {
            "rule": f"self.all(a, a.matches('{_FLAG_SHAPE}'))",
            "message": "engineArgs are of the form --flag or --flag=value",
        },
        {
            "rule": f"self.all(a, ![{_MANAGED}].exists(f, a == f || a.startsWith(f + '=')))",
            "message": "engineArgs may not set a flag Sovra manages",
        },
    ],
    "gateway": [
        {
            "rule": "!has(self.endpointPicker) || !self.endpointPicker.enabled "
            "|| !has(self.enabled) || self.enabled",
            "message": "gateway.endpointPicker.enabled requires gateway.enabled",
        },
        {
            "rule": "!has(self.endpointPicker) || !self.endpointPicker.enabled || !has(self.canaries) "
            "|| size(self.canaries) == 0",
            "message": "gateway.endpointPicker.enabled and gateway.canaries exclude each other "
            "(an InferencePool backendRef has no weight nor modelNameOverride)",
        },
    ],
    "": [
        {
            "rule": "!has(self.gateway) || !has(self.gateway.canaries) || self.gateway.canaries.all(c, "
            "has(self.loraAdapters) && self.loraAdapters.exists(a, a.name == c.adapter))",
            "message": "every gateway.canaries[].adapter must be one of loraAdapters",
        },
    ],
}


def _inline(node: Any, definitions: dict[str, Any]) -> Any:
    """The schema with every `$ref` replaced by its definition, in OpenAPI v3.0's dialect."""
    if isinstance(node, list):
        return [_inline(item, definitions) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = definitions[node["$ref"].rsplit("/", 1)[-1]]
        extra = {k: v for k, v in node.items() if k != "$ref"}
        return _inline({**target, **extra}, definitions)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP or (key == "additionalProperties" and value is False):
            continue  # structural schemas prune unknown fields; kubectl's strict validation names them
        if key == "default" and (value is None or isinstance(value, dict | list)):
            continue  # scalar defaults only: nested ones are the function's (pydantic's) to fill
        out[key] = _inline(value, definitions)
    return _openapi(out)


def _openapi(node: dict[str, Any]) -> dict[str, Any]:
    """JSON Schema idioms pydantic writes → the ones a structural schema accepts."""
    variants = node.get("anyOf")
    if isinstance(variants, list):
        real = [v for v in variants if v.get("type") != "null"]
        if len(real) < len(variants):  # Optional[X]: X, nullable
            rest = {k: v for k, v in node.items() if k != "anyOf"}
            node = {**(real[0] if len(real) == 1 else {"anyOf": real}), **rest, "nullable": True}
        if "anyOf" in node and all("type" in v for v in node["anyOf"]):
            types = {v["type"] for v in node["anyOf"]}
            if types <= {"string", "integer"}:  # e.g. resources quantities: "2" or 2
                node = {k: v for k, v in node.items() if k != "anyOf"} | {"x-kubernetes-int-or-string": True}
    for bound, flag in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(node.get(bound), int | float) and not isinstance(node.get(bound), bool):
            node = {**node, flag: node[bound], bound: True}
    if "const" in node:
        node = {k: v for k, v in node.items() if k != "const"} | {"enum": [node["const"]]}
    if "prefixItems" in node:  # never used by the spec; refuse rather than emit a wrong schema
        raise ValueError("tuples of fixed length have no structural schema")
    if node.get("type") == "object" and "properties" not in node:
        values = node.get("additionalProperties")
        if not isinstance(values, dict) or not values:
            # dict[str, Any]: Kubernetes must keep what it cannot type.
            node = {k: v for k, v in node.items() if k != "additionalProperties"}
            node["x-kubernetes-preserve-unknown-fields"] = True
    return node


def _at(schema: dict[str, Any], path: str) -> dict[str, Any]:
    for part in filter(None, path.split(".")):
        schema = schema["properties"][part]
    return schema


def openapi_schema() -> dict[str, Any]:
    """The `spec` schema of an InferenceService, with its CEL rules."""
    raw = ServiceSpec.model_json_schema(by_alias=True, mode="validation")
    spec: dict[str, Any] = _inline(raw, raw.get("$defs", {}))
    for path, rules in CEL_RULES.items():
        _at(spec, path)["x-kubernetes-validations"] = rules
    return spec


def xrd(group: str = "sovra.dev", version: str = "v1alpha1") -> dict[str, Any]:
    """A namespaced Crossplane v2 XRD: `kind: InferenceService` in `group`."""
    return {
        "apiVersion": "apiextensions.crossplane.io/v2",
        "kind": "CompositeResourceDefinition",
        "metadata": {"name": f"inferenceservices.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {
                "kind": "InferenceService",
                "plural": "inferenceservices",
                "singular": "inferenceservice",
                "shortNames": ["isvc"],
            },
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "referenceable": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": openapi_schema(),
                                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                            },
                            "required": ["spec"],
                        }
                    },
                }
            ],
        },
    }
