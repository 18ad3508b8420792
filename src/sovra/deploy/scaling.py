"""KEDA ScaledObjects: scale on what the engine says about its own load, before it saturates.

Three Prometheus triggers, any one of which scales up: running requests over the slots the engine
has (`maxNumSeqs`), KV-cache use (vLLM only), requests waiting. Current metric names: vLLM's
`vllm:num_requests_running`, `vllm:kv_cache_usage_perc`, `vllm:num_requests_waiting`; llama.cpp's
`llamacpp:requests_processing` and `llamacpp:requests_deferred`. The triggers, their metric types
(an average per replica is a `Value` target, a total an `AverageValue` one) and the scale-down window
come from `sovra/autoscale.py`, which `sovra up` runs locally on the same signals.
"""

from __future__ import annotations

from sovra.autoscale import triggers
from sovra.config import RenderSettings
from sovra.deploy.objects import Manifest, metadata
from sovra.deploy.workloads import engine_kind
from sovra.spec import EngineKind, InferenceService

__all__ = ["engine_metrics", "engine_selector", "scaled_object", "trigger_queries"]


def engine_metrics(service: InferenceService) -> tuple[str, str, str | None]:
    """(requests running, requests waiting, KV-cache use or None) as this service's engine names them."""
    if engine_kind(service) is EngineKind.LLAMACPP:
        return "llamacpp:requests_processing", "llamacpp:requests_deferred", None
    return "vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc"


def engine_selector(service: InferenceService) -> str:
    """The labels that pick this service's engine series (the scrape's, by its Service)."""
    return f'namespace="{service.metadata.namespace}",service="{service.name}"'


def trigger_queries(service: InferenceService) -> list[tuple[str, str, str, str]]:
    """(name, PromQL, threshold, metric type) per trigger."""
    slots = service.spec.model.max_num_seqs
    where = engine_selector(service)
    running, waiting, cache = engine_metrics(service)
    queries = {
        "running-ratio": f"sum({running}{{{where}}}) / ({slots} * count({running}{{{where}}}))",
        "kv-cache": f"avg({cache}{{{where}}})",
        "queue": f"sum({waiting}{{{where}}})",
    }
    return [
        (t.name, queries[t.name], f"{t.threshold:g}", t.metric_type)
        for t in triggers(service.spec.scaling, kv_cache=cache is not None)
    ]


def scaled_object(service: InferenceService, settings: RenderSettings) -> Manifest:
    scaling = service.spec.scaling
    rendered = [
        {
            "type": "prometheus",
            "name": name,
            "metricType": metric_type,
            "metadata": {
                "serverAddress": settings.prometheus_address,
                "query": query,
                "threshold": threshold,
            },
        }
        for name, query, threshold, metric_type in trigger_queries(service)
    ]
    # Scale down only to the highest recommendation of the cooldown, as `sovra up` does locally.
    window = {"scaleDown": {"stabilizationWindowSeconds": scaling.cooldown_seconds}}
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": metadata(service.name, service.metadata.namespace, "inference"),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": service.name},
            "minReplicaCount": scaling.min_replicas,
            "maxReplicaCount": scaling.max_replicas,
            "cooldownPeriod": scaling.cooldown_seconds,
            "pollingInterval": scaling.polling_interval_seconds,
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": window}},
            "triggers": rendered,
        },
    }
