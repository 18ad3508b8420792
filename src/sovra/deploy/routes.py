"""Envoy AI Gateway at the front: a model name in `x-ai-eg-model` goes to that model's Service.

Per model: an Envoy Gateway `Backend` (the Service's cluster DNS name), an `AIServiceBackend` that
says it speaks OpenAI's API, and an `AIGatewayRoute` whose rule matches the header. `MoM` is routed
the same way, to the Sovra gateway (router, keys, ledger).
"""

from __future__ import annotations

from collections.abc import Sequence

from sovra.deploy.objects import PORT, Manifest, metadata
from sovra.deploy.settings import RenderSettings

__all__ = ["model_route"]

MODEL_HEADER = "x-ai-eg-model"


def model_route(
    models: Sequence[str], service: str, namespace: str, settings: RenderSettings, component: str
) -> list[Manifest]:
    """Backend + AIServiceBackend + AIGatewayRoute sending requests for each of `models` to `service`."""
    backend = f"{service}-backend"
    return [
        {
            "apiVersion": "gateway.envoyproxy.io/v1alpha1",
            "kind": "Backend",
            "metadata": metadata(backend, namespace, component),
            "spec": {
                "endpoints": [
                    {"fqdn": {"hostname": f"{service}.{namespace}.svc.cluster.local", "port": PORT}}
                ]
            },
        },
        {
            "apiVersion": "aigateway.envoyproxy.io/v1beta1",
            "kind": "AIServiceBackend",
            "metadata": metadata(service, namespace, component),
            "spec": {
                "schema": {"name": "OpenAI", "prefix": "/v1"},
                "backendRef": {"name": backend, "kind": "Backend", "group": "gateway.envoyproxy.io"},
            },
        },
        {
            "apiVersion": "aigateway.envoyproxy.io/v1beta1",
            "kind": "AIGatewayRoute",
            "metadata": metadata(service, namespace, component),
            "spec": {
                "parentRefs": [
                    {
                        "name": settings.ai_gateway,
                        "namespace": settings.ai_gateway_namespace,
                        "kind": "Gateway",
                        "group": "gateway.networking.k8s.io",
                    }
                ],
                "rules": [
                    {
                        "matches": [{"headers": [{"type": "Exact", "name": MODEL_HEADER, "value": model}]}],
                        "backendRefs": [{"name": service}],
                    }
                    for model in models
                ],
            },
        },
    ]
