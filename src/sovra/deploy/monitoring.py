"""VictoriaMetrics: scrape each model's engine metrics; alert when a replica outlives its cold-start
budget unready, or when too many of a model's requests fail (as the Sovra gateway counts them)."""

from __future__ import annotations

from sovra.deploy.objects import Manifest, metadata, selector
from sovra.deploy.settings import RenderSettings
from sovra.spec import InferenceService

__all__ = ["rules", "scrape"]


def scrape(name: str, namespace: str, component: str, settings: RenderSettings) -> Manifest:
    return {
        "apiVersion": "operator.victoriametrics.com/v1beta1",
        "kind": "VMServiceScrape",
        "metadata": metadata(name, namespace, component),
        "spec": {
            "selector": {"matchLabels": selector(name, component)},
            "namespaceSelector": {"matchNames": [namespace]},
            # `service` label = the Service's name: what the KEDA queries select on.
            "endpoints": [{"port": "http", "path": "/metrics", "interval": settings.scrape_interval}],
        },
    }


def rules(service: InferenceService, settings: RenderSettings) -> Manifest:
    name, namespace = service.name, service.metadata.namespace
    budget = settings.cold_start_budget_seconds
    share = f"{settings.error_rate_threshold:.0%}"
    unready = (
        f'kube_deployment_status_replicas_unavailable{{namespace="{namespace}",deployment="{name}"}} > 0'
    )
    requests = f'gen_ai_server_request_duration_seconds_count{{gen_ai_response_model="{name}"'
    failed = (
        f'sum(rate({requests},error_type!=""}}[5m])) / sum(rate({requests}}}[5m]))'
        f" > {settings.error_rate_threshold}"
    )
    return {
        "apiVersion": "operator.victoriametrics.com/v1beta1",
        "kind": "VMRule",
        "metadata": metadata(name, namespace, "inference"),
        "spec": {
            "groups": [
                {
                    "name": f"sovra-{name}",
                    "rules": [
                        {
                            "alert": "InferenceColdStartBudgetExceeded",
                            "expr": unready,
                            "for": f"{budget}s",
                            "labels": {"severity": "warning", "model": name},
                            "annotations": {
                                "summary": f"{name}: a replica is still not ready after {budget} s"
                            },
                        },
                        {
                            "alert": "InferenceErrorRateHigh",
                            "expr": failed,
                            "for": "10m",
                            "labels": {"severity": "critical", "model": name},
                            "annotations": {"summary": f"{name}: {share} of requests or more fail"},
                        },
                    ],
                }
            ]
        },
    }
