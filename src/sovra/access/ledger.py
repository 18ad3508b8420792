"""The usage ledger: one row per request, committed before the client sees the end of its answer.

Rows go through a bounded queue to one writer thread that inserts them in batches. A response waits
for its own row's commit (so a completed response is in the ledger even if the gateway is SIGKILLed
right after), but never longer than `max_wait`: a slow or unreachable database delays answers by at
most that much, rows wait in the buffer, and only when the buffer is full are rows dropped (counted
and logged, never silently).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Sequence
from dataclasses import astuple, dataclass

from sovra.access.database import Connection, Database

__all__ = ["UsageLedger", "UsageRecord", "tokens_used"]

log = logging.getLogger("sovra.ledger")


@dataclass(frozen=True)
class UsageRecord:
    request_id: str
    at: float  # wall-clock time the request arrived (Unix seconds)
    tenant: str
    key_id: str
    endpoint: str
    requested_model: str
    served_model: str
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    ttft_ms: float | None
    duration_ms: float
    status: int


_INSERT = (
    "INSERT INTO usage (request_id, at, tenant, key_id, endpoint, requested_model, served_model, "
    "input_tokens, output_tokens, cached_tokens, ttft_ms, duration_ms, status) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_STOP = object()


@dataclass
class _Pending:
    record: UsageRecord
    loop: asyncio.AbstractEventLoop
    committed: asyncio.Future[None]


class UsageLedger:
    def __init__(
        self, database: Database, capacity: int = 10_000, max_wait: float = 1.0, batch: int = 256
    ) -> None:
        self._database = database
        self._queue: queue.Queue[_Pending | object] = queue.Queue(maxsize=capacity)
        self._max_wait = max_wait
        self._batch = batch
        self._thread = threading.Thread(target=self._write_loop, name="sovra-ledger", daemon=True)
        self._closing = threading.Event()
        self.dropped = 0

    def start(self) -> None:
        self._thread.start()

    async def record(self, record: UsageRecord) -> bool:
        """Queue a row and wait (bounded) until it is committed; True when it is."""
        loop = asyncio.get_running_loop()
        pending = _Pending(record, loop, loop.create_future())
        try:
            self._queue.put_nowait(pending)
        except queue.Full:
            self.dropped += 1
            log.error(
                "usage buffer full; row dropped", extra={"dropped_total": self.dropped, "key": record.key_id}
            )
            return False
        try:
            await asyncio.wait_for(asyncio.shield(pending.committed), self._max_wait)
        except TimeoutError:
            log.warning(
                "usage row not yet committed; answering anyway", extra={"request_id": record.request_id}
            )
            return False
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Flush what is queued and stop the writer; an unreachable database gets one last try."""
        if self._thread.is_alive():
            self._closing.set()
            self._queue.put(_STOP)
            self._thread.join(timeout)

    def _write_loop(self) -> None:
        connection: Connection | None = None
        while True:
            first = self._queue.get()
            if first is _STOP:
                break
            batch = [first, *self._drain(self._batch - 1)]
            stop = _STOP in batch
            rows = [item for item in batch if isinstance(item, _Pending)]
            connection = self._write(connection, rows)
            if stop:
                break
        if connection is not None:
            connection.close()

    def _drain(self, limit: int) -> list[_Pending | object]:
        items: list[_Pending | object] = []
        while len(items) < limit:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return items

    def _write(self, connection: Connection | None, rows: Sequence[_Pending]) -> Connection | None:
        """Insert until it works (rows in the buffer are kept), unless the gateway is shutting down."""
        delay = 0.1
        while True:
            try:
                connection = connection or self._database.connect()
                connection.executemany(_INSERT, [astuple(p.record) for p in rows])
                connection.commit()
            except Exception as exc:
                if connection is not None:
                    _close_quietly(connection)
                connection = None
                if self._closing.is_set():
                    log.error("database unreachable at shutdown; usage rows lost", extra={"rows": len(rows)})
                    self.dropped += len(rows)
                    return None
                log.warning(
                    "usage rows not written; retrying",
                    extra={"rows": len(rows), "in_s": delay, "error": str(exc)},
                )
                self._closing.wait(delay)
                delay = min(delay * 2, 5.0)
                continue
            for pending in rows:
                # RuntimeError: that loop has closed (shutdown), so nobody is waiting any more.
                with contextlib.suppress(RuntimeError):
                    pending.loop.call_soon_threadsafe(_resolve, pending.committed)
            return connection


def tokens_used(database: Database, key_id: str, since: float) -> int:
    """Input + output tokens the ledger holds for a key since a time (blocking: run in a thread)."""
    with database.session() as db:
        ((total,),) = db.execute(
            "SELECT COALESCE(SUM(input_tokens + output_tokens), 0) FROM usage WHERE key_id = ? AND at >= ?",
            (key_id, since),
        )
    return int(total)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _close_quietly(connection: Connection) -> None:
    try:
        connection.close()
    except Exception:
        log.debug("closing a broken database connection failed", exc_info=True)
