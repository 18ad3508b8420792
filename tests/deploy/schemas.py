"""Validating a manifest: Kubernetes' own kinds against the API schemas (kubernetes-validate),
custom resources against the upstream CRD's openAPIV3Schema (jsonschema) and its CEL rules
(cel-python)."""

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
    found = [f"{key}: {e.message} at {list(e.absolute_path)}" for e in validator.iter_errors(manifest)]
    schema = crd_schemas()[key]
    return found or [f"{key}: {message}" for message in cel_problems(schema, defaulted(schema, manifest))]


def defaulted(schema: Any, value: Any) -> Any:
    """`value` with the schema's defaults filled in, as the API server does before its CEL rules."""
    if not isinstance(schema, dict):
        return value
    if isinstance(value, dict) and "properties" in schema:
        filled = dict(value)
        for name, sub in schema["properties"].items():
            if name not in filled and isinstance(sub, dict) and "default" in sub:
                filled[name] = sub["default"]
            if name in filled:
                filled[name] = defaulted(sub, filled[name])
        return filled
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [defaulted(schema["items"], item) for item in value]
    return value


# The Kubernetes CEL library's string extensions that upstream CRDs use and cel-python lacks.
_KUBERNETES_CEL = {
    "lowerAscii": lambda text: type(text)(text.lower()),
    "upperAscii": lambda text: type(text)(text.upper()),
}


@cache
def _program(rule: str) -> Any:
    """A CEL rule compiled once (every manifest of a kind meets the same rules)."""
    import celpy

    environment = celpy.Environment()
    return environment.program(environment.compile(rule), functions=_KUBERNETES_CEL)


def cel_problems(schema: Any, value: Any, path: str = "") -> list[str]:
    """The CRD's own CEL rules (`x-kubernetes-validations`) that `value` breaks, evaluated with
    cel-python as the API server would on create: where the field is present, `oldSelf` rules
    (transitions) left out."""
    import celpy

    found = []
    for rule in schema.get("x-kubernetes-validations", []) if isinstance(schema, dict) else []:
        if "oldSelf" in rule["rule"]:
            continue
        if not _program(rule["rule"]).evaluate({"self": celpy.json_to_cel(value)}):
            found.append(f"{rule.get('message', rule['rule'])} at {path or '/'}")
    if not isinstance(schema, dict):
        return found
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                found += cel_problems(sub, value[name], f"{path}/{name}")
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for name, item in value.items():
                if name not in schema.get("properties", {}):
                    found += cel_problems(extra, item, f"{path}/{name}")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            found += cel_problems(schema["items"], item, f"{path}/{index}")
    return found
