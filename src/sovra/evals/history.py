"""Every run remembered: pass rate per suite and model over time, and regressions — a pass-rate drop
beyond a threshold against the previous run of the same suite, naming the tests that flipped.

Kept in the platform database (SQLite by default, PostgreSQL when configured), beside the ledger.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from sovra.database import Database
from sovra.evals.report import Summary, summarise
from sovra.evals.runner import Outcome
from sovra.evals.suite import Suite

__all__ = ["EvalHistory", "Regression", "RunRecord", "outcome_key", "suite_hash"]

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS eval_runs (
        id TEXT PRIMARY KEY,
        suite TEXT NOT NULL,
        suite_hash TEXT NOT NULL,
        at DOUBLE PRECISION NOT NULL,
        models TEXT NOT NULL,
        total INTEGER NOT NULL,
        passed INTEGER NOT NULL,
        failed INTEGER NOT NULL,
        errors INTEGER NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS eval_runs_suite_at ON eval_runs (suite, at)",
    """CREATE TABLE IF NOT EXISTS eval_results (
        run_id TEXT NOT NULL,
        test_key TEXT NOT NULL,
        model TEXT NOT NULL,
        passed INTEGER NOT NULL,
        score DOUBLE PRECISION NOT NULL,
        named_scores TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS eval_results_run ON eval_results (run_id)",
)


@dataclass(frozen=True)
class RunRecord:
    id: str
    suite: str
    suite_hash: str
    at: float
    models: dict[str, str]  # provider label → "served model@catalog revision"
    summary: Summary

    @property
    def pass_rate(self) -> float:
        return self.summary.pass_rate


@dataclass(frozen=True)
class Regression:
    previous: RunRecord
    current: RunRecord
    flipped: tuple[str, ...]  # tests that passed before and fail now

    @property
    def drop(self) -> float:
        return self.previous.pass_rate - self.current.pass_rate


def suite_hash(suite: Suite) -> str:
    """What the suite asks, canonically: a changed suite is visible in the history."""
    canonical = json.dumps(suite.raw, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def outcome_key(outcome: Outcome) -> str:
    return (
        f"{outcome.test_index}:{outcome.test.description} [{outcome.prompt.label}] @ {outcome.provider.label}"
    )


class EvalHistory:
    def __init__(self, database: Database) -> None:
        self._database = database

    def migrate(self) -> None:
        self._database.migrate()  # the platform's own tables, so one database holds everything
        with self._database.session() as db:
            for statement in _SCHEMA:
                db.execute(statement)

    def record(self, suite: Suite, outcomes: list[Outcome], revisions: Mapping[str, str]) -> RunRecord:
        models = {}
        for outcome in outcomes:
            served = (
                outcome.response.model
                if outcome.response and outcome.response.model
                else outcome.provider.model
            )
            models[outcome.provider.label] = f"{served}@{revisions.get(outcome.provider.model, '-')}"
        run = RunRecord(
            uuid.uuid4().hex[:12],
            suite.description,
            suite_hash(suite),
            time.time(),
            models,
            summarise(outcomes),
        )
        rows = [
            (run.id, outcome_key(o), o.provider.label, int(o.passed), o.score, json.dumps(o.named_scores))
            for o in outcomes
        ]
        with self._database.session() as db:
            db.execute(
                "INSERT INTO eval_runs (id, suite, suite_hash, at, models, total, passed, failed, errors) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run.id,
                    run.suite,
                    run.suite_hash,
                    run.at,
                    json.dumps(models),
                    run.summary.total,
                    run.summary.passed,
                    run.summary.failed,
                    run.summary.errors,
                ),
            )
            db.executemany(
                "INSERT INTO eval_results (run_id, test_key, model, passed, score, named_scores) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
        return run

    def runs(self, suite: str | None = None, limit: int = 20) -> list[RunRecord]:
        where, params = ("WHERE suite = ?", [suite]) if suite else ("", [])
        with self._database.session() as db:
            rows = db.execute(
                f"SELECT id, suite, suite_hash, at, models, total, passed, failed, errors FROM eval_runs "
                f"{where} ORDER BY at DESC LIMIT ?",
                [*params, limit],
            )
        return [
            RunRecord(r[0], r[1], r[2], r[3], json.loads(r[4]), Summary(r[5], r[6], r[7], r[8])) for r in rows
        ]

    def passes(self, run_id: str) -> dict[str, bool]:
        with self._database.session() as db:
            rows = db.execute("SELECT test_key, passed FROM eval_results WHERE run_id = ?", [run_id])
        return {key: bool(passed) for key, passed in rows}

    def model_rates(self, run_id: str) -> dict[str, tuple[int, float]]:
        """Per model of a run: tests and pass rate."""
        with self._database.session() as db:
            rows = db.execute(
                "SELECT model, COUNT(*), SUM(passed) FROM eval_results WHERE run_id = ? GROUP BY model",
                [run_id],
            )
        return {model: (int(count), int(passed or 0) / int(count)) for model, count, passed in rows}

    def regression(self, current: RunRecord, threshold: float) -> Regression | None:
        """The previous run of the same suite, if the pass rate dropped by more than `threshold`."""
        earlier = [r for r in self.runs(current.suite, limit=2) if r.id != current.id]
        if not earlier or earlier[0].pass_rate - current.pass_rate <= threshold:
            return None
        before, now = self.passes(earlier[0].id), self.passes(current.id)
        flipped = tuple(sorted(key for key, passed in now.items() if not passed and before.get(key)))
        return Regression(earlier[0], current, flipped)
