"""Relaying one call to one replica: open the upstream, stream it back, close it on disconnect.

httpx errors are translated here, once, into ApiErrors with the right status.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse

from sovra.access import fim
from sovra.access.errors import ApiError

__all__ = ["UpstreamCall", "open_upstream", "respond"]

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


async def open_upstream(http: httpx.AsyncClient, base_url: str, call: UpstreamCall) -> httpx.Response:
    """Send the call and return the response with its body still unread."""
    request = http.build_request(
        "POST", base_url + call.path, content=call.body, headers={"content-type": "application/json"}
    )
    try:
        try:
            return await http.send(request, stream=True)
        except httpx.RemoteProtocolError:
            # llama-server sometimes closes a pooled keep-alive connection just as we reuse it, before
            # answering anything; the same request on a fresh connection is the standard remedy.
            return await http.send(request, stream=True)
    except httpx.TimeoutException as exc:
        raise ApiError(504, f"the engine for {call.model!r} timed out", "upstream_timeout") from exc
    except httpx.HTTPError as exc:
        raise ApiError(502, f"the engine for {call.model!r} is unreachable", "upstream_unreachable") from exc


async def respond(upstream: httpx.Response, call: UpstreamCall) -> Response:
    """Turn the upstream response into the client's, streaming when both sides stream."""
    is_sse = upstream.headers.get("content-type", "").startswith("text/event-stream")
    if call.stream and upstream.status_code == 200 and is_sse:
        chunks = _relay_chunks(upstream)
        if call.infill:
            chunks = fim.infill_stream(chunks, call.model, call.include_usage)
        return StreamingResponse(
            chunks,
            media_type="text/event-stream",
            headers=_SSE_HEADERS,
            background=BackgroundTask(upstream.aclose),
        )
    try:
        body = await upstream.aread()
    except httpx.HTTPError as exc:
        raise ApiError(502, f"the engine for {call.model!r} broke off its answer", "upstream_error") from exc
    finally:
        await upstream.aclose()
    if call.infill and upstream.status_code == 200:
        body = json.dumps(fim.infill_response(json.loads(body), call.model)).encode()
    media_type = upstream.headers.get("content-type", "application/json")
    return Response(body, status_code=upstream.status_code, media_type=media_type)


async def _relay_chunks(upstream: httpx.Response) -> AsyncIterator[bytes]:
    """Chunks as they arrive. When the client goes away this generator is closed, and so is the
    upstream connection, which makes the engine stop generating."""
    try:
        async for chunk in upstream.aiter_bytes():
            yield chunk
    except httpx.HTTPError:
        return  # the engine broke off mid-stream; the status line is already sent
    finally:
        await upstream.aclose()
