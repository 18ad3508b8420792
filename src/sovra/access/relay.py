"""Relaying one call to one replica: what to send, and how to hand the answer back.

Streams are passed on chunk by chunk as they arrive. When the client goes away the response task is
cancelled, the upstream connection is dropped, and the engine stops generating.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse

from sovra.access import fim
from sovra.access.errors import ApiError
from sovra.access.upstream import UpstreamResponse

__all__ = ["UpstreamCall", "respond"]

_SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


@dataclass(frozen=True)
class UpstreamCall:
    """What to send upstream, and how to translate what comes back."""

    path: str
    body: bytes
    model: str
    stream: bool
    infill: bool = False
    include_usage: bool = False

    @classmethod
    def for_request(cls, path: str, payload: dict[str, Any], raw: bytes, model: str) -> UpstreamCall:
        stream = payload.get("stream") is True
        if path == "/v1/completions" and fim.wants_infill(payload):
            options = payload.get("stream_options") or {}
            body = json.dumps(fim.infill_request(payload)).encode()
            include_usage = isinstance(options, dict) and options.get("include_usage") is True
            return cls("/infill", body, model, stream, infill=True, include_usage=include_usage)
        if payload.get("model") != model:  # routed by header: the engine must see its own name
            raw = json.dumps({**payload, "model": model}).encode()
        return cls(path, raw, model, stream)


async def respond(upstream: UpstreamResponse, call: UpstreamCall) -> Response:
    """Turn the upstream response into the client's, streaming when both sides stream."""
    if call.stream and upstream.status == 200 and upstream.content_type.startswith("text/event-stream"):
        chunks = _relay_chunks(upstream)
        if call.infill:
            chunks = fim.infill_stream(chunks, call.model, call.include_usage)
        return StreamingResponse(
            chunks,
            media_type="text/event-stream",
            headers=_SSE_HEADERS,
            background=BackgroundTask(upstream.close),
        )
    try:
        body = await upstream.read()
    finally:
        upstream.close()
    if call.infill and upstream.status == 200:
        body = json.dumps(fim.infill_response(json.loads(body), call.model)).encode()
    return Response(body, status_code=upstream.status, media_type=upstream.content_type)


async def _relay_chunks(upstream: UpstreamResponse) -> AsyncIterator[bytes]:
    try:
        async for chunk in upstream.chunks():
            yield chunk
    except ApiError:
        return  # the engine broke off mid-stream; the status line is already sent
    finally:
        upstream.close()  # on cancellation (client gone) this is what stops the engine
