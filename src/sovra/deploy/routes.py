"""Envoy AI Gateway at the front: a model name in `x-ai-eg-model` goes to that model's Service.

Per model: an Envoy Gateway `Backend` (the Service's cluster DNS name), an `AIServiceBackend` that
says it speaks OpenAI's API, and an `AIGatewayRoute` whose rule matches the header. LoRA adapters
are model names of their own, pinned to the same pods; `gateway.canaries` sends a share of the base
model's traffic to an adapter (`modelNameOverride`); `gateway.endpointPicker` sends the base model's
rule to its InferencePool instead, whose picker scores each replica. `MoM` is routed the same way, to
the Sovra gateway (router, keys, ledger). `route.enabled` adds a plain HTTPRoute straight to the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sovra.config import RenderSettings
from sovra.deploy.objects import PORT, Manifest, metadata
from sovra.spec import InferenceService

__all__ = ["model_route", "service_routes"]

MODEL_HEADER = "x-ai-eg-model"


def _backend(service: str, namespace: str, component: str) -> Manifest:
    return {
        "apiVersion": "gateway.envoyproxy.io/v1alpha1",
        "kind": "Backend",
        "metadata": metadata(f"{service}-backend", namespace, component),
        "spec": {
            "endpoints": [{"fqdn": {"hostname": f"{service}.{namespace}.svc.cluster.local", "port": PORT}}]
        },
    }


def _ai_backend(name: str, service: str, namespace: str, component: str) -> Manifest:
    return {
        "apiVersion": "aigateway.envoyproxy.io/v1beta1",
        "kind": "AIServiceBackend",
        "metadata": metadata(name, namespace, component),
        "spec": {
            "schema": {"name": "OpenAI", "prefix": "/v1"},
            "backendRef": {"name": f"{service}-backend", "kind": "Backend", "group": "gateway.envoyproxy.io"},
        },
    }


def _rule(model: str, backend_refs: list[dict[str, Any]]) -> Manifest:
    return {
        "matches": [{"headers": [{"type": "Exact", "name": MODEL_HEADER, "value": model}]}],
        "backendRefs": backend_refs,
    }


def _ai_route(
    name: str, namespace: str, rules: list[Manifest], settings: RenderSettings, component: str
) -> Manifest:
    parent = {"name": settings.ai_gateway, "namespace": settings.ai_gateway_namespace,
              "kind": "Gateway", "group": "gateway.networking.k8s.io"}  # fmt: skip
    return {
        "apiVersion": "aigateway.envoyproxy.io/v1beta1",
        "kind": "AIGatewayRoute",
        "metadata": metadata(name, namespace, component),
        "spec": {"parentRefs": [parent], "rules": rules},
    }


def model_route(
    models: Sequence[str], service: str, namespace: str, settings: RenderSettings, component: str
) -> list[Manifest]:
    """Backend + AIServiceBackend + AIGatewayRoute sending requests for each of `models` to `service`."""
    rules = [_rule(model, [{"name": service}]) for model in models]
    return [
        _backend(service, namespace, component),
        _ai_backend(service, service, namespace, component),
        _ai_route(service, namespace, rules, settings, component),
    ]


def service_routes(service: InferenceService, settings: RenderSettings) -> list[Manifest]:
    name, namespace, spec = service.name, service.metadata.namespace, service.spec
    objects = [http_route(service, settings)] if spec.route.enabled else []
    if not spec.gateway.enabled:
        return objects
    canaries = spec.gateway.canaries
    # One AIServiceBackend per canary, so each is a distinct weighted backendRef of the base rule.
    canary_names = [f"{name}-canary-{i}" for i in range(len(canaries))]
    base: list[dict[str, Any]] = [{"name": name}]
    if canaries:  # the base model keeps what the canaries do not take
        base = [{"name": name, "weight": 100 - sum(c.weight_percent for c in canaries)}]
    base += [{"name": backend, "weight": c.weight_percent, "modelNameOverride": c.adapter}
             for backend, c in zip(canary_names, canaries, strict=True)]  # fmt: skip
    if spec.gateway.endpoint_picker.enabled:  # the pool's picker chooses the replica (picker.py)
        base = [{"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": name}]
    # An adapter asked for by name always reaches it (vLLM dispatches on the body's model).
    pinned = [_rule(adapter.name, [{"name": name}]) for adapter in spec.lora_adapters]
    return [
        *objects,
        _backend(name, namespace, "inference"),
        _ai_backend(name, name, namespace, "inference"),
        *(_ai_backend(backend, name, namespace, "inference") for backend in canary_names),
        _ai_route(name, namespace, [_rule(name, base), *pinned], settings, "inference"),
    ]


def http_route(service: InferenceService, settings: RenderSettings) -> Manifest:
    route = service.spec.route
    parent = {"name": route.parent_gateway or settings.http_gateway,
              "namespace": route.parent_gateway_namespace or settings.http_gateway_namespace}  # fmt: skip
    spec: dict[str, Any] = {
        "parentRefs": [parent],
        "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                   "backendRefs": [{"name": service.name, "port": PORT}]}],
    }  # fmt: skip
    if service.spec.route.hostname:
        spec["hostnames"] = [service.spec.route.hostname]
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": metadata(service.name, service.metadata.namespace, "inference"),
        "spec": spec,
    }
