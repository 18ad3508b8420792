"""The usage ledger on real SQLite and PostgreSQL, and `sovra usage` over it."""

import asyncio
import stat
import time
from dataclasses import astuple
from pathlib import Path

import pytest

from sovra.access.journal import Journal, journal_directory
from sovra.access.ledger import INSERT, UsageLedger, replay_orphans
from sovra.cli.usage import parse_since, usage_report
from sovra.database import Database
from sovra.usage import UsageRecord

pytestmark = pytest.mark.anyio


def row(
    n: int, tenant: str = "team-a", model: str = "smollm2", status: int = 200, at: float | None = None
) -> UsageRecord:
    return UsageRecord(
        f"req-{n}", at or time.time(), tenant, f"key-{tenant}", "/v1/chat/completions", model, model,
        10 + n, 5, 1, 12.5, 100.0, status,
    )  # fmt: skip


async def test_rows_are_committed_before_record_returns(database: Database) -> None:
    ledger = UsageLedger(database)
    ledger.start()
    try:
        assert all(await asyncio.gather(*(ledger.record(row(n)) for n in range(50))))
        with database.session() as db:  # another connection sees them at once: committed
            assert db.execute("SELECT COUNT(*), SUM(input_tokens) FROM usage")[0] == (
                50,
                sum(10 + n for n in range(50)),
            )
    finally:
        ledger.close()


async def test_an_unreachable_database_delays_answers_by_at_most_max_wait() -> None:
    ledger = UsageLedger(Database("postgresql://postgres@127.0.0.1:1/none"), capacity=2, max_wait=0.2)
    ledger.start()
    started = time.monotonic()
    assert await ledger.record(row(1)) is False
    assert time.monotonic() - started < 1.0
    assert await ledger.record(row(2)) is False  # waits in the buffer for the database
    await ledger.record(row(3))
    assert await ledger.record(row(4)) is False and ledger.dropped >= 1  # full: counted, not silent
    started = time.monotonic()
    ledger.close(timeout=5)
    assert time.monotonic() - started < 2  # shutdown does not hang on a dead database
    assert ledger.dropped >= 3


async def test_usage_report_groups_and_filters(database: Database) -> None:
    ledger = UsageLedger(database)
    ledger.start()
    old = time.time() - 3 * 86400
    for record in (row(1), row(2, status=502), row(3, tenant="team-b", model="qwen"), row(4, at=old)):
        await ledger.record(record)
    ledger.close()
    by_tenant = usage_report(database, "tenant", parse_since("24h", time.time()))
    assert by_tenant[0][:3] == ("TENANT", "REQUESTS", "ERRORS")
    assert by_tenant[1][:6] == ("team-a", "2", "1", "23", "10", "2")  # the 3-day-old row is out
    assert by_tenant[2][:2] == ("team-b", "1")
    by_model = usage_report(database, "model", parse_since("7d", time.time()))
    assert {r[0]: r[1] for r in by_model[1:]} == {"smollm2": "3", "qwen": "1"}


def test_since_accepts_durations_and_dates() -> None:
    now = 1_800_000_000.0
    assert parse_since("30m", now) == now - 1800
    assert parse_since("7d", now) == now - 7 * 86400
    assert time.gmtime(parse_since("2026-11-01", now))[:3] == (2026, 11, 1)


async def test_with_a_journal_rows_are_durable_at_once_and_the_journal_empties(
    database: Database, tmp_path: Path
) -> None:
    ledger = UsageLedger(database, journal_dir=tmp_path / "journal")
    ledger.start()
    (journal,) = (tmp_path / "journal").glob("*.jsonl")
    assert await ledger.record(row(1)) is True
    assert journal.read_bytes().count(b"\n") in (0, 1)  # written (and perhaps already committed)
    for _ in range(100):  # the writer catches up and the journal is emptied on the loop
        await asyncio.sleep(0.01)
        if journal.stat().st_size == 0:
            break
    assert journal.stat().st_size == 0
    ledger.close()
    assert not journal.exists()  # everything committed: nothing to keep
    with database.session() as db:
        assert db.execute("SELECT request_id FROM usage") == [("req-1",)]


