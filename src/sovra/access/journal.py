"""The ledger's write-ahead journal: a usage row is on disk before the answer ends, in microseconds.

Each gateway appends its rows, one JSON line each, to a journal file of its own that it holds an
exclusive `flock` on. An append is one `os.write` into the page cache: it survives the gateway being
SIGKILLed (not a power loss — as SQLite's `synchronous=NORMAL`), without waiting for the database.
Once every appended row is committed the file is emptied. Journals whose owner is gone (their lock
is free) are handed back by `orphans` for the ledger to replay, and deleted once replayed.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = ["Journal", "journal_directory", "orphans"]


def journal_directory(home: Path, database_url: str) -> Path:
    """One directory per database, so a journal is only ever replayed into its own database: next
    to a SQLite file, else under `home`."""
    if database_url.startswith("sqlite:///"):
        database = Path(database_url.removeprefix("sqlite:///")).expanduser().resolve()
        return database.with_name(database.name + ".journal")
    return home / "ledger-journal" / hashlib.sha256(_server_identity(database_url).encode()).hexdigest()[:16]


def _server_identity(url: str) -> str:
    """The same PostgreSQL database however its URL is spelt (scheme, parameter order, default port,
    password): host, port, database, user and search path."""
    from psycopg.conninfo import conninfo_to_dict  # only needed with PostgreSQL

    try:
        params = conninfo_to_dict(url)
    except Exception:  # a URL psycopg cannot read cannot be connected to either: keep it as it is
        return url
    keys = ("host", "port", "dbname", "user", "options")
    defaults = {"port": "5432", "host": "localhost"}
    return "|".join(f"{k}={params.get(k) or defaults.get(k, '')}" for k in keys)


class Journal:
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{uuid.uuid4().hex}.jsonl"
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # ours while this process lives

    def append(self, values: Sequence[object]) -> None:
        os.write(self._fd, json.dumps(list(values)).encode() + b"\n")

    def empty(self) -> None:
        """Every appended row is committed: start the file afresh (O_APPEND writes go to the end)."""
        os.ftruncate(self._fd, 0)

    def close(self, committed: bool) -> None:
        """Release the journal; delete it when nothing in it still waits for the database."""
        if committed:
            self.path.unlink(missing_ok=True)
        os.close(self._fd)


def orphans(directory: Path) -> Iterator[list[list[object]]]:
    """The rows of each journal whose gateway is gone. A journal is deleted once the caller has
    taken its rows (asked for the next one); if the caller fails, it stays for next time."""
    if not directory.is_dir():
        return
    for path in sorted(directory.glob("*.jsonl")):
        fd = os.open(path, os.O_RDONLY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live gateway's journal
            yield _rows(path.read_bytes())
            path.unlink()
        finally:
            os.close(fd)


def _rows(data: bytes) -> list[list[object]]:
    rows = []
    for line in data.splitlines():
        try:
            values = json.loads(line)
        except ValueError:
            continue  # the last line of a journal whose writer died mid-write
        if isinstance(values, list):
            rows.append(values)
    return rows
