"""Limits and keys while their stores are down: enforced locally or refused with 503, never a 500 or
a lost row. A Redis of the test's own, on another port, is stopped and started again."""

import asyncio
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest

from sovra.access.app import create_app
from sovra.access.auth import TokenVerifier
from sovra.access.gateway import GatewaySettings
from sovra.access.keys import ApiKey
from sovra.access.limits import LimitsUnavailable, MemoryLimits, RedisLimits
from sovra.inference.launcher import free_port
from tests.access.test_gateway import CHAT, Ledger, ScriptedUpstream, replica, served

pytestmark = pytest.mark.anyio
KEY = ApiKey("k-rpm", "team", "ci", TokenVerifier.digest("sk-rpm"), rpm=3)
NOW = 1_800_000_000.0


class OwnRedis:
    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while (
            subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True).stdout
            != b"PONG\n"
        ):
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@pytest.fixture
def redis() -> Iterator[OwnRedis]:
    server = OwnRedis()
    server.start()
    yield server
    server.stop()


async def test_local_mode_keeps_enforcing_limits_while_redis_is_down_and_returns_to_it(
    redis: OwnRedis,
) -> None:
    limits = RedisLimits(redis.url, when_down="local", prefix=f"t{redis.port}")
    try:
        assert [(await limits.admit(KEY, 10, NOW)).allowed for _ in range(2)] == [True, True]
        redis.stop()
        started = time.monotonic()
        during = [await limits.admit(KEY, 10, NOW + 1) for _ in range(4)]
        assert time.monotonic() - started < 2  # one 0.5 s timeout, then Redis is left alone
        # The same limits, counted here meanwhile, from where the shared bucket was: two of the three
        # requests a minute were already used through Redis, so one more (not a fresh three).
        assert [a.allowed for a in during] == [True, False, False, False] and all(a.local for a in during)
        assert during[-1].limit == "rpm"
        await limits.settle(KEY, 10, 4, NOW + 1, local=True)
        await limits.settle(KEY, 10, 4, NOW + 1)  # a shared reservation with Redis gone: no error
        redis.start()
        await asyncio.sleep(2.1)
        back = await limits.admit(KEY, 10, NOW + 2)
        assert not back.local  # shared again: Redis still holds the two earlier requests
    finally:
        await limits.aclose()


async def test_refuse_mode_says_so(redis: OwnRedis) -> None:
    limits = RedisLimits(redis.url, when_down="refuse", prefix=f"t{redis.port}")
    try:
        redis.stop()
        with pytest.raises(LimitsUnavailable):
            await limits.admit(KEY, 10, NOW)
    finally:
        await limits.aclose()


@pytest.mark.parametrize(("mode", "status"), [("local", 200), ("refuse", 503)])
async def test_the_gateway_answers_200_or_503_never_500_and_keeps_every_row(
    redis: OwnRedis, mode: str, status: int
) -> None:
    limits = RedisLimits(redis.url, when_down=mode, prefix=f"g{redis.port}")  # type: ignore[arg-type]
    ledger, upstream = Ledger(), ScriptedUpstream()
    verifier = TokenVerifier({})
    verifier.use_stored_keys([KEY])
    app = create_app(
        {"m": served("m", [replica(1001)])}, verifier, upstream=upstream, usage=ledger, limits=limits
    )
    headers = {"authorization": "Bearer sk-rpm"}
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gw") as gateway:
            redis.stop()
            plain = await gateway.post("/v1/chat/completions", json=CHAT, headers=headers)
            streamed = await gateway.post(
                "/v1/chat/completions", json={**CHAT, "stream": True}, headers=headers
            )
    finally:
        await limits.aclose()
    assert (plain.status_code, streamed.status_code) == (status, status)
    if status == 503:
        assert plain.json()["error"]["code"] == "limits_unavailable" and plain.headers["retry-after"] == "2"
    else:
        assert streamed.text.endswith("data: [DONE]\n\n")
    assert [row.status for row in ledger.rows] == [status, status]  # every request has its row


