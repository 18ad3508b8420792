"""What the console shows beside the services: requests and tokens per tenant and model by the hour
(the usage ledger), the router's decisions since the gateway started (its metrics), and the latest
pass rate of each evaluation suite per model (`sovra eval` history). Read-only, in a worker thread."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from sovra.database import Database
from sovra.observe.metrics import GatewayMetrics

if TYPE_CHECKING:
    from sovra.evals.history import EvalHistory

__all__ = ["eval_history", "evaluations", "router_decisions", "usage_by_hour"]


def usage_by_hour(database: Database, since: float) -> list[dict[str, Any]]:
    """Per hour (its start, epoch seconds), tenant and served model: requests, errors, tokens."""
    # Grouped by the hour here rather than in SQL: SQLite and PostgreSQL round time differently.
    sql = "SELECT at, tenant, served_model, status, input_tokens, output_tokens FROM usage WHERE at >= ?"
    with database.session() as db:
        rows = db.execute(sql, (since,))
    groups: dict[tuple[int, str, str], list[int]] = {}
    for at, tenant, model, status, input_tokens, output_tokens in rows:
        hour = int(math.floor(float(at) / 3600) * 3600)
        counts = groups.setdefault((hour, str(tenant), str(model)), [0, 0, 0, 0])
        counts[0] += 1
        counts[1] += int(status) >= 400
        counts[2] += int(input_tokens)
        counts[3] += int(output_tokens)
    return [
        {"hour": hour, "tenant": tenant, "model": model, "requests": c[0], "errors": c[1],
         "input_tokens": c[2], "output_tokens": c[3]}
        for (hour, tenant, model), c in sorted(groups.items())
    ]  # fmt: skip


def router_decisions(metrics: GatewayMetrics) -> list[dict[str, Any]]:
    """Each (rule, action) the router decided since this gateway started, and how often."""
    decided = []
    for family in metrics.router_decisions.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                decided.append({**sample.labels, "count": int(sample.value)})
    return sorted(decided, key=lambda d: -d["count"])


def eval_history(database: Database) -> EvalHistory:
    """The `sovra eval` history in the platform database, its tables created if no eval ran yet."""
    from sovra.evals.history import EvalHistory

    history = EvalHistory(database)
    history.migrate()
    return history


def evaluations(history: EvalHistory) -> list[dict[str, Any]]:
    """The latest run of each suite: when, its pass rate, and each model's."""
    latest: dict[str, Any] = {}
    for run in history.runs(limit=200):
        if run.suite not in latest:
            rates = history.model_rates(run.id)
            latest[run.suite] = {"suite": run.suite, "at": run.at, "pass_rate": run.pass_rate,
                                 "models": {m: rate for m, (_, rate) in rates.items()}}  # fmt: skip
    return list(latest.values())
