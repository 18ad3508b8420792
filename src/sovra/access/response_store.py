"""Stored responses (the Responses API's state): the one owner of the `responses` table.

A response is kept, per tenant, when its request did not say `store: false`: the conversation's
input items up to it and the response object itself. `previous_response_id` continues from one;
`GET`/`DELETE /v1/responses/{id}` read and remove one. Only the tenant that made a response can see
it: another tenant's id reads as not found, so ids cannot be probed. Rows older than the retention
are removed as new ones are written. Blocking database calls run in worker threads.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sovra.database import Database

__all__ = ["DatabaseResponses", "MemoryResponses", "ResponseStore", "StoredResponse"]


@dataclass(frozen=True)
class StoredResponse:
    id: str
    tenant: str
    created_at: float
    input_items: Sequence[dict[str, Any]]  # the whole conversation's input up to this response
    response: dict[str, Any]  # the response object, as the client got it


class ResponseStore(Protocol):
    async def save(self, stored: StoredResponse) -> None: ...

    async def get(self, tenant: str, response_id: str) -> StoredResponse | None: ...

    async def delete(self, tenant: str, response_id: str) -> bool: ...


class MemoryResponses:
    """In memory: for tests, and for a gateway without a database."""

    def __init__(self, retention_seconds: float = 30 * 86400, limit: int = 10_000) -> None:
        self._rows: dict[str, StoredResponse] = {}
        self._retention = retention_seconds
        self._limit = limit

    async def save(self, stored: StoredResponse) -> None:
        if len(self._rows) >= self._limit:  # the oldest goes first (dicts keep insertion order)
            del self._rows[next(iter(self._rows))]
        self._rows[stored.id] = stored

    async def get(self, tenant: str, response_id: str) -> StoredResponse | None:
        stored = self._rows.get(response_id)
        if stored is None or stored.tenant != tenant or stored.created_at < time.time() - self._retention:
            return None
        return stored

    async def delete(self, tenant: str, response_id: str) -> bool:
        if await self.get(tenant, response_id) is None:
            return False
        del self._rows[response_id]
        return True


class DatabaseResponses:
    """In the platform database (SQLite or PostgreSQL), beside keys and usage."""

    PURGE_EVERY = 100  # writes between removals of expired rows

    def __init__(self, database: Database, retention_seconds: float) -> None:
        self._database = database
        self._retention = retention_seconds
        self._writes = 0

    async def save(self, stored: StoredResponse) -> None:
        self._writes += 1
        purge = self._writes % self.PURGE_EVERY == 1
        await asyncio.to_thread(self._save, stored, purge)

    def _save(self, stored: StoredResponse, purge: bool) -> None:
        row = (
            stored.id,
            stored.tenant,
            stored.created_at,
            json.dumps(stored.input_items),
            json.dumps(stored.response),
        )
        with self._database.session() as db:
            db.execute(
                "INSERT INTO responses (id, tenant, created_at, input_items, response)"
                " VALUES (?, ?, ?, ?, ?)",
                row,
            )
            if purge:
                db.execute("DELETE FROM responses WHERE created_at < ?", (time.time() - self._retention,))

    async def get(self, tenant: str, response_id: str) -> StoredResponse | None:
        return await asyncio.to_thread(self._get, tenant, response_id)

    def _get(self, tenant: str, response_id: str) -> StoredResponse | None:
        with self._database.session() as db:
            rows = db.execute(
                "SELECT created_at, input_items, response FROM responses"
                " WHERE id = ? AND tenant = ? AND created_at >= ?",
                (response_id, tenant, time.time() - self._retention),
            )
        if not rows:
            return None
        created_at, items, response = rows[0]
        return StoredResponse(response_id, tenant, float(created_at), json.loads(items), json.loads(response))

    async def delete(self, tenant: str, response_id: str) -> bool:
        return await asyncio.to_thread(self._delete, tenant, response_id)

    def _delete(self, tenant: str, response_id: str) -> bool:
        with self._database.session() as db:
            found = db.execute("SELECT 1 FROM responses WHERE id = ? AND tenant = ?", (response_id, tenant))
            if found:
                db.execute("DELETE FROM responses WHERE id = ? AND tenant = ?", (response_id, tenant))
        return bool(found)
