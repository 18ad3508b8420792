"""Validating a manifest: Kubernetes' own kinds against the API schemas (kubernetes-validate),
custom resources against the upstream CRD's openAPIV3Schema (jsonschema)."""

from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

CRDS = Path(__file__).parent.parent / "fixtures" / "crds"
KUBERNETES_VERSION = "1.33.0"
_COMBINATORS = ("oneOf", "anyOf", "allOf", "not")


@cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) → schema, for every CRD fixture."""
    schemas = {}
    for path in CRDS.rglob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        for version in crd["spec"]["versions"]:
            key = (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
            schemas[key] = _strict(version["schema"]["openAPIV3Schema"])
    return schemas


def _strict(schema: Any) -> Any:
    """The schema, refusing unknown fields where it lists the known ones: the API server would
    silently prune a misspelt field of a custom resource, so the test must catch it instead."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    # Branches of oneOf/anyOf/allOf list only what tells them apart: never closed themselves.
    strict = {key: value if key in _COMBINATORS else _strict(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        strict["additionalProperties"] = False
    return strict


def problems(manifest: dict[str, Any]) -> list[str]:
    """Everything wrong with `manifest`; empty when it is valid."""
    key = (manifest["apiVersion"], manifest["kind"])
    if "/" not in manifest["apiVersion"] or manifest["apiVersion"].startswith(("apps/", "batch/")):
        try:
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            return [f"{key}: {error.message} at {list(error.path)}"]
        return []
    if key not in crd_schemas():
        return [f"{key}: no schema to validate against"]
    validator = jsonschema.Draft7Validator(crd_schemas()[key])
    return [f"{key}: {e.message} at {list(e.absolute_path)}" for e in validator.iter_errors(manifest)]
