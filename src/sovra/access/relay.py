"""Relaying one call to one endpoint, and handing the answer back through the request's dialects.

Streams are passed on chunk by chunk as they arrive. When the client goes away the response task is
cancelled, the upstream connection is dropped, and the engine stops generating.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from sovra.access.accounting import Exchange, account_stream, usage_from_body
from sovra.access.dialects.base import Call, ClientDialect, UpstreamDialect
from sovra.access.errors import ApiError
from sovra.access.sse import data_event
from sovra.access.upstream import UpstreamResponse

__all__ = ["respond"]

_SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


async def respond(
    upstream: UpstreamResponse,
    call: Call,
    dialects: tuple[ClientDialect, UpstreamDialect],
    exchange: Exchange,
    finish: Callable[[], Coroutine[Any, Any, None]],
    spawn: Callable[[Coroutine[Any, Any, None]], object],
    max_bytes: int = 32 * 1024 * 1024,
) -> Response:
    """Turn the upstream response into the client's, streaming when both sides stream; `finish`
    (the ledger commit) runs before the client gets the end of the answer. A whole (non-streamed)
    answer is buffered up to `max_bytes`; a larger one is a 502, not a gigabyte of memory."""
    client, translate = dialects
    if call.stream and upstream.status == 200 and upstream.content_type.startswith("text/event-stream"):
        chunks = translate.stream(_relay_chunks(upstream, exchange), call.model)
        keep_usage = call.wants_usage or client.reports_usage
        accounted = account_stream(chunks, exchange, keep_usage, finish, spawn)
        return EventStream(client.stream(accounted, call.model), upstream, accounted)
    try:
        body = await _read_bounded(upstream, max_bytes)
    finally:
        upstream.close()
    body = translate.answer(body, upstream.status, call.model)
    exchange.status = upstream.status
    if upstream.status >= 400:
        exchange.error_type = str(upstream.status)
    usage_from_body(body, exchange)
    await finish()
    return await client.answer(body, upstream.status, upstream.content_type, call.model)


class EventStream(Response):
    """An event stream, relayed as it arrives; the upstream is closed however it ends.

    Starlette's StreamingResponse, under a server speaking ASGI 2.3 (uvicorn), runs each stream in
    an anyio task group to notice a client leaving, and would close the upstream through a thread:
    a third of a short stream's cost. Here one watcher task waits for the disconnect and cancels the
    relaying task, which ends quietly (the client is gone; nobody is left to answer)."""

    media_type = "text/event-stream"

    def __init__(
        self, chunks: AsyncIterator[bytes], upstream: UpstreamResponse, accounted: AsyncGenerator[bytes]
    ) -> None:
        self.status_code = 200
        self.background = None
        self._chunks = chunks
        self._upstream = upstream
        self._accounted = accounted
        self.init_headers(_SSE_HEADERS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        relaying = asyncio.current_task()
        assert relaying is not None
        gone = False

        async def watch() -> None:
            nonlocal gone
            while (await receive())["type"] != "http.disconnect":
                pass
            gone = True
            relaying.cancel()

        watcher = asyncio.get_running_loop().create_task(watch())
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            async for chunk in self._chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not gone:
                raise  # the server is stopping: not ours to swallow
            relaying.uncancel()
        finally:
            if not gone:
                watcher.cancel()
            self._upstream.close()
            # A dialect that stops reading early (at an error event) leaves the accounting suspended:
            # closing it is what commits the ledger row, now rather than whenever it is collected.
            await self._accounted.aclose()


async def _read_bounded(upstream: UpstreamResponse, max_bytes: int) -> bytes:
    body = bytearray()
    async for chunk in upstream.chunks():
        body += chunk
        if len(body) > max_bytes:
            raise ApiError(502, f"the engine's answer exceeds {max_bytes} bytes", "upstream_answer_too_large")
    return bytes(body)


async def _relay_chunks(upstream: UpstreamResponse, exchange: Exchange) -> AsyncIterator[bytes]:
    try:
        async for chunk in upstream.chunks():
            yield chunk
    except ApiError as error:
        # The engine broke off mid-stream. The status line is long sent, so say it in the stream
        # (the client must not mistake a cut answer for a complete one) and end it.
        exchange.status, exchange.error_type = error.status, error.code
        event = {"error": {"message": error.message, "type": "upstream_error", "code": error.code}}
        yield data_event(event)
    finally:
        upstream.close()  # on cancellation (client gone) this is what stops the engine
