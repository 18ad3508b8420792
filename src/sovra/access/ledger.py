"""The usage ledger: one row per request, durable before the client sees the end of its answer.

Rows go through a bounded queue to one writer thread that inserts them in batches. With a journal
(`sovra up` always has one), a row is appended to it before the answer ends, which takes
microseconds and survives a SIGKILL; the database is written behind, and a row that does not fit in
the buffer stays in the journal until the next start replays it. Without a journal, an answer waits
for its own row's commit, but never longer than `max_wait`, and a row that does not fit is dropped
(counted and logged, never silently). Either way a slow database never holds answers up for long.

No row can poison the ledger: text fields are cleaned (control characters, NUL and lone surrogates
replaced, lengths bounded) before a row is journaled, and a batch the database refuses while it is
reachable is written row by row, each row it still refuses set aside in `quarantine.jsonl` beside
the journals with its reason — the other rows go on being written. Replay does the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sovra.access.journal import Journal, orphans
from sovra.database import Connection, Database
from sovra.usage import UsageRecord

__all__ = ["INSERT", "UsageLedger", "replay_orphans", "tokens_used"]

log = logging.getLogger("sovra.ledger")


# Idempotent: a row replayed from a journal may already be in the database.
INSERT = (
    "INSERT INTO usage (request_id, at, tenant, key_id, endpoint, requested_model, served_model, "
    "input_tokens, output_tokens, cached_tokens, ttft_ms, duration_ms, status) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (request_id) DO NOTHING"
)
_STOP = object()
JOURNAL_LINGER_SECONDS = 0.02


@dataclass
class _Pending:
    record: UsageRecord
    loop: asyncio.AbstractEventLoop
    committed: asyncio.Future[None] | None  # None: journaled, nobody waits for the commit


class UsageLedger:
    def __init__(
        self,
        database: Database,
        capacity: int = 10_000,
        max_wait: float = 1.0,
        batch: int = 256,
        journal_dir: Path | None = None,
    ) -> None:
        self._database = database
        self._queue: queue.Queue[_Pending | object] = queue.Queue(maxsize=capacity)
        self._max_wait = max_wait
        self._batch = batch
        self._thread = threading.Thread(target=self._write_loop, name="sovra-ledger", daemon=True)
        self._closing = threading.Event()
        self._journal_dir = journal_dir
        self._journal: Journal | None = None
        self._appended = 0  # journaled rows (counted on the event loop)
        self._committed = 0  # journaled rows in the database (counted by the writer)
        self._journal_holds_extra = False  # rows only the journal has: keep it until the next start
        self.dropped = 0

    def start(self) -> None:
        """Replay what dead gateways left in their journals, open ours, start writing (blocking)."""
        if self._journal_dir is not None:
            self._database.migrate()
            replay_orphans(self._database, self._journal_dir)
            self._journal = Journal(self._journal_dir)
        self._thread.start()

    async def record(self, record: UsageRecord) -> bool:
        """Make a row durable: True once it is in the journal or committed to the database."""
        loop = asyncio.get_running_loop()
        record = record.cleaned()
        if self._journal is not None:
            self._journal.append(record.values())
            self._appended += 1
            try:
                self._queue.put_nowait(_Pending(record, loop, None))
            except queue.Full:
                self._journal_holds_extra = True
                log.warning("usage buffer full; row kept in the journal until the next start")
            return True
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
            await asyncio.wait_for(asyncio.shield(pending.committed), self._max_wait)  # type: ignore[arg-type]
        except TimeoutError:
            log.warning(
                "usage row not yet committed; answering anyway", extra={"request_id": record.request_id}
            )
            return False
        return True

    def _journal_caught_up(self) -> None:
        """On the event loop: if every journaled row is committed, empty the journal."""
        if self._journal is not None and self._appended == self._committed and not self._journal_holds_extra:
            self._journal.empty()

    def close(self, timeout: float = 10.0) -> None:
        """Flush what is queued and stop the writer; an unreachable database gets one last try."""
        if self._thread.is_alive():
            self._closing.set()
            self._queue.put(_STOP)
            self._thread.join(timeout)
        if self._journal is not None:
            settled = self._appended == self._committed and not self._journal_holds_extra
            self._journal.close(committed=settled)
            self._journal = None

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
        """More rows for this batch. With a journal nobody waits for the commit, so linger a little to
        batch more rows per commit (fewer commits, less CPU taken from the event loop). The linger is
        a sleep, not a wait on the queue: rows put meanwhile wake no thread (each wake-up would take
        the GIL from the event loop once per request)."""
        if self._journal is not None:
            self._closing.wait(JOURNAL_LINGER_SECONDS)
        items: list[_Pending | object] = []
        while len(items) < limit:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
            if items[-1] is _STOP:
                break
        return items

    def _write(self, connection: Connection | None, rows: Sequence[_Pending]) -> Connection | None:
        """Insert until it works (rows in the buffer are kept), unless the gateway is shutting down."""
        delay = 0.1
        while True:
            try:
                connection = connection or self._database.connect()
                connection.executemany(INSERT, [p.record.values() for p in rows])
                connection.commit()
            except Exception as exc:
                if connection is not None:
                    _close_quietly(connection)
                connection = None
                if _reachable(self._database):  # the database is fine: some row is not
                    connection = self._write_each(rows, str(exc))
                    self._settle(rows)
                    return connection
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
            self._settle(rows)
            return connection

    def _write_each(self, rows: Sequence[_Pending], error: str) -> Connection | None:
        """Row by row, so one row the database refuses cannot hold the others back."""
        log.warning(
            "a usage batch was refused; writing it row by row", extra={"rows": len(rows), "error": error}
        )
        connection, refused = _insert_each(self._database, [p.record.values() for p in rows])
        if refused:
            _quarantine(self._journal_dir, refused)
        return connection

    def _settle(self, rows: Sequence[_Pending]) -> None:
        """Tell the event loop that these rows are committed."""
        journaled = [p for p in rows if p.committed is None]
        self._committed += len(journaled)
        for pending in rows:
            # RuntimeError: that loop has closed (shutdown), so nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                if pending.committed is not None:
                    pending.loop.call_soon_threadsafe(_resolve, pending.committed)
        if journaled:
            with contextlib.suppress(RuntimeError):
                journaled[-1].loop.call_soon_threadsafe(self._journal_caught_up)


def replay_orphans(database: Database, directory: Path) -> int:
    """Put the rows of dead gateways' journals into the database; return how many (blocking). A
    line that is not a row, or that the database refuses, is quarantined; the rest are written."""
    replayed = 0
    for lines in orphans(directory):
        rows: list[tuple[object, ...]] = []
        refused: list[tuple[object, str]] = []
        for line in lines:
            try:
                rows.append(UsageRecord.from_values(line).values())
            except ValueError as exc:
                refused.append((line, str(exc)))
        if rows:
            try:
                with database.session() as db:
                    db.executemany(INSERT, rows)
            except Exception:
                if not _reachable(database):
                    raise  # the journal stays for the next start
                connection, bad = _insert_each(database, rows)
                if connection is not None:
                    connection.close()
                refused += bad
        if refused:
            _quarantine(directory, refused)
        replayed += len(lines) - len(refused)
    if replayed:
        log.info("usage rows replayed from journals", extra={"rows": replayed})
    return replayed


def _insert_each(
    database: Database, rows: Sequence[tuple[object, ...]]
) -> tuple[Connection | None, list[tuple[object, str]]]:
    """Insert rows one transaction each; return the connection and the rows refused, with why."""
    refused: list[tuple[object, str]] = []
    connection: Connection | None = None
    for values in rows:
        try:
            connection = connection or database.connect()
            connection.execute(INSERT, values)
            connection.commit()
        except Exception as exc:
            if connection is not None:
                _close_quietly(connection)
            connection = None
            refused.append((list(values), f"{type(exc).__name__}: {exc}"))
    return connection, refused


def _reachable(database: Database) -> bool:
    try:
        with database.session() as db:
            db.execute("SELECT 1")
    except Exception:
        return False
    return True


def _quarantine(directory: Path | None, refused: Sequence[tuple[object, str]]) -> None:
    """Set rows aside with their reason, for an operator to look at; never in the way of others."""
    log.error("usage rows quarantined", extra={"rows": len(refused), "where": str(directory)})
    if directory is None:
        return
    directory.mkdir(parents=True, exist_ok=True)
    lines = b"".join(
        json.dumps({"at": time.time(), "reason": reason, "row": row}, default=repr).encode() + b"\n"
        for row, reason in refused
    )
    descriptor = os.open(directory / "quarantine.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(descriptor, lines)
    finally:
        os.close(descriptor)


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
