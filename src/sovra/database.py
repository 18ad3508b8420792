"""The gateway's database: API keys, the usage ledger and stored responses, in SQLite (default) or
PostgreSQL.

One schema, written in the SQL both understand. Connections are blocking (sqlite3, psycopg) and
are only ever used from worker threads, never on the event loop. SQLite runs in WAL mode so readers
(`sovra usage`, `sovra keys list`) never block the gateway's writes.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from sovra.errors import ConfigError, Problem

__all__ = ["Connection", "Database"]

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS api_keys (
        id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        name TEXT NOT NULL,
        digest TEXT NOT NULL UNIQUE,
        models TEXT,
        rpm INTEGER,
        tpm INTEGER,
        budget_tokens BIGINT,
        budget_period TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        revoked_at DOUBLE PRECISION
    )""",
    """CREATE TABLE IF NOT EXISTS usage (
        id {serial},
        request_id TEXT NOT NULL,
        at DOUBLE PRECISION NOT NULL,
        tenant TEXT NOT NULL,
        key_id TEXT NOT NULL,
        endpoint TEXT NOT NULL,
        requested_model TEXT NOT NULL,
        served_model TEXT NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cached_tokens INTEGER NOT NULL,
        ttft_ms DOUBLE PRECISION,
        duration_ms DOUBLE PRECISION NOT NULL,
        status INTEGER NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS usage_at ON usage (at)",
    "CREATE INDEX IF NOT EXISTS usage_key_at ON usage (key_id, at)",
    "CREATE UNIQUE INDEX IF NOT EXISTS usage_request_id ON usage (request_id)",
    """CREATE TABLE IF NOT EXISTS responses (
        id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        input_items TEXT NOT NULL,
        response TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS responses_created_at ON responses (created_at)",
)


class Connection(Protocol):
    """The few DB-API calls Sovra makes; `?` placeholders on both databases."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    def commit(self) -> None: ...

    def close(self) -> None: ...


class _Sqlite:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        _create_private(path)
        self._db = sqlite3.connect(path, timeout=30, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL: a commit survives the process being killed (the WAL is in the OS); only a power
        # loss can drop the last transactions.
        self._db.execute("PRAGMA synchronous=NORMAL")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._db.execute(sql, params).fetchall()

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._db.executemany(sql, rows)

    def commit(self) -> None:
        self._db.commit()

    def close(self) -> None:
        self._db.close()


def _create_private(path: Path) -> None:
    """Keys' digests and everyone's usage are private, like the journal and the token: a new file is
    made 0600 (SQLite gives its -wal and -shm files the database's mode). Never open and close an
    existing database file here: closing any descriptor of it drops every POSIX lock this process
    holds on it, under SQLite's feet (a "disk I/O error")."""
    if not path.exists():
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _narrow(path: Path) -> None:
    """A database an older Sovra made 0644 (and its -wal, -shm) becomes 0600; once, at migration."""
    for each in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if each.exists() and each.stat().st_mode & 0o077:
            each.chmod(0o600)


# What a connection does when the database's host stops answering (a partition, not a refusal):
# give up on a connect or on unacknowledged writes after a few seconds, so that the ledger's writer
# reconnects soon after the network comes back instead of waiting out TCP's retransmissions
# (minutes). The URL's own settings win.
_PARTITION_DEFAULTS = {"connect_timeout": "5", "tcp_user_timeout": "5000", "keepalives_idle": "5",
                       "keepalives_interval": "2", "keepalives_count": "2"}  # fmt: skip


class _Postgres:
    def __init__(self, url: str) -> None:
        import psycopg  # only needed when configured
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        given = conninfo_to_dict(url)
        extra = {k: v for k, v in _PARTITION_DEFAULTS.items() if k not in given}
        self._db = psycopg.connect(make_conninfo(url, **extra))

    @staticmethod
    def _sql(sql: str) -> str:
        return sql.replace("%", "%%").replace("?", "%s")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cursor = self._db.execute(self._sql(sql), params)
        return cursor.fetchall() if cursor.description else []

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._db.cursor() as cursor:
            cursor.executemany(self._sql(sql), rows)

    def commit(self) -> None:
        self._db.commit()

    def close(self) -> None:
        self._db.close()


class Database:
    """Where keys and usage live: `sqlite:///path` or `postgresql://…`."""

    def __init__(self, url: str) -> None:
        if not url.startswith(("sqlite:///", "postgresql://", "postgres://")):
            reason = f"{url!r}: expected sqlite:///path or postgresql://…"
            raise ConfigError([Problem("sovra.yaml", "database.url", reason)])
        self.url = url

    @property
    def is_postgres(self) -> bool:
        return not self.url.startswith("sqlite:///")

    def connect(self) -> Connection:
        if self.is_postgres:
            return _Postgres(self.url)
        return _Sqlite(self._sqlite_path)

    @property
    def _sqlite_path(self) -> Path:
        return Path(self.url.removeprefix("sqlite:///")).expanduser()

    @contextmanager
    def session(self) -> Iterator[Connection]:
        """A connection for one unit of work (CLI commands, refreshes); committed on success."""
        connection = self.connect()
        try:
            yield connection
            connection.commit()
        finally:
            connection.close()

    def migrate(self) -> None:
        if not self.is_postgres:
            _narrow(self._sqlite_path)
        serial = "BIGSERIAL PRIMARY KEY" if self.is_postgres else "INTEGER PRIMARY KEY"
        with self.session() as db:
            for statement in _SCHEMA:
                db.execute(statement.format(serial=serial))
