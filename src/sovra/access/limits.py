"""Per-key limits: requests per minute, tokens per minute, and a token budget per day or month.

Admission reserves, atomically, what a request may cost (one request; its prompt estimate plus its
`max_tokens`); when it ends, the reservation is settled against the real usage. So concurrent
requests cannot all slip under a limit checked before any of them finished (LiteLLM's bug: 663
tokens spent against a 100-token limit). A request that uses more than it reserved puts the key in
debt, and nothing more is admitted until the debt is paid back. The bound, precisely: a limit is
exceeded by at most the sum, over the requests in flight together, of what each used beyond its
reservation. Output cannot exceed it (a limited key's requests always carry `max_tokens`), so only
a prompt larger than its estimate can (`access/bounds.py`); with the default estimate and English,
code or CJK text that is zero.

Minute limits are token buckets (capacity = the limit, refilled continuously over a minute).
`MemoryLimits` serves one gateway; `RedisLimits` runs the same arithmetic in a Lua script so that
several gateways share the counts.

When Redis cannot be reached (0.5 s timeouts; then left alone for 2 s before it is tried again),
`limits.whenRedisIsDown` decides: `local` (the default) enforces the same limits in this gateway's
memory until Redis answers again, each key's buckets starting where the shared ones were at its last
admission through this gateway (a fresh, full bucket only for a key it had not seen) — so during an
outage a key can get, beyond its limit, what the shared bucket held then once per gateway plus what
refills meanwhile (nearly nothing for a key that was at its limit), and budgets are counted from the
ledger — while `refuse` answers 503 `limits_unavailable` with `Retry-After`. Redis keeps nothing on
disk: restarted, its buckets are full again (one more minute's worth). Either way no request gets a
500. A budget whose ledger count cannot be read (the database is down) is refused the same way.
"""

from __future__ import annotations

import calendar
import dataclasses
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from sovra.access.keys import ApiKey, BudgetPeriod
from sovra.errors import SovraError

__all__ = [
    "Admission",
    "Limits",
    "LimitsUnavailable",
    "MemoryLimits",
    "RedisLimits",
    "seconds_until_period_end",
]

log = logging.getLogger("sovra.limits")
BudgetBaseline = Callable[[ApiKey, float], Awaitable[int]]  # tokens already used since a period start


@dataclass(frozen=True)
class Admission:
    allowed: bool
    reserved: int = 0
    limit: str = ""  # which limit refused: rpm | tpm | budget
    retry_after: float = 0.0
    local: bool = False  # reserved in this process's memory (Redis was down): settle it there


class LimitsUnavailable(SovraError):
    """The limits cannot be checked now (their store is down); the request must wait."""


class Limits(Protocol):
    async def admit(self, key: ApiKey, tokens: int, now: float) -> Admission: ...

    async def settle(
        self, key: ApiKey, reserved: int, actual: int, now: float, local: bool = False
    ) -> None: ...


def seconds_until_period_end(key: ApiKey, now: float) -> float:
    start = key.period_start(now)
    if key.budget_period is BudgetPeriod.MONTH:
        moment = time.gmtime(start)
        year, month = (moment.tm_year + 1, 1) if moment.tm_mon == 12 else (moment.tm_year, moment.tm_mon + 1)
        return calendar.timegm((year, month, 1, 0, 0, 0)) - now
    return start + 86400 - now


@dataclass
class _Bucket:
    level: float
    at: float

    def refill(self, capacity: int, now: float) -> None:
        self.level = min(capacity, self.level + (now - self.at) * capacity / 60.0)
        self.at = now

    def wait_for(self, cost: float, capacity: int) -> float:
        """Seconds until `cost` fits (0 when it does now)."""
        return max(0.0, (cost - self.level) * 60.0 / capacity)


@dataclass
class _KeyState:
    requests: _Bucket
    tokens: _Bucket
    period: float = -1.0
    used: int = 0  # budget tokens used (and reserved) in `period`


