"""Small builders every resource uses: labels, metadata, the restricted security context."""

from __future__ import annotations

from typing import Any

__all__ = ["PORT", "container_security", "labels", "metadata", "picker_name", "pod_security", "selector"]

Manifest = dict[str, Any]
PORT = 8000  # every model server and the Sovra gateway listen here


def labels(name: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "sovra",
        "app.kubernetes.io/managed-by": "sovra",
    }


def metadata(name: str, namespace: str, component: str, **extra: Any) -> Manifest:
    return {"name": name, "namespace": namespace, "labels": labels(name, component), **extra}


def picker_name(model: str) -> str:
    """The Endpoint Picker of a model's InferencePool, as the `inferencepool` chart names it."""
    return f"{model}-epp"


def selector(name: str, component: str) -> dict[str, str]:
    """The labels a selector matches: stable ones only (a selector is immutable once applied)."""
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/component": component}


def pod_security() -> Manifest:
    return {
        "runAsNonRoot": True,
        "runAsUser": 1001,
        "runAsGroup": 1001,
        "fsGroup": 1001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security() -> Manifest:
    """Pod Security Standards "restricted": no privilege escalation, no capabilities, read-only root."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
