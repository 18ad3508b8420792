"""OpenAI's own shapes: chat/completions, completions and embeddings, for clients and upstreams.

As a client dialect it checks the body (`validation.check_request`) and changes it only where the
gateway must: the engine's own model name, and the usage event a stream needs for accounting
(stripped again on the way out when the client did not ask for it). Unchanged requests are sent
byte for byte. As an upstream dialect (every engine, OpenAI-compatible providers) it is the identity.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

from starlette.responses import Response

from sovra.access.dialects.base import Call, ClientDialect
from sovra.access.errors import ApiError, error_response
from sovra.access.keys import ApiKey
from sovra.access.validation import check_request

__all__ = ["OPENAI_CLIENT", "OPENAI_UPSTREAM", "OpenAIClient", "OpenAIUpstream"]


class OpenAIClient:
    reports_usage = False

    def request(
        self,
        path: str,
        payload: dict[str, Any],
        raw: bytes,
        model: str,
        upstream_model: str,
        stream_fields: Mapping[str, Any],
    ) -> Call:
        check_request(path, payload)
        stream = payload.get("stream") is True
        options = payload.get("stream_options")
        wants_usage = isinstance(options, dict) and options.get("include_usage") is True
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
            payload = {**payload, **changes}
            raw = json.dumps(payload).encode()
        return Call(path, payload, raw, model, stream, wants_usage)

    async def begin(self, payload: dict[str, Any], key: ApiKey) -> tuple[ClientDialect, dict[str, Any]]:
        return self, payload

    async def answer(self, body: bytes, status: int, content_type: str, model: str) -> Response:
        return Response(_public(body), status_code=status, media_type=content_type)

    def stream(self, chunks: AsyncIterator[bytes], model: str) -> AsyncIterator[bytes]:
        return _public_stream(chunks)

    def error(self, error: ApiError) -> Response:
        return error_response(error)


# What llama-server adds to OpenAI's shapes for itself: per-answer timings (read by the accounting
# before this point) and a build fingerprint. Matched in the bytes (both are flat, and llama-server
# writes compact JSON): parsing every streamed event would cost more than the relay does.
_ENGINE_PRIVATE = re.compile(rb',"timings":\{[^{}]*\}|,"system_fingerprint":"b\d+-[^"]*"')


def _public(body: bytes) -> bytes:
    if b'"timings"' in body or b'"system_fingerprint":"b' in body:
        return _ENGINE_PRIVATE.sub(b"", body)
    return body


async def _public_stream(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        yield _public(chunk)


class OpenAIUpstream:
    def request(self, call: Call, upstream_model: str) -> Call:
        return call

    def answer(self, body: bytes, status: int, model: str) -> bytes:
        if status == 400 and b"exceed_context_size_error" in body:
            return _context_exceeded(body)
        return body

    def stream(self, chunks: AsyncIterator[bytes], model: str) -> AsyncIterator[bytes]:
        return chunks


def _context_exceeded(body: bytes) -> bytes:
    """llama-server's own word for a prompt longer than the context, as OpenAI says it (the code
    clients such as Codex act on)."""
    try:
        error = json.loads(body)["error"]
        message = str(error["message"])
        if "n_prompt_tokens" in error and "n_ctx" in error:
            tokens, window = error["n_prompt_tokens"], error["n_ctx"]
            message = f"the prompt is {tokens} tokens; the model's context window is {window}"
    except (ValueError, KeyError, TypeError):
        return body
    shaped = {
        "message": message,
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
    return json.dumps({"error": shaped}).encode()


OPENAI_CLIENT = OpenAIClient()
OPENAI_UPSTREAM = OpenAIUpstream()