BUDGET = ApiKey(
    "k-budget", "team", "ci", TokenVerifier.digest("sk-budget"), budget_tokens=1000, budget_period="day"
)


async def test_a_budget_whose_ledger_cannot_be_read_is_a_503_not_a_500() -> None:
    async def database_down(key: ApiKey, since: float) -> int:
        raise OSError("connection refused")

    verifier = TokenVerifier({})
    verifier.use_stored_keys([BUDGET])
    app = create_app(
        {"m": served("m", [replica(1001)])}, verifier, upstream=ScriptedUpstream(), usage=Ledger(),
        limits=MemoryLimits(database_down),
    )  # fmt: skip
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gw") as gateway:
        answer = await gateway.post(
            "/v1/chat/completions", json=CHAT, headers={"authorization": "Bearer sk-budget"}
        )
    assert answer.status_code == 503 and answer.json()["error"]["code"] == "limits_unavailable"


async def test_stored_keys_are_not_trusted_forever_while_the_database_is_away() -> None:
    verifier = TokenVerifier({"ops": TokenVerifier.digest("sk-ops")})
    verifier.use_stored_keys([KEY])  # the last successful read; the database then goes away
    settings = GatewaySettings(stored_keys_max_stale_seconds=0.2)
    app = create_app(
        {"m": served("m", [replica(1001)])},
        verifier,
        settings,
        upstream=ScriptedUpstream(),
        usage=Ledger(),
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gw") as gateway:
        assert (
            await gateway.post("/v1/chat/completions", json=CHAT, headers={"authorization": "Bearer sk-rpm"})
        ).status_code == 200
        await asyncio.sleep(0.3)
        stale = await gateway.post(
            "/v1/chat/completions", json=CHAT, headers={"authorization": "Bearer sk-rpm"}
        )
        assert stale.status_code == 503 and stale.json()["error"]["code"] == "keys_unavailable"
        assert stale.headers["retry-after"] == "2"
        operator = await gateway.post(
            "/v1/chat/completions", json=CHAT, headers={"authorization": "Bearer sk-ops"}
        )
        assert operator.status_code == 200  # operator tokens come from the config, not the database
        verifier.use_stored_keys([KEY])  # the database is back
        assert (
            await gateway.post("/v1/chat/completions", json=CHAT, headers={"authorization": "Bearer sk-rpm"})
        ).status_code == 200


async def test_a_key_first_seen_during_an_outage_gets_its_own_full_bucket(redis: OwnRedis) -> None:
    """Nothing known of it: the limit itself, counted here (not refused, not unlimited)."""
    limits = RedisLimits(redis.url, when_down="local", prefix=f"n{redis.port}")
    try:
        redis.stop()
        during = [await limits.admit(KEY, 10, NOW) for _ in range(4)]
        assert [a.allowed for a in during] == [True, True, True, False]
    finally:
        await limits.aclose()


async def test_each_outage_starts_from_the_shared_bucket_again(redis: OwnRedis) -> None:
    limits = RedisLimits(redis.url, when_down="local", prefix=f"o{redis.port}")
    try:
        assert (await limits.admit(KEY, 10, NOW)).allowed
        redis.stop()
        assert [(await limits.admit(KEY, 10, NOW)).allowed for _ in range(3)] == [True, True, False]
        redis.start()
        await asyncio.sleep(2.1)
        assert not (await limits.admit(KEY, 10, NOW + 20)).local  # back: Redis had 2, refilled to 3
        redis.stop()
        # From Redis's level after that admission (2 left), not from the old local bucket (0 + 1
        # refilled in 20 s).
        assert [(await limits.admit(KEY, 10, NOW + 20)).allowed for _ in range(3)] == [True, True, False]
    finally:
        await limits.aclose()
