"""Per-key limits, in memory and on the real Redis, with a controlled clock."""

import calendar
import time
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as redis

from sovra.access.keys import ApiKey, BudgetPeriod
from sovra.access.limits import Limits, MemoryLimits, RedisLimits, seconds_until_period_end

pytestmark = pytest.mark.anyio
REDIS = "redis://127.0.0.1:6379/0"
NOW = 1_795_567_421.0  # 2026-11-25 03:23:41 UTC
MakeLimits = Callable[..., Limits]


def key(**limits: object) -> ApiKey:
    return ApiKey(f"k-{uuid.uuid4().hex[:8]}", "team", "n", "d", **limits)  # type: ignore[arg-type]


@pytest.fixture(params=["memory", "redis"])
async def make_limits(request: pytest.FixtureRequest) -> AsyncIterator[MakeLimits]:
    prefix = f"sovra-test:{uuid.uuid4().hex}"
    made: list[RedisLimits] = []

    def make(baseline: object = None) -> Limits:
        if request.param == "memory":
            return MemoryLimits(baseline)  # type: ignore[arg-type]
        limits = RedisLimits(REDIS, baseline, prefix=prefix)  # type: ignore[arg-type]
        made.append(limits)
        return limits

    yield make
    for limits in made:
        await limits.aclose()
    client = redis.from_url(REDIS)
    async for name in client.scan_iter(f"{prefix}:*"):
        await client.delete(name)
    await client.aclose()


async def test_requests_per_minute(make_limits: MakeLimits) -> None:
    limits, k = make_limits(), key(rpm=2)
    assert (await limits.admit(k, 10, NOW)).allowed
    assert (await limits.admit(k, 10, NOW)).allowed
    refused = await limits.admit(k, 10, NOW)
    assert (refused.allowed, refused.limit) == (False, "rpm")
    assert refused.retry_after == pytest.approx(30.0)  # one request refills in 60 s / 2
    assert (await limits.admit(k, 10, NOW + 30.5)).allowed


async def test_tokens_per_minute_reserve_then_settle(make_limits: MakeLimits) -> None:
    limits, k = make_limits(), key(tpm=100)
    assert (await limits.admit(k, 60, NOW)).allowed
    refused = await limits.admit(k, 60, NOW)  # 40 left: concurrent requests cannot both pass
    assert (refused.allowed, refused.limit) == (False, "tpm")
    await limits.settle(k, reserved=60, actual=20, now=NOW)  # the first used less than reserved
    assert (await limits.admit(k, 60, NOW)).allowed  # 40 + 40 refunded = 80


async def test_an_overshoot_is_debt_that_blocks_until_repaid(make_limits: MakeLimits) -> None:
    limits, k = make_limits(), key(tpm=100)
    assert (await limits.admit(k, 50, NOW)).allowed
    await limits.settle(k, reserved=50, actual=130, now=NOW)  # used more than it said: level -30
    refused = await limits.admit(k, 10, NOW)
    assert not refused.allowed and refused.retry_after == pytest.approx(24.0)  # (10 - -30) * 60 / 100


async def test_a_request_larger_than_the_minute_limit_waits_for_a_full_bucket(
    make_limits: MakeLimits,
) -> None:
    limits, k = make_limits(), key(tpm=100)
    assert (await limits.admit(k, 500, NOW)).allowed


async def test_budgets_start_from_the_ledger_and_refuse_until_the_period_ends(
    make_limits: MakeLimits,
) -> None:
    seen: list[float] = []

    async def baseline(api_key: ApiKey, since: float) -> int:
        seen.append(since)
        return 90

    limits, k = make_limits(baseline), key(budget_tokens=100, budget_period=BudgetPeriod.DAY)
    assert (await limits.admit(k, 10, NOW)).allowed
    refused = await limits.admit(k, 1, NOW)
    assert (refused.allowed, refused.limit) == (False, "budget")
    assert refused.retry_after == pytest.approx(seconds_until_period_end(k, NOW))
    assert time.gmtime(seen[0])[:6] == (2026, 11, 25, 0, 0, 0)
    await limits.settle(k, reserved=10, actual=4, now=NOW)  # 6 tokens back
    assert (await limits.admit(k, 6, NOW)).allowed
    assert (await limits.admit(k, 5, NOW + 86400)).allowed  # a new day


async def test_two_gateways_share_limits_through_redis() -> None:
    prefix = f"sovra-test:{uuid.uuid4().hex}"
    first, second = RedisLimits(REDIS, prefix=prefix), RedisLimits(REDIS, prefix=prefix)
    k = key(rpm=3)
    try:
        results = [await (first if i % 2 else second).admit(k, 1, NOW) for i in range(6)]
        assert [r.allowed for r in results] == [True, True, True, False, False, False]
    finally:
        await first.aclose()
        await second.aclose()
        client = redis.from_url(REDIS)
        async for name in client.scan_iter(f"{prefix}:*"):
            await client.delete(name)
        await client.aclose()


def test_period_ends() -> None:
    month = key(budget_tokens=1, budget_period=BudgetPeriod.MONTH)
    assert time.gmtime(NOW + seconds_until_period_end(month, NOW))[:3] == (2026, 12, 1)
    december = float(calendar.timegm((2026, 12, 15, 12, 0, 0)))
    assert time.gmtime(december + seconds_until_period_end(month, december))[:6] == (2027, 1, 1, 0, 0, 0)
    day = key(budget_tokens=1, budget_period=BudgetPeriod.DAY)
    assert time.gmtime(NOW + seconds_until_period_end(day, NOW))[:6] == (2026, 11, 26, 0, 0, 0)
