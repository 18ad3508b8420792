"""The Crossplane side of `sovra render --crossplane`: the XRD, a Composition in Pipeline mode that
calls Sovra's composition function then function-auto-ready, and the Function packages to install."""

from __future__ import annotations

from typing import Any

from sovra.crossplane.xrd import xrd

__all__ = ["FUNCTION", "composition", "crossplane_objects", "functions"]

FUNCTION = "function-sovra"
AUTO_READY = "function-auto-ready"


def composition(group: str = "sovra.dev", version: str = "v1alpha1") -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.crossplane.io/v1",
        "kind": "Composition",
        "metadata": {"name": f"inferenceservices.{group}"},
        "spec": {
            "compositeTypeRef": {"apiVersion": f"{group}/{version}", "kind": "InferenceService"},
            "mode": "Pipeline",
            "pipeline": [
                {"step": "render", "functionRef": {"name": FUNCTION}},
                {"step": "ready", "functionRef": {"name": AUTO_READY}},
            ],
        },
    }


def functions(image: str) -> list[dict[str, Any]]:
    packages = {
        FUNCTION: image,
        AUTO_READY: "xpkg.crossplane.io/crossplane-contrib/function-auto-ready:v0.6.0",
    }
    return [
        {
            "apiVersion": "pkg.crossplane.io/v1",
            "kind": "Function",
            "metadata": {"name": name},
            "spec": {"package": package},
        }
        for name, package in packages.items()
    ]


def crossplane_objects(image: str, group: str = "sovra.dev") -> list[dict[str, Any]]:
    return [xrd(group), composition(group), *functions(image)]
