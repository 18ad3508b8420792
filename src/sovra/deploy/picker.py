"""`gateway.endpointPicker`: the Gateway API Inference Extension in front of one model.

A Flux `HelmRelease` installs the extension's `inferencepool` chart for the model: an
`InferencePool` of its replicas and the Endpoint Picker (EPP) that scores each replica per request
(queue depth, KV-cache use, prefix affinity, LoRA) — the cluster's twin of the prefix-affine balancer
`sovra up` runs in process. The model's AIGatewayRoute then sends its base rule to the pool
(`routes.py`); the EPP gets a network policy of its own and is scraped like the engines.

The chart names the pool after the release (the model) and the EPP `<model>-epp`; `inference_pool`
is the pool the chart makes from these values, so a test can hold it against the upstream schema.
"""

from __future__ import annotations

from sovra.config import RenderSettings
from sovra.deploy.monitoring import scrape
from sovra.deploy.objects import PORT, Manifest, metadata, picker_name, selector
from sovra.deploy.policies import endpoint_picker_policy
from sovra.spec import InferenceService

__all__ = ["EXT_PROC_PORT", "METRICS_PORT", "endpoint_picker", "inference_pool"]

EXT_PROC_PORT = 9002  # Envoy asks the EPP for an endpoint here (gRPC ext-proc)
METRICS_PORT = 9090  # the chart's `http-metrics` port


def inference_pool(service: InferenceService) -> Manifest:
    """The InferencePool the chart renders from `_values` (its `inferencepool.yaml` template)."""
    return {
        "apiVersion": "inference.networking.k8s.io/v1",
        "kind": "InferencePool",
        "metadata": {"name": service.name, "namespace": service.metadata.namespace},
        "spec": {
            "targetPorts": [{"number": PORT}],
            "selector": {"matchLabels": selector(service.name, "inference")},
            "endpointPickerRef": {"name": picker_name(service.name), "port": {"number": EXT_PROC_PORT}},
        },
    }


def _values(service: InferenceService, settings: RenderSettings) -> Manifest:
    registry, _, path = settings.endpoint_picker_image.partition("/")
    repository, _, tag = path.rpartition(":")
    pool = inference_pool(service)["spec"]
    return {
        "inferencePool": {
            "modelServers": {"matchLabels": pool["selector"]["matchLabels"]},
            "targetPorts": pool["targetPorts"],
            "modelServerType": "vllm",
            "apiVersion": "inference.networking.k8s.io/v1",
        },
        "inferenceExtension": {
            "replicas": 1,
            "image": {"registry": registry, "repository": repository, "tag": tag},
            "extProcPort": EXT_PROC_PORT,
            # The chart's default wants a bearer token on /metrics, which the scraper does not send;
            # the EPP's network policy is what limits who reads its metrics.
            "monitoring": {"prometheus": {"auth": {"enabled": False}}},
        },
        "provider": {"name": "none"},
    }


def _helm_release(service: InferenceService, settings: RenderSettings) -> Manifest:
    namespace = service.metadata.namespace
    chart = {"kind": "OCIRepository", "name": settings.endpoint_picker_chart,
             "namespace": settings.endpoint_picker_chart_namespace or namespace}  # fmt: skip
    remediation = {"remediation": {"retries": 3}}
    return {
        "apiVersion": "helm.toolkit.fluxcd.io/v2",
        "kind": "HelmRelease",
        "metadata": metadata(picker_name(service.name), namespace, "endpoint-picker"),
        "spec": {
            "releaseName": service.name,  # the chart names the InferencePool after the release
            "chartRef": chart,
            "interval": "10m",
            "install": remediation,
            "upgrade": remediation,
            "values": _values(service, settings),
        },
    }


def endpoint_picker(service: InferenceService, settings: RenderSettings) -> list[Manifest]:
    """HelmRelease, the EPP's scrape and its network policy; nothing unless it is enabled."""
    if not service.spec.gateway.endpoint_picker.enabled:
        return []
    name, namespace = picker_name(service.name), service.metadata.namespace
    return [
        _helm_release(service, settings),
        scrape(
            name,
            namespace,
            "endpoint-picker",
            settings,
            match_labels={"app.kubernetes.io/name": name},  # the chart's label on the EPP's Service
            port="http-metrics",
        ),
        endpoint_picker_policy(service, EXT_PROC_PORT, METRICS_PORT, settings),
    ]
