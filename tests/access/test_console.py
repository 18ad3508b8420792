"""The console's reports: usage by the hour from the ledger, the router's decisions, evaluations."""

from pathlib import Path

from sovra.access.console.reports import eval_history, evaluations, router_decisions, usage_by_hour
from sovra.database import Database
from sovra.observe.metrics import GatewayMetrics


def test_usage_is_grouped_by_hour_tenant_and_model(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'sovra.db'}")
    database.migrate()
    rows = [  # at, tenant, model, status, input, output
        (7200.0 + 10, "team-a", "m", 200, 10, 5), (7200.0 + 900, "team-a", "m", 500, 3, 0),
        (10800.0 + 5, "team-a", "m", 200, 1, 1), (7200.0 + 20, "team-b", "m", 200, 2, 2),
        (100.0, "team-a", "m", 200, 99, 99),  # before the window
    ]  # fmt: skip
    with database.session() as db:
        for n, (at, tenant, model, status, inp, out) in enumerate(rows):
            db.execute(
                "INSERT INTO usage (request_id, at, tenant, key_id, endpoint, requested_model, served_model, "
                "input_tokens, output_tokens, cached_tokens, ttft_ms, duration_ms, status) "
                "VALUES (?, ?, ?, 'k', '/v1/chat/completions', ?, ?, ?, ?, 0, NULL, 1.0, ?)",
                (f"r{n}", at, tenant, model, model, inp, out, status),
            )
    grouped = usage_by_hour(database, since=3600)
    assert grouped == [
        {"hour": 7200, "tenant": "team-a", "model": "m", "requests": 2, "errors": 1, "input_tokens": 13, "output_tokens": 5},
        {"hour": 7200, "tenant": "team-b", "model": "m", "requests": 1, "errors": 0, "input_tokens": 2, "output_tokens": 2},
        {"hour": 10800, "tenant": "team-a", "model": "m", "requests": 1, "errors": 0, "input_tokens": 1, "output_tokens": 1},
    ]  # fmt: skip
    assert evaluations(eval_history(database)) == []  # no `sovra eval` yet: nothing, not an error


def test_router_decisions_are_counted_per_rule_and_action() -> None:
    metrics = GatewayMetrics()
    for rule, action in (("code", "route"), ("block-jailbreak", "block"), ("code", "route")):
        metrics.observe_decision(rule, action, frozenset(), 0.001)
    assert router_decisions(metrics) == [
        {"rule": "code", "action": "route", "count": 2},
        {"rule": "block-jailbreak", "action": "block", "count": 1},
    ]
