"""The "LLM Platform" Grafana dashboard, as Grafana's JSON model: what `sovra render` wraps in a
GrafanaDashboard for the Grafana Operator and `sovra dashboards -o DIR` writes for a local Grafana.

Rows: the fleet at a glance (the gateway's OpenTelemetry GenAI metrics per model), one model in
depth (its engines' load, KV cache, latency, throughput, prefix-cache hits — vLLM's current names and
llama-server's, side by side with `or`), tenants and costs, the router's decisions, and the nightly
evaluations' pass rates. Engine series are selected by the scrape's `service` label (a model's
Service is named after it); the gateway's by `gen_ai_response_model`.

Every query is PromQL (VictoriaMetrics reads it too); `tests/observe/test_dashboards.py` parses each
with a real PromQL parser and checks every metric name against what the gateway, a real
llama-server and the pinned vLLM export.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["DASHBOARD_UID", "dashboard_json", "platform_dashboard", "queries", "write_local"]

DASHBOARD_UID = "sovra-llm-platform"
_RATE = "$__rate_interval"
_ENGINE = 'namespace=~"$namespace",service=~"$model"'
_GATEWAY = 'gen_ai_response_model=~"$model"'
_ENGINES = "vllm:num_requests_running|llamacpp:requests_processing"  # one series per replica
Panel = dict[str, Any]


def _target(expr: str, legend: str) -> dict[str, Any]:
    return {
        "expr": expr,
        "legendFormat": legend,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
    }


def _panel(
    title: str, unit: str, *targets: tuple[str, str], kind: str = "timeseries", width: int = 8
) -> Panel:
    return {
        "type": kind,
        "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [_target(expr, legend) for expr, legend in targets],
        "gridPos": {"w": width, "h": 8},
    }


def _quantile(q: float, metric: str, by: str, where: str = "") -> str:
    selector = f"{metric}_bucket{{{where}}}" if where else f"{metric}_bucket"
    return f"histogram_quantile({q}, sum by (le, {by}) (rate({selector}[{_RATE}])))"


def _either(vllm: str, llama: str, by: str = "service", agg: str = "sum") -> str:
    """One series per model whichever engine serves it: vLLM's metric, else llama-server's."""
    return f"{agg} by ({by}) ({vllm}{{{_ENGINE}}}) or {agg} by ({by}) ({llama}{{{_ENGINE}}})"


def _rate(metric: str) -> str:
    """Per model, the rate of one engine counter."""
    return f"sum by (service) (rate({metric}{{{_ENGINE}}}[{_RATE}]))"


def _rate_either(vllm: str, llama: str) -> str:
    return f"{_rate(vllm)} or {_rate(llama)}"


def _fleet() -> list[Panel]:
    requests = "gen_ai_server_request_duration_seconds_count"
    model = "gen_ai_response_model"
    failed = f'sum by ({model}) (rate({requests}{{error_type!=""}}[{_RATE}]))'
    return [
        _panel(
            "Requests per second",
            "reqps",
            (f"sum by ({model}) (rate({requests}[{_RATE}]))", f"{{{{{model}}}}}"),
        ),
        _panel(
            "Error rate",
            "percentunit",
            (f"{failed} / sum by ({model}) (rate({requests}[{_RATE}]))", f"{{{{{model}}}}}"),
        ),
        _panel(
            "Time to first token, p95 (gateway)",
            "s",
            (_quantile(0.95, "gen_ai_server_time_to_first_token_seconds", model), f"{{{{{model}}}}}"),
        ),
        _panel(
            "Tokens per second",
            "short",
            (
                f"sum by (gen_ai_token_type) (rate(gen_ai_client_token_usage_sum[{_RATE}]))",
                "{{gen_ai_token_type}}",
            ),
        ),
        _panel(
            "Replicas serving",
            "short",
            (
                _either("vllm:num_requests_running", "llamacpp:requests_processing", agg="count"),
                "{{service}}",
            ),
        ),
        _panel(
            "Requests in flight",
            "short",
            (_either("vllm:num_requests_running", "llamacpp:requests_processing"), "{{service}}"),
        ),
    ]


def _ratio(part: str, whole: str) -> str:
    return f"{_rate(part)} / {_rate(whole)}"


def _model() -> list[Panel]:
    vllm_hits = _ratio("vllm:prefix_cache_hits_total", "vllm:prefix_cache_queries_total")
    llama_hits = _ratio("llamacpp:prompt_tokens_cached_total", "llamacpp:prompt_tokens_total")
    return [
        _panel(
            "Engine load: running and waiting",
            "short",
            (_either("vllm:num_requests_running", "llamacpp:requests_processing"), "{{service}} running"),
            (_either("vllm:num_requests_waiting", "llamacpp:requests_deferred"), "{{service}} waiting"),
        ),
        _panel(
            "KV-cache use (vLLM)",
            "percentunit",
            (f"max by (service) (vllm:kv_cache_usage_perc{{{_ENGINE}}})", "{{service}}"),
        ),
        _panel(
            "Prefix-cache hit rate (prompt tokens served from cache)",
            "percentunit",
            (f"({vllm_hits}) or ({llama_hits})", "{{service}}"),
        ),
        _panel(
            "Engine latency, p95",
            "s",
            (
                _quantile(0.95, "vllm:time_to_first_token_seconds", "service", _ENGINE),
                "{{service}} time to first token",
            ),
            (
                _quantile(0.95, "vllm:inter_token_latency_seconds", "service", _ENGINE),
                "{{service}} inter-token",
            ),
            (
                _quantile(0.95, "vllm:e2e_request_latency_seconds", "service", _ENGINE),
                "{{service}} end to end",
            ),
            (_quantile(0.95, "vllm:request_queue_time_seconds", "service", _ENGINE), "{{service}} queued"),
        ),
        _panel(
            "Latency seen by clients, p50 / p95",
            "s",
            (
                _quantile(
                    0.5, "gen_ai_server_time_to_first_token_seconds", "gen_ai_response_model", _GATEWAY
                ),
                "{{gen_ai_response_model}} first token p50",
            ),
            (
                _quantile(
                    0.95, "gen_ai_server_time_to_first_token_seconds", "gen_ai_response_model", _GATEWAY
                ),
                "{{gen_ai_response_model}} first token p95",
            ),
            (
                _quantile(
                    0.95, "gen_ai_server_time_per_output_token_seconds", "gen_ai_response_model", _GATEWAY
                ),
                "{{gen_ai_response_model}} per output token p95",
            ),
            (
                _quantile(0.95, "gen_ai_server_request_duration_seconds", "gen_ai_response_model", _GATEWAY),
                "{{gen_ai_response_model}} request p95",
            ),
        ),
        _panel(
            "Engine throughput, tokens per second",
            "short",
            (_rate_either("vllm:prompt_tokens_total", "llamacpp:prompt_tokens_total"), "{{service}} prompt"),
            (
                _rate_either("vllm:generation_tokens_total", "llamacpp:tokens_predicted_total"),
                "{{service}} generated",
            ),
        ),
    ]


def _tenants() -> list[Panel]:
    tokens = 'gen_ai_client_token_usage_sum{tenant=~"$tenant"}'
    requests = 'gen_ai_server_request_duration_seconds_count{tenant=~"$tenant"}'
    refused = 'sovra_gateway_rate_limited_total{tenant=~"$tenant"}'
    return [
        _panel(
            "Tokens per second by tenant",
            "short",
            (
                f"sum by (tenant, gen_ai_token_type) (rate({tokens}[{_RATE}]))",
                "{{tenant}} {{gen_ai_token_type}}",
            ),
        ),
        _panel(
            "Requests per second by tenant and model",
            "reqps",
            (
                f"sum by (tenant, gen_ai_response_model) (rate({requests}[{_RATE}]))",
                "{{tenant}} → {{gen_ai_response_model}}",
            ),
        ),
        _panel(
            "Estimated cost over the range ($price_per_mtok per million tokens)",
            "currencyUSD",
            (f"sum by (tenant) (increase({tokens}[$__range])) / 1e6 * $price_per_mtok", "{{tenant}}"),
            kind="bargauge",
        ),
        _panel(
            "Requests refused by limits",
            "reqps",
            (
                f"sum by (tenant, limit) (rate({refused}[{_RATE}]))",
                "{{tenant}} {{limit}}",
            ),
        ),
    ]


def _router() -> list[Panel]:
    return [
        _panel(
            "Router decisions by rule",
            "reqps",
            (f"sum by (rule, action) (rate(sovra_router_decisions_total[{_RATE}]))", "{{rule}} ({{action}})"),
        ),
        _panel(
            "Personal data redacted",
            "reqps",
            (f"sum by (entity) (rate(sovra_router_redactions_total[{_RATE}]))", "{{entity}}"),
        ),
        _panel(
            "Router decision time, p99", "s", (_quantile(0.99, "sovra_router_decision_seconds", "job"), "p99")
        ),
        _panel(
            "Retries and engine failures",
            "reqps",
            (f"sum by (reason) (rate(sovra_gateway_retries_total[{_RATE}]))", "retry: {{reason}}"),
            (
                f"sum by (model, error_type) (rate(sovra_gateway_upstream_errors_total[{_RATE}]))",
                "{{model}}: {{error_type}}",
            ),
        ),
    ]


def _evaluations() -> list[Panel]:
    return [
        _panel(
            "Pass rate per suite", "percentunit", ("max by (suite) (promptfoo_test_pass_rate)", "{{suite}}")
        ),
        _panel(
            "Pass rate per suite and model",
            "percentunit",
            ("max by (suite, model) (sovra_eval_pass_rate)", "{{suite}} · {{model}}"),
        ),
        _panel(
            "Since the last run",
            "s",
            ("time() - max by (suite) (sovra_eval_last_run_timestamp_seconds)", "{{suite}}"),
            kind="stat",
        ),
    ]


_ROWS = (
    ("Fleet", _fleet),
    ("Model: $model", _model),
    ("Tenants and costs", _tenants),
    ("Router", _router),
    ("Evaluations", _evaluations),
)


def _variables() -> list[dict[str, Any]]:
    source = {"type": "prometheus", "uid": "${datasource}"}

    def query(name: str, expression: str, label: str) -> dict[str, Any]:
        return {
            "name": name,
            "label": label,
            "type": "query",
            "datasource": source,
            "query": {"query": expression, "refId": name},
            "definition": expression,
            "refresh": 2,
            "includeAll": True,
            "multi": True,
            "allValue": ".*",
            "current": {"text": "All", "value": "$__all"},
        }

    return [
        {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus"},
        query("namespace", f'label_values({{__name__=~"{_ENGINES}"}}, namespace)', "Namespace"),
        query(
            "model",
            "label_values(gen_ai_server_request_duration_seconds_count, gen_ai_response_model)",
            "Model",
        ),
        query("tenant", "label_values(gen_ai_client_token_usage_count, tenant)", "Tenant"),
        {"name": "price_per_mtok", "label": "Price per million tokens", "type": "textbox", "query": "1"},
    ]


def platform_dashboard() -> dict[str, Any]:
    """The dashboard's JSON model; panels laid out left to right, a row per concern."""
    panels: list[Panel] = []
    y = 0
    for title, build in _ROWS:
        panels.append(
            {
                "type": "row",
                "title": title,
                "collapsed": False,
                "panels": [],
                "gridPos": {"x": 0, "y": y, "w": 24, "h": 1},
            }
        )
        y, x = y + 1, 0
        for panel in build():
            width = panel["gridPos"]["w"]
            if x + width > 24:
                x, y = 0, y + 8
            panel["gridPos"] |= {"x": x, "y": y}
            panels.append(panel)
            x += width
        y += 8
    for number, panel in enumerate(panels, start=1):
        panel["id"] = number
    return {
        "uid": DASHBOARD_UID,
        "title": "LLM Platform",
        "tags": ["sovra", "llm"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": _variables()},
        "panels": panels,
    }


def dashboard_json() -> str:
    return json.dumps(platform_dashboard(), indent=2, ensure_ascii=False) + "\n"


def queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression the dashboard runs: its panels' targets, and the series selector of
    each query variable (`label_values(selector, label)` is Grafana's, around a PromQL selector)."""
    found = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            inner = variable["query"]["query"].removeprefix("label_values(").removesuffix(")")
            found.append(inner.rsplit(",", 1)[0])
    return found


def write_local(out: Path, prometheus_url: str) -> list[Path]:
    """The dashboard for a Grafana on this machine: its JSON, and provisioning files (a Prometheus
    data source at `prometheus_url`, a file provider reading `out`) for `GF_PATHS_PROVISIONING`."""
    out.mkdir(parents=True, exist_ok=True)
    dashboards, sources = out / "provisioning" / "dashboards", out / "provisioning" / "datasources"
    dashboards.mkdir(parents=True, exist_ok=True)
    sources.mkdir(parents=True, exist_ok=True)
    written = [out / f"{DASHBOARD_UID}.json", dashboards / "sovra.yaml", sources / "sovra.yaml"]
    written[0].write_text(dashboard_json(), encoding="utf-8")
    provider = {
        "apiVersion": 1,
        "providers": [
            {
                "name": "sovra",
                "folder": "LLM Platform",
                "type": "file",
                "options": {"path": str(out.resolve()), "foldersFromFilesStructure": False},
            }
        ],
    }
    source = {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "Prometheus",
                "type": "prometheus",
                "access": "proxy",
                "url": prometheus_url,
                "isDefault": True,
            }
        ],
    }
    # JSON is YAML: Grafana reads these, and nothing here needs a YAML writer.
    written[1].write_text(json.dumps(provider, indent=2) + "\n", encoding="utf-8")
    written[2].write_text(json.dumps(source, indent=2) + "\n", encoding="utf-8")
    return written