class MemoryLimits:
    """Limits for one gateway process. Each call runs without awaiting between check and
    reservation, so it is atomic on the event loop."""

    def __init__(self, baseline: BudgetBaseline | None = None) -> None:
        self._states: dict[str, _KeyState] = {}
        self._baseline = baseline

    def seed(self, key: ApiKey, requests: float, tokens: float, at: float) -> None:
        """Start a key's buckets at these levels (as of `at`), unless it has state already."""
        if key.id not in self._states:
            rpm = _Bucket((key.rpm or 0) if requests < 0 else requests, at)  # < 0: Redis had none
            tpm = _Bucket((key.tpm or 0) if tokens < 0 else tokens, at)
            self._states[key.id] = _KeyState(rpm, tpm)

    def forget(self) -> None:
        self._states.clear()

    async def admit(self, key: ApiKey, tokens: int, now: float) -> Admission:
        state = self._states.get(key.id)
        if state is None:
            state = self._states[key.id] = _KeyState(_Bucket(key.rpm or 0, now), _Bucket(key.tpm or 0, now))
        if key.budget_tokens is not None and state.period != key.period_start(now):
            used = await _read_baseline(self._baseline, key, now)
            state.period, state.used = key.period_start(now), used  # no await between here and return
        return self._decide(key, state, tokens, now)

    def _decide(self, key: ApiKey, state: _KeyState, tokens: int, now: float) -> Admission:
        if key.rpm:
            state.requests.refill(key.rpm, now)
            wait = state.requests.wait_for(1, key.rpm)
            if wait > 0:
                return Admission(False, limit="rpm", retry_after=wait)
        # A request bigger than the whole minute budget is admitted on a full bucket, not never.
        cost = min(tokens, key.tpm) if key.tpm else tokens
        if key.tpm:
            state.tokens.refill(key.tpm, now)
            wait = state.tokens.wait_for(cost, key.tpm)
            if wait > 0:
                return Admission(False, limit="tpm", retry_after=wait)
        if key.budget_tokens is not None and state.used + tokens > key.budget_tokens:
            return Admission(False, limit="budget", retry_after=seconds_until_period_end(key, now))
        if key.rpm:
            state.requests.level -= 1
        if key.tpm:
            state.tokens.level -= cost
        state.used += tokens
        return Admission(True, reserved=tokens)

    async def settle(self, key: ApiKey, reserved: int, actual: int, now: float, local: bool = False) -> None:
        state = self._states.get(key.id)
        if state is None:
            return
        if key.tpm:
            state.tokens.level = min(key.tpm, state.tokens.level + min(reserved, key.tpm) - actual)
        if key.budget_tokens is not None and state.period == key.period_start(now):
            state.used += actual - reserved


async def _read_baseline(baseline: BudgetBaseline | None, key: ApiKey, now: float) -> int:
    if baseline is None:
        return 0
    try:
        return await baseline(key, key.period_start(now))
    except Exception as exc:  # the ledger's database is down: the budget cannot be known
        log.warning(
            "budget baseline unavailable", extra={"key": key.id, "error": f"{type(exc).__name__}: {exc}"}
        )
        raise LimitsUnavailable("the usage ledger cannot be read to check this key's budget") from exc


# The same arithmetic as MemoryLimits._decide and .settle, atomically in Redis.
_ADMIT = """
local now, rpm, tpm, tokens = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local budget, baseline, ttl = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local function bucket(name, capacity)
  local level = tonumber(redis.call('HGET', KEYS[1], name .. ':level') or capacity)
  local at = tonumber(redis.call('HGET', KEYS[1], name .. ':at') or now)
  return math.min(capacity, level + math.max(0, now - at) * capacity / 60.0)
end
local requests, tok = 0, 0
if rpm > 0 then
  requests = bucket('rpm', rpm)
  if requests < 1 then return {0, 'rpm', tostring((1 - requests) * 60.0 / rpm), tostring(requests), '-1'} end
end
local cost = tokens
if tpm > 0 then
  cost = math.min(tokens, tpm)
  tok = bucket('tpm', tpm)
  if tok < cost then
    return {0, 'tpm', tostring((cost - tok) * 60.0 / tpm), tostring(requests), tostring(tok)}
  end
end
if budget >= 0 then
  redis.call('SET', KEYS[2], baseline, 'NX', 'EX', ttl)
  local used = tonumber(redis.call('GET', KEYS[2]))
  if used + tokens > budget then return {0, 'budget', '0', tostring(requests), tostring(tok)} end
  redis.call('INCRBY', KEYS[2], tokens)
end
if rpm > 0 then redis.call('HSET', KEYS[1], 'rpm:level', tostring(requests - 1), 'rpm:at', tostring(now)) end
if tpm > 0 then redis.call('HSET', KEYS[1], 'tpm:level', tostring(tok - cost), 'tpm:at', tostring(now)) end
redis.call('EXPIRE', KEYS[1], 120)
return {1, '', '0', tostring(requests - 1), tostring(tok - cost)}
"""