async def test_journals_of_dead_gateways_are_replayed_once(database: Database, tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    dead = Journal(directory)
    for n in (1, 2):
        dead.append(astuple(row(n)))
    dead.close(committed=False)  # the gateway died: its rows are only in the journal
    with dead.path.open("ab") as handle:
        handle.write(b'["req-3", 17000')  # the last line, cut by the kill
    alive = Journal(directory)  # another gateway, still running: its journal is not touched
    alive.append(astuple(row(9)))
    with database.session() as db:
        db.executemany(INSERT, [astuple(row(1))])  # row 1 had been committed before the kill
    assert replay_orphans(database, directory) == 2
    with database.session() as db:
        assert sorted(r[0] for r in db.execute("SELECT request_id FROM usage")) == ["req-1", "req-2"]
    assert not dead.path.exists() and alive.path.exists()
    assert replay_orphans(database, directory) == 0
    alive.close(committed=True)


POISON = ["\ud800", "smollm2\x00", "x" * 5_000_000]  # a lone surrogate, a NUL (PostgreSQL), 5 MB


async def test_a_row_that_cannot_be_stored_verbatim_poisons_nothing(
    database: Database, tmp_path: Path
) -> None:
    ledger = UsageLedger(database, journal_dir=tmp_path / "journal")
    ledger.start()
    try:
        for n, model in enumerate(POISON):
            assert await ledger.record(row(n, model=model, status=404)) is True
        for n in range(10, 20):
            assert await ledger.record(row(n)) is True
    finally:
        ledger.close()
    assert ledger.dropped == 0
    with database.session() as db:
        stored = db.execute("SELECT request_id, requested_model FROM usage ORDER BY request_id")
    assert len(stored) == 13  # every row, the good ones after the bad ones included
    models = {request: model for request, model in stored}
    assert models["req-0"] == "?" and models["req-1"] == "smollm2?"  # stored cleaned, not verbatim
    assert len(models["req-2"]) <= 256
    assert not list((tmp_path / "journal").glob("*.jsonl"))  # nothing left waiting


async def test_a_journal_with_poisoned_rows_replays_the_rest_and_quarantines_what_cannot_be_read(
    database: Database, tmp_path: Path
) -> None:
    directory = tmp_path / "journal"
    dead = Journal(directory)
    dead.append(astuple(row(1, model="\ud800")))  # what an older gateway journaled verbatim
    dead.append(["req-2", "not a time", "t", "k", "/v1/x", "m", "m", 1, 1, 0, None, 1.0, 200])
    dead.append(astuple(row(3)))
    dead.close(committed=False)
    assert replay_orphans(database, directory) == 2  # neither raises nor blocks the good row
    with database.session() as db:
        assert sorted(r[0] for r in db.execute("SELECT request_id FROM usage")) == ["req-1", "req-3"]
    quarantined = (directory / "quarantine.jsonl").read_text().splitlines()
    assert len(quarantined) == 1 and '"req-2"' in quarantined[0] and "reason" in quarantined[0]
    assert not dead.path.exists()


def test_the_same_database_spelt_differently_shares_its_journals(tmp_path: Path) -> None:
    home = tmp_path / "home"
    spellings = [
        "postgresql://postgres@127.0.0.1:5432/test",
        "postgres://postgres@127.0.0.1/test",
        "postgresql://postgres:secret@127.0.0.1/test?connect_timeout=5",
    ]
    assert len({journal_directory(home, url) for url in spellings}) == 1
    assert journal_directory(home, spellings[0]) != journal_directory(
        home, "postgresql://postgres@127.0.0.1/other"
    )
    relative = f"sqlite:///{tmp_path}/./a/../sovra.db"
    assert journal_directory(home, relative) == journal_directory(home, f"sqlite:///{tmp_path}/sovra.db")


def test_the_sqlite_ledger_is_private(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'sovra.db'}")
    database.migrate()
    for path in tmp_path.glob("sovra.db*"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_an_older_world_readable_sqlite_ledger_is_narrowed_at_migration(tmp_path: Path) -> None:
    path = tmp_path / "sovra.db"
    path.touch(mode=0o644)
    path.chmod(0o644)
    Database(f"sqlite:///{path}").migrate()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
