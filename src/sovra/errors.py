"""Sovra's errors, one hierarchy, translated to HTTP or CLI output at the edges.

SovraError
 ├── ConfigError        a declaration or the platform config is invalid (file, field, reason)
 ├── StoreError         weights could not be fetched into the store
 │    └── IntegrityError   fetched bytes do not match their recorded hash
 ├── EngineError        an engine could not be obtained or started
 ├── ApiError           (access.errors) an answer the gateway gives itself: status, message, code
 ├── LimitsUnavailable  (access.limits) a key's limits cannot be checked now: 503, not 500
 └── EvalError          (evals.errors) a test cannot run as written: template, transform, grader
      └── TransportError  an evaluation request got no answer: worth retrying

Foreign errors (sqlite3, psycopg, aiohttp, redis, OSError) are translated once, where they cross
into Sovra: the ledger, the limits, the upstream client, the store.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ConfigError", "EngineError", "IntegrityError", "Problem", "SovraError", "StoreError"]


class SovraError(Exception):
    """Base class of every error Sovra raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one field of one file."""

    file: str
    field: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.field}" if self.field else self.file
        return f"{where}: {self.reason}"


class ConfigError(SovraError):
    """Invalid configuration; carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class StoreError(SovraError):
    """Weights could not be made available in the store."""


class IntegrityError(StoreError):
    """Fetched bytes do not match the hash their source recorded."""


class EngineError(SovraError):
    """An engine binary could not be obtained, or an engine could not be started."""
