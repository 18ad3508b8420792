"""Relaying one call to one replica: what to send, and how to hand the answer back.

Streams are passed on chunk by chunk as they arrive. When the client goes away the response task is
cancelled, the upstream connection is dropped, and the engine stops generating.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass, replace
from typing import Any

from starlette.background import BackgroundTask
from starlette.responses import JSONResponse, Response, StreamingResponse

from sovra.access import anthropic, anthropic_upstream, fim
from sovra.access.accounting import Exchange, account_stream, usage_from_body
from sovra.access.errors import ApiError
from sovra.access.sse import data_event
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
    client_wants_usage: bool = False  # the client asked for stream_options.include_usage
    anthropic: bool = False  # answer in the Anthropic Messages shape
    to_anthropic: bool = False  # the upstream is an Anthropic provider: its answers become OpenAI's

    @classmethod
    def for_messages(
        cls, payload: dict[str, Any], model: str, upstream_model: str, stream_fields: Mapping[str, Any]
    ) -> UpstreamCall:
        """An Anthropic Messages request, sent to the engine as a chat completion."""
        chat = anthropic.chat_request(payload, upstream_model)
        if chat.get("stream") is True:
            chat.update(stream_fields)
        body = json.dumps(chat).encode()
        return cls("/v1/chat/completions", body, model, chat.get("stream") is True, anthropic=True)

    @classmethod
    def for_request(
        cls,
        path: str,
        payload: dict[str, Any],
        raw: bytes,
        model: str,
        upstream_model: str,
        stream_fields: Mapping[str, Any],
    ) -> UpstreamCall:
        """`model` is the name the client used; `upstream_model` the one the engine knows;
        `stream_fields` are added to a streamed request (what the engine needs for accounting)."""
        stream = payload.get("stream") is True
        options = payload.get("stream_options")
        wants_usage = isinstance(options, dict) and options.get("include_usage") is True
        if path == "/v1/completions" and fim.wants_infill(payload):
            body = json.dumps(fim.infill_request(payload)).encode()
            return cls("/infill", body, model, stream, infill=True, client_wants_usage=wants_usage)
        changes: dict[str, Any] = {}
        if payload.get("model") != upstream_model:  # routed by header, or an alias: the engine's own name
            changes["model"] = upstream_model
        if stream and not wants_usage:  # accounting needs the usage event; stripped again on the way out
            changes["stream_options"] = {
                **(options if isinstance(options, dict) else {}),
                "include_usage": True,
            }
        if stream:
            changes.update(stream_fields)
        if changes:
            raw = json.dumps({**payload, **changes}).encode()
        return cls(path, raw, model, stream, client_wants_usage=wants_usage)

    def for_anthropic_provider(self, upstream_model: str) -> UpstreamCall:
        """This call, sent to an Anthropic provider's Messages API instead."""
        if self.path != "/v1/chat/completions":
            raise ApiError(
                400,
                f"the model {self.model!r} (an Anthropic provider) serves only chat",
                "unsupported_endpoint",
            )
        body = anthropic_upstream.messages_request(json.loads(self.body), upstream_model)
        return replace(self, path="/v1/messages", body=json.dumps(body).encode(), to_anthropic=True)


async def respond(
    upstream: UpstreamResponse,
    call: UpstreamCall,
    exchange: Exchange,
    finish: Callable[[], Coroutine[Any, Any, None]],
    spawn: Callable[[Coroutine[Any, Any, None]], object],
    max_bytes: int = 32 * 1024 * 1024,
) -> Response:
    """Turn the upstream response into the client's, streaming when both sides stream; `finish`
    (the ledger commit) runs before the client gets the end of the answer. A whole (non-streamed)
    answer is buffered up to `max_bytes`; a larger one is a 502, not a gigabyte of memory."""
    if call.stream and upstream.status == 200 and upstream.content_type.startswith("text/event-stream"):
        chunks = _relay_chunks(upstream, exchange)
        if call.to_anthropic:
            chunks = anthropic_upstream.chat_stream(chunks, call.model)
        if call.infill:
            chunks = fim.infill_stream(chunks, call.model, include_usage=True)
        keep_usage = call.client_wants_usage or call.anthropic  # the translation reports usage itself
        chunks = account_stream(chunks, exchange, keep_usage, finish, spawn)
        if call.anthropic:
            chunks = anthropic.message_stream(chunks, call.model)
        return StreamingResponse(
            chunks,
            media_type="text/event-stream",
            headers=_SSE_HEADERS,
            background=BackgroundTask(upstream.close),
        )
    try:
        body = await _read_bounded(upstream, max_bytes)
    finally:
        upstream.close()
    if call.infill and upstream.status == 200:
        body = json.dumps(fim.infill_response(json.loads(body), call.model)).encode()
    elif call.to_anthropic:
        body = _from_anthropic(body, upstream.status, call.model)
    exchange.status = upstream.status
    if upstream.status >= 400:
        exchange.error_type = str(upstream.status)
    usage_from_body(body, exchange)
    await finish()
    if call.anthropic:
        return _as_anthropic(body, upstream.status, call.model)
    return Response(body, status_code=upstream.status, media_type=upstream.content_type)


async def _read_bounded(upstream: UpstreamResponse, max_bytes: int) -> bytes:
    body = bytearray()
    async for chunk in upstream.chunks():
        body += chunk
        if len(body) > max_bytes:
            raise ApiError(502, f"the engine's answer exceeds {max_bytes} bytes", "upstream_answer_too_large")
    return bytes(body)


def _from_anthropic(body: bytes, status: int, model: str) -> bytes:
    if status != 200:
        return anthropic_upstream.error_from_anthropic(body, status)
    return json.dumps(anthropic_upstream.chat_from_message(json.loads(body), model)).encode()


def _as_anthropic(body: bytes, status: int, model: str) -> Response:
    try:
        answer = json.loads(body)
    except ValueError:
        answer = {}
    if status == 200:
        return JSONResponse(anthropic.message_from_chat(answer, model))
    error = answer.get("error") if isinstance(answer, dict) else None
    message = str(error.get("message")) if isinstance(error, dict) else f"the engine answered {status}"
    return JSONResponse(anthropic.error_body(status, message), status_code=status)


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