_SETTLE = """
local now, tpm, refund, delta = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if tpm > 0 then
  local level = tonumber(redis.call('HGET', KEYS[1], 'tpm:level') or tpm)
  local at = tonumber(redis.call('HGET', KEYS[1], 'tpm:at') or now)
  level = math.min(tpm, level + math.max(0, now - at) * tpm / 60.0)
  redis.call('HSET', KEYS[1], 'tpm:level', tostring(math.min(tpm, level + refund)), 'tpm:at', tostring(now))
end
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('INCRBY', KEYS[2], delta) end
return 1
"""


class RedisLimits:
    """Limits shared by every gateway that points at the same Redis."""

    def __init__(
        self,
        url: str,
        baseline: BudgetBaseline | None = None,
        prefix: str = "sovra:limits",
        when_down: Literal["local", "refuse"] = "local",
    ) -> None:
        import redis.asyncio as redis  # only needed when configured
        from redis.exceptions import RedisError

        self._redis: Any = redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._admit = self._redis.register_script(_ADMIT)
        self._settle = self._redis.register_script(_SETTLE)
        self._baseline = baseline
        self._prefix = prefix
        self._when_down = when_down
        self._local = MemoryLimits(baseline)
        self._down_until = 0.0  # monotonic: Redis is not tried again before then
        self._was_down = False
        # Per key, the shared buckets' levels (requests, tokens) after its last admission here, and when.
        self._seen: dict[str, tuple[float, float, float]] = {}
        self._unreachable = (OSError, RedisError)

    def _keys(self, key: ApiKey, now: float) -> list[str]:
        period = int(key.period_start(now)) if key.budget_tokens is not None else 0
        return [f"{self._prefix}:{key.id}", f"{self._prefix}:{key.id}:budget:{period}"]

    async def admit(self, key: ApiKey, tokens: int, now: float) -> Admission:
        if time.monotonic() >= self._down_until:
            try:
                admission = await self._admit_shared(key, tokens, now)
            except self._unreachable as exc:
                self._down(exc)
            else:
                if self._was_down:  # what an operator (and the fault proof) looks for
                    self._was_down = False
                    log.info("Redis reachable again for limits; counting there again")
                return admission
        if self._when_down == "refuse":
            raise LimitsUnavailable("the limits store (Redis) cannot be reached")
        if key.id in self._seen:  # go on from the shared bucket as this gateway last saw it
            self._local.seed(key, *self._seen.pop(key.id))
        return dataclasses.replace(await self._local.admit(key, tokens, now), local=True)

    async def _admit_shared(self, key: ApiKey, tokens: int, now: float) -> Admission:
        keys = self._keys(key, now)
        budget, baseline, ttl = -1, 0, 1
        if key.budget_tokens is not None:
            budget = key.budget_tokens
            ttl = math.ceil(seconds_until_period_end(key, now)) + 3600
            if not await self._redis.exists(keys[1]):
                baseline = await _read_baseline(self._baseline, key, now)
        args = [now, key.rpm or 0, key.tpm or 0, tokens, budget, baseline, ttl]
        allowed, limit, wait, requests, level = await self._admit(keys=keys, args=args)
        self._seen[key.id] = (float(requests), float(level), now)
        if int(allowed):
            return Admission(True, reserved=tokens)
        name = limit.decode() if isinstance(limit, bytes) else str(limit)
        retry = seconds_until_period_end(key, now) if name == "budget" else float(wait)
        return Admission(False, limit=name, retry_after=retry)

    async def settle(self, key: ApiKey, reserved: int, actual: int, now: float, local: bool = False) -> None:
        if local:
            await self._local.settle(key, reserved, actual, now)
            return
        refund = min(reserved, key.tpm) - actual if key.tpm else 0
        try:
            await self._settle(keys=self._keys(key, now), args=[now, key.tpm or 0, refund, actual - reserved])
        except self._unreachable as exc:
            # The reservation stands as made: the key is charged what it reserved, not what it used.
            self._down(exc)
            log.warning("a reservation could not be settled in Redis", extra={"key": key.id})

    def _down(self, exc: BaseException) -> None:
        if not self._was_down:  # a new outage: the local buckets start from what Redis said last
            self._local.forget()
        self._was_down = True
        if time.monotonic() >= self._down_until:
            log.warning(
                "Redis unreachable for limits",
                extra={"error": type(exc).__name__, "when_down": self._when_down},
            )
        self._down_until = time.monotonic() + 2.0

    async def aclose(self) -> None:
        await self._redis.aclose()
