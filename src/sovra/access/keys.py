"""API keys: each bound to a tenant, with allowed models, rate limits and a token budget.

A key is shown once, when it is created; the database keeps its SHA-256 only. Keys look like
`sk-sovra-<id>-<secret>`; the id is what `sovra keys list` shows and `revoke` takes.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum

from sovra.database import Connection
from sovra.errors import ConfigError, Problem
from sovra.usage import TENANT

__all__ = ["ApiKey", "BudgetPeriod", "KeyStore", "new_key"]


class BudgetPeriod(StrEnum):
    DAY = "day"
    MONTH = "month"


@dataclass(frozen=True)
class ApiKey:
    id: str
    tenant: str
    name: str
    digest: str
    models: frozenset[str] | None = None  # None: every model
    rpm: int | None = None  # requests per minute
    tpm: int | None = None  # tokens (input + output) per minute
    budget_tokens: int | None = None
    budget_period: BudgetPeriod | None = None
    created_at: float = 0.0
    revoked_at: float | None = None

    @property
    def limited(self) -> bool:
        """Whether any limit applies, so each request reserves what it may cost."""
        return bool(self.rpm or self.tpm or self.budget_tokens)

    def may_use(self, model: str) -> bool:
        return self.models is None or model in self.models

    def period_start(self, now: float) -> float:
        """Start of the current budget period (UTC)."""
        moment = time.gmtime(now)
        day = 1 if self.budget_period is BudgetPeriod.MONTH else moment.tm_mday
        return float(calendar.timegm((moment.tm_year, moment.tm_mon, day, 0, 0, 0)))


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """A fresh (id, token)."""
    key_id = secrets.token_hex(4)
    return key_id, f"sk-sovra-{key_id}-{secrets.token_urlsafe(24)}"


_COLUMNS = "id, tenant, name, digest, models, rpm, tpm, budget_tokens, budget_period, created_at, revoked_at"


def _from_row(row: tuple[object, ...]) -> ApiKey:
    key_id, tenant, name, key_digest, models, rpm, tpm, budget, period, created, revoked = row
    return ApiKey(
        id=str(key_id),
        tenant=str(tenant),
        name=str(name),
        digest=str(key_digest),
        models=frozenset(json.loads(str(models))) if models is not None else None,
        rpm=int(str(rpm)) if rpm is not None else None,
        tpm=int(str(tpm)) if tpm is not None else None,
        budget_tokens=int(str(budget)) if budget is not None else None,
        budget_period=BudgetPeriod(str(period)) if period is not None else None,
        created_at=float(str(created)),
        revoked_at=float(str(revoked)) if revoked is not None else None,
    )


class KeyStore:
    """Key operations on one connection; the caller owns the transaction."""

    def __init__(self, db: Connection) -> None:
        self._db = db

    def create(
        self,
        tenant: str,
        name: str = "",
        models: frozenset[str] | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        budget_tokens: int | None = None,
        budget_period: BudgetPeriod | None = None,
    ) -> tuple[ApiKey, str]:
        """Store a new key; return it with its token (the only time the token exists in clear)."""
        problems = []
        if not TENANT.match(tenant):
            reason = f"{tenant!r}: use letters, digits, '.', '_' or '-' (at most 63)"
            problems.append(Problem("keys create", "tenant", reason))
        if (budget_tokens is None) != (budget_period is None):
            problems.append(
                Problem("keys create", "budget", "a budget needs both a token count and a period")
            )
        for label, value in (("rpm", rpm), ("tpm", tpm), ("budget", budget_tokens)):
            if value is not None and value < 1:
                problems.append(Problem("keys create", label, "must be at least 1"))
        if problems:
            raise ConfigError(problems)
        key_id, token = new_key()
        key = ApiKey(
            key_id, tenant, name or tenant, digest(token),
            models, rpm, tpm, budget_tokens, budget_period, time.time(),
        )  # fmt: skip
        self._db.execute(
            f"INSERT INTO api_keys ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key.id, key.tenant, key.name, key.digest,
                json.dumps(sorted(models)) if models is not None else None,
                rpm, tpm, budget_tokens, budget_period.value if budget_period else None, key.created_at, None,
            ),
        )  # fmt: skip
        return key, token

    def all(self, include_revoked: bool = False) -> list[ApiKey]:
        where = "" if include_revoked else " WHERE revoked_at IS NULL"
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM api_keys{where} ORDER BY created_at")
        return [_from_row(row) for row in rows]

    def revoke(self, key_id: str) -> bool:
        """Revoke a key; False when no active key has that id."""
        found = self._db.execute("SELECT id FROM api_keys WHERE id = ? AND revoked_at IS NULL", (key_id,))
        if not found:
            return False
        self._db.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ?", (time.time(), key_id))
        return True
