"""The gateway with its PostgreSQL cut off (a loopback proxy in between is stopped, then started
again): budgets and keys answer 503 with Retry-After, never 500, and recover on their own."""

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import psycopg
import pytest

from sovra.access.app import create_app
from sovra.access.auth import TokenVerifier
from sovra.access.gateway import GatewaySettings
from sovra.access.keys import BudgetPeriod, KeyStore
from sovra.access.ledger import tokens_used
from sovra.access.limits import MemoryLimits
from sovra.database import Database
from sovra.inference.launcher import free_port
from tests.access.test_gateway import CHAT, ScriptedUpstream, replica, served
from tests.conftest import POSTGRES

pytestmark = pytest.mark.anyio


class Cut:
    """A TCP proxy to the local PostgreSQL that can be cut (every connection dropped, new ones refused)."""

    def __init__(self) -> None:
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def cut(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._pipes):
            writer.transport.abort()
        await self._server.wait_closed()
        self._server = None

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", 5432)
        self._pipes |= {writer, upstream_writer}

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.transport.abort()

        await asyncio.gather(pump(reader, upstream_writer), pump(upstream_reader, writer))
        self._pipes -= {writer, upstream_writer}


@pytest.fixture
async def proxy() -> AsyncIterator[Cut]:
    cut = Cut()
    await cut.open()
    yield cut
    await cut.cut()


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    name = f"sovra_outage_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {name}")
    yield name
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        admin.execute(f"DROP SCHEMA {name} CASCADE")


async def test_a_database_outage_is_503s_then_recovery(schema: str, proxy: Cut) -> None:
    database = Database(
        f"postgresql://postgres@127.0.0.1:{proxy.port}/test?options=-csearch_path%3D{schema}&connect_timeout=1"
    )

    def prepare() -> tuple[str, str]:  # in a thread: the proxy runs on this event loop
        database.migrate()
        with database.session() as db:
            _, plain = KeyStore(db).create("team-a")
            _, budget = KeyStore(db).create("team-b", budget_tokens=10_000, budget_period=BudgetPeriod.DAY)
        return plain, budget

    plain, budget = await asyncio.to_thread(prepare)

    async def baseline(key, since):  # type: ignore[no-untyped-def]
        return await asyncio.to_thread(tokens_used, database, key.id, since)

    verifier = TokenVerifier({})
    settings = GatewaySettings(stored_keys_max_stale_seconds=3.0)
    app = create_app(
        {"m": served("m", [replica(1001)])}, verifier, settings, upstream=ScriptedUpstream(),
        database=database, limits=MemoryLimits(baseline),
    )  # fmt: skip

    async def ask(http: httpx.AsyncClient, token: str) -> httpx.Response:
        return await http.post(
            "/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {token}"}
        )

    async with (
        app.lifespan(),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gw") as http,
    ):
        assert (await ask(http, plain)).status_code == 200
        await proxy.cut()
        first_budget = await ask(http, budget)  # its budget has never been read: it cannot be now
        assert (
            first_budget.status_code == 503 and first_budget.json()["error"]["code"] == "limits_unavailable"
        )
        assert first_budget.headers["retry-after"] == "2"
        assert (await ask(http, plain)).status_code == 200  # keys read before the outage still work…
        await asyncio.sleep(3.5)
        stale = await ask(http, plain)  # …for storedKeysMaxStaleSeconds
        assert stale.status_code == 503 and stale.json()["error"]["code"] == "keys_unavailable"
        await proxy.open()
        deadline = time.monotonic() + 15
        while (await ask(http, plain)).status_code != 200:
            assert time.monotonic() < deadline, "the gateway did not recover after the database returned"
            await asyncio.sleep(0.2)
        assert (await ask(http, budget)).status_code == 200


def test_a_postgresql_connection_gives_up_on_a_partition_in_seconds() -> None:
    """A host that stops answering (packets dropped, not refused) must not hold the ledger's writer
    or the key refresh for TCP's retransmission time (minutes): connect, unacknowledged writes and
    idle connections time out in seconds; what the URL says wins."""
    connection = Database(POSTGRES).connect()
    try:
        options = {o.keyword.decode(): (o.val or b"").decode() for o in connection._db.pgconn.info}  # type: ignore[attr-defined]
    finally:
        connection.close()
    assert options["connect_timeout"] == "5" and options["tcp_user_timeout"] == "5000"
    assert options["keepalives_idle"] == "5"
    own = Database(f"{POSTGRES}?connect_timeout=2").connect()
    try:
        assert {o.keyword.decode(): o.val for o in own._db.pgconn.info}["connect_timeout"] == b"2"  # type: ignore[attr-defined]
    finally:
        own.close()
