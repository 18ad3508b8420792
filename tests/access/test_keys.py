"""API keys on real SQLite and PostgreSQL, and what the gateway does with them."""

import time

import pytest

from sovra.access.auth import TokenVerifier
from sovra.access.keys import ApiKey, BudgetPeriod, KeyStore
from sovra.database import Database
from sovra.errors import ConfigError


def test_keys_are_stored_hashed_listed_and_revoked(database: Database) -> None:
    with database.session() as db:
        key, token = KeyStore(db).create(
            "team-a",
            "ci",
            frozenset({"smollm2"}),
            rpm=60,
            tpm=1000,
            budget_tokens=5000,
            budget_period=BudgetPeriod.DAY,
        )
    assert token.startswith(f"sk-sovra-{key.id}-") and token not in key.digest
    with database.session() as db:
        (listed,) = KeyStore(db).all()
        assert listed == key
        raw = db.execute("SELECT * FROM api_keys")
    assert token not in repr(raw)  # only the digest is kept
    verifier = TokenVerifier({})
    with database.session() as db:
        verifier.use_stored_keys(KeyStore(db).all())
    found = verifier.verify({"authorization": f"Bearer {token}"})
    assert (
        found is not None
        and found.tenant == "team-a"
        and found.may_use("smollm2")
        and not found.may_use("other")
    )
    with database.session() as db:
        assert KeyStore(db).revoke(key.id)
        assert not KeyStore(db).revoke(key.id)
        verifier.use_stored_keys(KeyStore(db).all())
        assert [k.revoked_at is not None for k in KeyStore(db).all(include_revoked=True)] == [True]
    assert verifier.verify({"authorization": f"Bearer {token}"}) is None


@pytest.mark.parametrize(
    ("tenant", "options", "reason"),
    [
        ("team a", {}, "use letters, digits"),
        ("t", {"budget_tokens": 10}, "needs both a token count and a period"),
        ("t", {"rpm": 0}, "keys create: rpm: must be at least 1"),
    ],
)
def test_bad_keys_are_refused(database: Database, tenant: str, options: dict[str, int], reason: str) -> None:
    with database.session() as db, pytest.raises(ConfigError, match=reason):
        KeyStore(db).create(tenant, **options)  # type: ignore[arg-type]


def test_budget_periods_start_at_utc_midnight_and_the_first_of_the_month() -> None:
    at = 1795567421.0  # 2026-11-25 03:23:41 UTC
    day = ApiKey("i", "t", "n", "d", budget_tokens=1, budget_period=BudgetPeriod.DAY)
    month = ApiKey("i", "t", "n", "d", budget_tokens=1, budget_period=BudgetPeriod.MONTH)
    assert time.gmtime(day.period_start(at))[:6] == (2026, 11, 25, 0, 0, 0)
    assert time.gmtime(month.period_start(at))[:6] == (2026, 11, 1, 0, 0, 0)
