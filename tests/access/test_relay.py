"""relay.EventStream as an ASGI server drives it: a client that leaves ends the relay quietly."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sovra.access.relay import EventStream

pytestmark = pytest.mark.anyio


class Upstream:
    status, content_type, closed = 200, "text/event-stream", 0

    async def read(self) -> bytes:
        return b""

    async def chunks(self) -> AsyncIterator[bytes]:
        yield b""

    def close(self) -> None:
        self.closed += 1


async def endless(ended: list[str]) -> AsyncIterator[bytes]:
    try:
        while True:
            yield b"data: {}\n\n"
            await asyncio.sleep(0.01)
    finally:
        ended.append("accounting closed")


async def test_a_client_that_leaves_stops_the_relay_and_closes_the_upstream() -> None:
    sent: list[dict[str, Any]] = []
    left = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await left.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if len(sent) == 3:
            left.set()

    ended: list[str] = []
    upstream = Upstream()
    accounted = endless(ended)
    stream = EventStream(accounted, upstream, accounted)  # type: ignore[arg-type]
    await asyncio.wait_for(stream({"type": "http"}, receive, send), 5)  # returns; raises nothing
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 200
    assert not any(message.get("more_body") is False for message in sent)  # never presented as whole
    assert (upstream.closed, ended) == (1, ["accounting closed"])
    assert not asyncio.current_task().cancelling()  # type: ignore[union-attr]


async def test_a_stopping_server_cancels_it_like_any_task() -> None:
    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()
        return {}

    async def send(message: dict[str, Any]) -> None:
        pass

    ended: list[str] = []
    upstream = Upstream()
    accounted = endless(ended)
    task = asyncio.create_task(EventStream(accounted, upstream, accounted)({"type": "http"}, receive, send))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (upstream.closed, ended) == (1, ["accounting closed"])


async def test_a_whole_stream_ends_with_the_last_body_message() -> None:
    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()
        return {}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def two() -> AsyncIterator[bytes]:
        yield b"data: 1\n\n"
        yield b"data: 2\n\n"

    upstream = Upstream()
    accounted = two()
    await EventStream(accounted, upstream, accounted)({"type": "http"}, receive, send)  # type: ignore[arg-type]
    assert [m.get("body") for m in sent[1:]] == [b"data: 1\n\n", b"data: 2\n\n", b""]
    assert sent[-1]["more_body"] is False and upstream.closed == 1
    assert dict(sent[0]["headers"])[b"content-type"].startswith(b"text/event-stream")
