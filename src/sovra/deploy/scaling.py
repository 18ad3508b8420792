"""KEDA ScaledObjects: scale on what the engine says about its own load, before it saturates.

Three Prometheus triggers, any one of which scales up: running requests over the slots the engine
has (`maxNumSeqs`), KV-cache use (vLLM only), requests waiting. Current metric names: vLLM's
`vllm:num_requests_running`, `vllm:kv_cache_usage_perc`, `vllm:num_requests_waiting`; llama.cpp's
`llamacpp:requests_processing` and `llamacpp:requests_deferred`.
"""

from __future__ import annotations

from sovra.config import RenderSettings
from sovra.deploy.objects import Manifest, metadata
from sovra.deploy.workloads import engine_kind
from sovra.spec import EngineKind, InferenceService

__all__ = ["scaled_object", "trigger_queries"]


def trigger_queries(service: InferenceService) -> list[tuple[str, str, str]]:
    """(name, PromQL, threshold) per trigger."""
    scaling, slots = service.spec.scaling, service.spec.model.max_num_seqs
    where = f'namespace="{service.metadata.namespace}",service="{service.name}"'
    if engine_kind(service) is EngineKind.LLAMACPP:
        running, waiting = "llamacpp:requests_processing", "llamacpp:requests_deferred"
        cache = None
    else:
        running, waiting, cache = (
            "vllm:num_requests_running",
            "vllm:num_requests_waiting",
            "vllm:kv_cache_usage_perc",
        )
    triggers = [
        (
            "running-ratio",
            f"sum({running}{{{where}}}) / ({slots} * count({running}{{{where}}}))",
            str(scaling.running_ratio_threshold),
        )
    ]
    if cache is not None:
        triggers.append(("kv-cache", f"avg({cache}{{{where}}})", str(scaling.cache_utilization_threshold)))
    triggers.append(("queue", f"sum({waiting}{{{where}}})", str(scaling.queue_length_threshold)))
    return triggers


def scaled_object(service: InferenceService, settings: RenderSettings) -> Manifest:
    scaling = service.spec.scaling
    triggers = [
        {
            "type": "prometheus",
            "name": name,
            "metadata": {
                "serverAddress": settings.prometheus_address,
                "query": query,
                "threshold": threshold,
            },
        }
        for name, query, threshold in trigger_queries(service)
    ]
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
            "triggers": triggers,
        },
    }
