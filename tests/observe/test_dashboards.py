"""The "LLM Platform" dashboard and the alert rules: every query parses as PromQL (a real parser,
GreptimeTeam's promql-parser) and names only metrics that really exist — in the gateway's /metrics
and a real llama-server's (both from `sovra up` with SmolLM2), vLLM's at the pinned version, the
nightly evaluation's export and kube-state-metrics."""

import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import promql_parser
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sovra.config import RenderSettings
from sovra.deploy.render import render
from sovra.evals.export import exposition
from sovra.observe.dashboards import platform_dashboard, queries
from sovra.spec import load_catalog
from tests.conftest import TOKEN, RunningPlatform

FIXTURES = Path(__file__).parent.parent / "fixtures"
ROOT = Path(__file__).parent.parent.parent
# What Grafana puts in place of its variables before a query reaches Prometheus.
GRAFANA = {"$__rate_interval": "1m", "$__range": "6h", "$price_per_mtok": "1", "$namespace": ".*",
           "$model": ".*", "$tenant": ".*"}  # fmt: skip


def exported(text: str) -> set[str]:
    """The sample names an exposition has or, for a family declared without samples, would have."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names |= {sample.name for sample in family.samples}
        if family.type == "counter":
            names |= {f"{family.name}_total", f"{family.name}_created"}
        elif family.type == "histogram":
            names |= {f"{family.name}{suffix}" for suffix in ("_bucket", "_sum", "_count", "_created")}
        else:
            names.add(family.name)
    return names


def referenced(query: str) -> set[str]:
    """The metric names a PromQL query selects, by name or by a `__name__` matcher."""
    for variable, value in GRAFANA.items():
        query = query.replace(variable, value)
    names: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            for matcher in node.matchers.matchers:
                if matcher.name == "__name__":
                    names.update(matcher.value.split("|"))

    promql_parser.walk(promql_parser.parse(query), visit)  # raises on a query that does not parse
    return names


def rule_expressions(objects: list[dict[str, Any]]) -> list[str]:
    return [
        rule["expr"]
        for o in objects
        if o["kind"] in ("VMRule", "PrometheusRule")
        for group in o["spec"]["groups"]
        for rule in group["rules"]
    ]


def static_names() -> set[str]:
    """What is known without a running platform: pinned vLLM, kube-state-metrics, the eval export."""
    names = exported((FIXTURES / "metrics" / "vllm-0.11.0.prom").read_text())
    names |= exported((FIXTURES / "metrics" / "kube-state-metrics.prom").read_text())
    return names | exported(exposition("smoke", [], time.time()).decode())


def test_every_query_parses_and_the_check_can_fail() -> None:
    for query in queries(platform_dashboard()):
        assert referenced(query), query
    with pytest.raises(ValueError):
        referenced("sum(rate(x[5m])")  # an unbalanced parenthesis is refused
    assert referenced('{__name__=~"a|b"}') == {"a", "b"}


def test_the_dashboard_has_the_rows_a_platform_team_reads() -> None:
    dashboard = platform_dashboard()
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert rows == ["Fleet", "Model: $model", "Tenants and costs", "Router", "Evaluations"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(set(ids)) == len(ids)
    for panel in dashboard["panels"]:  # inside the 24-column grid, no two panels overlapping
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
    cells = [(p["gridPos"]["x"], p["gridPos"]["y"]) for p in dashboard["panels"]]
    assert len(set(cells)) == len(cells)


def test_the_vllm_names_are_the_current_ones() -> None:
    names = set().union(*(referenced(q) for q in queries(platform_dashboard())))
    assert "vllm:kv_cache_usage_perc" in names and "vllm:gpu_cache_usage_perc" not in names
    assert "vllm:inter_token_latency_seconds_bucket" in names
    assert "vllm:gpu_cache_usage_perc" not in static_names()  # hidden in 0.11: never to be relied on
    assert RenderSettings().vllm_image.endswith(":v0.11.0")  # the version the fixture lists


@pytest.mark.engine
def test_every_metric_the_dashboard_and_the_rules_name_is_exported(platform: RunningPlatform) -> None:
    """Against a running `sovra up`: a chat (so the engine has served), then both /metrics."""
    auth = {"authorization": f"Bearer {TOKEN}"}
    chat = {"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    assert httpx.post(
        f"{platform.base_url}/v1/chat/completions", json=chat, headers=auth, timeout=60
    ).is_success
    gateway = httpx.get(f"{platform.base_url}/metrics", headers=auth, timeout=10).text
    status = httpx.get(f"{platform.base_url}/v1/status", headers=auth, timeout=10).json()
    (port,) = [replica["port"] for replica in status["services"]["smollm2"]["replicas"]]
    (pid,) = platform.engine_pids()
    engine = httpx.get(f"http://127.0.0.1:{port}/metrics", headers=platform.engine_key(pid), timeout=10).text
    assert re.search(r"^llamacpp:prompt_tokens_total [1-9]", engine, re.M)  # the engine really counted
    known = exported(gateway) | exported(engine) | static_names()
    objects = render(load_catalog(ROOT / "catalog" / "cluster")) + render(load_catalog(ROOT / "catalog"))
    expressions = queries(platform_dashboard()) + rule_expressions(objects)
    unknown = {name: q for q in expressions for name in referenced(q) if name not in known}
    assert unknown == {}
    # And the check is not vacuous: a misspelt name would be reported.
    assert "vllm:num_requests_runing" not in known and "gen_ai_client_token_usage_sum" in known


def test_sovra_dashboards_writes_what_a_local_grafana_provisions(tmp_path: Path, capsys: Any) -> None:
    from sovra.cli import main

    assert main(["dashboards", "-o", str(tmp_path), "--prometheus-url", "http://prom:9090"]) == 0
    dashboard = json.loads((tmp_path / "sovra-llm-platform.json").read_text())
    assert dashboard == platform_dashboard()
    provider = json.loads((tmp_path / "provisioning" / "dashboards" / "sovra.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == str(tmp_path.resolve())
    source = json.loads((tmp_path / "provisioning" / "datasources" / "sovra.yaml").read_text())
    assert (
        source["datasources"][0] | {"type": "prometheus", "url": "http://prom:9090"}
        == source["datasources"][0]
    )
    assert (
        main(["dashboards", "-o", str(tmp_path / "sovra-llm-platform.json" / "x")]) == 1
    )  # a file in the way
    assert "cannot write the dashboard" in capsys.readouterr().err


def test_each_model_gets_its_service_level_alerts() -> None:
    objects = render(load_catalog(ROOT / "catalog" / "cluster")) + render(load_catalog(ROOT / "catalog"))
    groups = {g["name"]: g for o in objects if o["kind"] == "VMRule" for g in o["spec"]["groups"]}
    vllm, llama = groups["sovra-qwen3-8b-slo"], groups["sovra-smollm2-slo"]
    assert [r["alert"] for r in vllm["rules"]] == ["InferenceTimeToFirstTokenSlow", "InferenceSaturated"]
    ttft = vllm["rules"][0]["expr"]
    assert 'gen_ai_response_model="qwen3-8b"' in ttft and ttft.endswith(
        f"> {RenderSettings().ttft_p95_objective_seconds:g}"
    )
    assert "vllm:num_requests_waiting" in vllm["rules"][1]["expr"]
    assert "llamacpp:requests_deferred" in llama["rules"][1]["expr"]  # each engine's own names
