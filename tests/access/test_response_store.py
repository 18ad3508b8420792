"""Stored responses in the real databases (SQLite and PostgreSQL): per tenant, retention, delete."""

import time

import pytest

from sovra.access.response_store import DatabaseResponses, MemoryResponses, StoredResponse
from sovra.database import Database

pytestmark = pytest.mark.anyio


def stored(response_id: str, tenant: str = "team-a", age: float = 0.0) -> StoredResponse:
    items = [{"id": "msg_1", "type": "message", "role": "user", "content": "é ✓"}]
    return StoredResponse(response_id, tenant, time.time() - age, items, {"id": response_id, "output": []})


@pytest.mark.parametrize("database", ["sqlite", "postgres"], indirect=True)
async def test_a_response_is_kept_for_its_tenant_only(database: Database) -> None:
    store = DatabaseResponses(database, retention_seconds=3600)
    await store.save(stored("resp_1"))
    found = await store.get("team-a", "resp_1")
    assert found is not None and found.input_items[0]["content"] == "é ✓" and found.response["id"] == "resp_1"
    assert await store.get("team-b", "resp_1") is None
    assert not await store.delete("team-b", "resp_1")
    assert await store.delete("team-a", "resp_1") and await store.get("team-a", "resp_1") is None


@pytest.mark.parametrize("database", ["sqlite", "postgres"], indirect=True)
async def test_responses_past_their_retention_are_gone(database: Database) -> None:
    store = DatabaseResponses(database, retention_seconds=60)
    await store.save(stored("resp_old", age=120))  # the first write also removes what has expired
    with database.session() as db:
        assert db.execute("SELECT id FROM responses") == []
        db.execute(
            "INSERT INTO responses (id, tenant, created_at, input_items, response) VALUES (?, ?, ?, ?, ?)",
            ("resp_stale", "team-a", time.time() - 120, "[]", "{}"),
        )
    assert await store.get("team-a", "resp_stale") is None  # expired, though not yet removed


async def test_memory_keeps_a_bounded_number() -> None:
    store = MemoryResponses(retention_seconds=60, limit=2)
    for n in range(3):
        await store.save(stored(f"resp_{n}"))
    assert await store.get("team-a", "resp_0") is None and await store.get("team-a", "resp_2") is not None
    await store.save(stored("resp_old", age=120))
    assert await store.get("team-a", "resp_old") is None
