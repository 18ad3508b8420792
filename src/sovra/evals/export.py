"""A run's results for Prometheus: the reference's names (`promptfoo_test_total`,
`promptfoo_test_failed`, `promptfoo_test_pass_rate`) plus per-model pass rates and per-metric
scores; written for node-exporter's textfile collector, or pushed to a Prometheus / VictoriaMetrics
import endpoint (VictoriaMetrics' /api/v1/import/prometheus, or a Pushgateway's /metrics/job/...)."""

from __future__ import annotations

import tempfile
from collections import defaultdict
from pathlib import Path

import aiohttp
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from sovra.evals.runner import Outcome

__all__ = ["exposition", "push", "write_textfile"]


def exposition(suite: str, outcomes: list[Outcome], timestamp: float) -> bytes:
    registry = CollectorRegistry()
    total = Gauge("promptfoo_test_total", "Tests run in the latest evaluation.", ["suite"], registry=registry)
    failed = Gauge(
        "promptfoo_test_failed",
        "Tests failed (or errored) in the latest evaluation.",
        ["suite"],
        registry=registry,
    )
    rate = Gauge(
        "promptfoo_test_pass_rate",
        "Share of tests passed in the latest evaluation.",
        ["suite"],
        registry=registry,
    )
    by_model = Gauge(
        "sovra_eval_pass_rate", "Share of tests passed, per model.", ["suite", "model"], registry=registry
    )
    score = Gauge(
        "sovra_eval_score",
        "Average score per named metric and model.",
        ["suite", "model", "metric"],
        registry=registry,
    )
    finished = Gauge(
        "sovra_eval_last_run_timestamp_seconds", "When the suite last ran.", ["suite"], registry=registry
    )
    passed = sum(1 for o in outcomes if o.passed)
    total.labels(suite).set(len(outcomes))
    failed.labels(suite).set(len(outcomes) - passed)
    rate.labels(suite).set(passed / len(outcomes) if outcomes else 1.0)
    finished.labels(suite).set(timestamp)
    models: dict[str, list[Outcome]] = defaultdict(list)
    for outcome in outcomes:
        models[outcome.provider.label].append(outcome)
    for model, mine in models.items():
        by_model.labels(suite, model).set(sum(1 for o in mine if o.passed) / len(mine))
        metrics: dict[str, list[float]] = defaultdict(list)
        for outcome in mine:
            for name, value in outcome.named_scores.items():
                metrics[name].append(value)
        for name, values in metrics.items():
            score.labels(suite, model, name).set(sum(values) / len(values))
    return generate_latest(registry)


def write_textfile(path: Path, text: bytes) -> None:
    """Atomically: node-exporter must never read half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".sovra-eval-", delete=False) as temporary:
        temporary.write(text)
    Path(temporary.name).replace(path)


async def push(url: str, text: bytes) -> None:
    timeout = aiohttp.ClientTimeout(total=30)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.post(url, data=text, headers={"content-type": "text/plain; version=0.0.4"}) as response,
    ):
        if response.status >= 300:
            raise OSError(f"pushing metrics to {url}: HTTP {response.status}")
