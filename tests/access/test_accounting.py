"""A stream the client abandons is charged for what the engine did, not for nothing."""

import asyncio
import json
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import pytest

from sovra.access.accounting import CLIENT_CLOSED, Exchange, account_stream
from sovra.access.auth import TokenVerifier
from sovra.access.keys import ApiKey

pytestmark = pytest.mark.anyio
KEY = ApiKey("k", "team", "ci", TokenVerifier.digest("sk"))


def event(content: str, timings: dict[str, int] | None = None) -> bytes:
    payload: dict[str, Any] = {"choices": [{"index": 0, "delta": {"content": content}}]}
    if timings is not None:
        payload["timings"] = {**timings, "prompt_ms": 812.5, "predicted_n": 1}
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


async def engine(events: list[bytes]) -> AsyncIterator[bytes]:
    for item in events:
        yield item
        await asyncio.sleep(0)


async def abandon_after(events: list[bytes], exchange: Exchange, taken: int) -> None:
    finished: list[Coroutine[Any, Any, None]] = []

    async def finish() -> None:
        pass

    stream = account_stream(engine(events), exchange, False, finish, finished.append)
    for _ in range(taken):
        await anext(stream)
    await stream.aclose()  # what Starlette does when the client goes away
    for work in finished:
        await work


async def test_the_prompt_the_engine_evaluated_is_charged_when_the_client_leaves() -> None:
    events = [
        event("", {"prompt_n": 1480, "cache_n": 20}),
        *(event(f"w{i}", {"prompt_n": 1480, "cache_n": 20}) for i in range(50)),
    ]
    exchange = Exchange(KEY, "/v1/chat/completions", prompt_estimate=9000)
    await abandon_after(events, exchange, taken=2)
    assert exchange.status == CLIENT_CLOSED
    assert (exchange.input_tokens, exchange.cached_tokens, exchange.output_tokens) == (1500, 20, 2)


async def test_without_engine_timings_the_estimate_is_charged() -> None:
    exchange = Exchange(KEY, "/v1/chat/completions", prompt_estimate=375)
    await abandon_after([event("a"), event("b"), event("c")], exchange, taken=2)
    assert (exchange.status, exchange.input_tokens, exchange.output_tokens) == (CLIENT_CLOSED, 375, 2)
