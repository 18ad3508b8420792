"""VictoriaMetrics (or the Prometheus Operator): scrape each model's engine metrics; alert when a
replica outlives its cold-start budget unready, when too many of a model's requests fail (as the
Sovra gateway counts them), and on the model's service levels — first-token latency (p95) over its
objective, or an engine saturated (every slot busy and requests waiting). The "LLM Platform"
Grafana dashboard (`observe/dashboards.py`) for the Grafana Operator."""

from __future__ import annotations

from sovra.config import RenderSettings
from sovra.deploy.objects import Manifest, metadata, selector
from sovra.deploy.scaling import engine_metrics, engine_selector
from sovra.observe.dashboards import DASHBOARD_UID, dashboard_json
from sovra.spec import InferenceService

__all__ = ["grafana_dashboard", "rules", "scrape"]


def _kind(settings: RenderSettings, victoria: str, prometheus: str) -> dict[str, str]:
    if settings.monitoring == "prometheus-operator":
        return {"apiVersion": "monitoring.coreos.com/v1", "kind": prometheus}
    return {"apiVersion": "operator.victoriametrics.com/v1beta1", "kind": victoria}


def scrape(
    name: str,
    namespace: str,
    component: str,
    settings: RenderSettings,
    interval: str | None = None,
    *,
    match_labels: dict[str, str] | None = None,
    port: str = "http",
) -> Manifest:
    """The Service `name` (by Sovra's labels, or `match_labels` for one a chart made)."""
    return {
        **_kind(settings, "VMServiceScrape", "ServiceMonitor"),
        "metadata": metadata(name, namespace, component),
        "spec": {
            "selector": {"matchLabels": match_labels or selector(name, component)},
            "namespaceSelector": {"matchNames": [namespace]},
            # `service` label = the Service's name: what the KEDA queries select on.
            "endpoints": [
                {"port": port, "path": "/metrics", "interval": interval or settings.scrape_interval}
            ],
        },
    }


def _default_groups(service: InferenceService, settings: RenderSettings) -> list[Manifest]:
    name, namespace = service.name, service.metadata.namespace
    budget = settings.cold_start_budget_seconds
    share = f"{settings.error_rate_threshold:.0%}"
    where = f'namespace="{namespace}",deployment="{name}"'
    unready = f"kube_deployment_status_replicas_unavailable{{{where}}} > 0"
    requests = f'gen_ai_server_request_duration_seconds_count{{gen_ai_response_model="{name}"'
    failed = f'sum(rate({requests},error_type!=""}}[5m])) / sum(rate({requests}}}[5m]))'
    cold_start = {
        "alert": "InferenceColdStartBudgetExceeded",
        "expr": unready,
        "for": f"{budget}s",
        "labels": {"severity": "warning", "model": name},
        "annotations": {"summary": f"{name}: a replica is still not ready after {budget} s"},
    }
    errors = {
        "alert": "InferenceErrorRateHigh",
        "expr": f"{failed} > {settings.error_rate_threshold}",
        "for": "10m",
        "labels": {"severity": "critical", "model": name},
        "annotations": {"summary": f"{name}: {share} of requests or more fail"},
    }
    return [{"name": f"sovra-{name}", "rules": [cold_start, errors]}, _slo_group(service, settings)]


def _slo_group(service: InferenceService, settings: RenderSettings) -> Manifest:
    """Service levels: what a user of the model feels (first token, p95, as the gateway sees it) and
    what comes before it (an engine with every slot busy while requests wait)."""
    name, objective = service.name, settings.ttft_p95_objective_seconds
    buckets = f'gen_ai_server_time_to_first_token_seconds_bucket{{gen_ai_response_model="{name}"}}'
    ttft = f"histogram_quantile(0.95, sum by (le) (rate({buckets}[5m])))"
    running, waiting, _ = engine_metrics(service)
    where, slots = engine_selector(service), service.spec.model.max_num_seqs
    busy = f"sum({running}{{{where}}}) / ({slots} * count({running}{{{where}}}))"
    saturated = f"({busy} >= 0.95) and (sum({waiting}{{{where}}}) > 0)"
    labels = {"model": name, "slo": "true"}
    return {
        "name": f"sovra-{name}-slo",
        "rules": [
            {
                "alert": "InferenceTimeToFirstTokenSlow",
                "expr": f"{ttft} > {objective:g}",
                "for": "10m",
                "labels": {"severity": "warning", **labels},
                "annotations": {"summary": f"{name}: p95 time to first token above {objective:g} s"},
            },
            {
                "alert": "InferenceSaturated",
                "expr": saturated,
                "for": "10m",
                "labels": {"severity": "warning", **labels},
                "annotations": {"summary": f"{name}: every slot busy and requests waiting (scaled to max?)"},
            },
        ],
    }


def rules(service: InferenceService, settings: RenderSettings) -> Manifest:
    """The cold-start and error-rate alerts, or the declaration's `observability.alertingRules`."""
    declared = service.spec.observability.alerting_rules
    groups = list(declared.groups) if declared else _default_groups(service, settings)
    return {
        **_kind(settings, "VMRule", "PrometheusRule"),
        "metadata": metadata(service.name, service.metadata.namespace, "inference"),
        "spec": {"groups": groups},
    }


def grafana_dashboard(settings: RenderSettings) -> Manifest:
    """The "LLM Platform" dashboard, for the Grafana Operator's instances that `grafanaSelector` picks."""
    return {
        "apiVersion": "grafana.integreatly.org/v1beta1",
        "kind": "GrafanaDashboard",
        "metadata": metadata(DASHBOARD_UID, settings.namespace, "dashboards"),
        "spec": {
            "instanceSelector": {"matchLabels": dict(settings.grafana_selector)},
            "folder": settings.grafana_folder,
            "allowCrossNamespaceImport": True,  # the Grafana instance usually lives in its own namespace
            "resyncPeriod": "10m",
            "json": dashboard_json(),
        },
    }
