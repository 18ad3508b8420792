"""Fill-in-the-middle: OpenAI `/v1/completions` with `suffix` ⇄ llama-server's `/infill`.

llama-server's OpenAI endpoint silently drops `suffix`; its FIM endpoint has its own request and
response shapes. This module translates both ways, streaming included.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from typing import Any

from sovra.access.dialects.base import Call
from sovra.access.dialects.usage import TokenUsage
from sovra.access.errors import ApiError
from sovra.access.sse import data_event, data_payloads

__all__ = [
    "INFILL_UPSTREAM",
    "InfillUpstream",
    "infill_request",
    "infill_response",
    "infill_stream",
    "wants_infill",
]

# OpenAI sampling fields that /infill understands under a name of its own or the same name.
_RENAMED = {"max_tokens": "n_predict"}
_PASSED = ("temperature", "top_p", "stop", "seed", "presence_penalty", "frequency_penalty", "input_extra")


def wants_infill(payload: Mapping[str, Any]) -> bool:
    return isinstance(payload.get("suffix"), str) and payload["suffix"] != ""


def infill_request(payload: Mapping[str, Any]) -> dict[str, Any]:
    prompt = payload.get("prompt", "")
    if not isinstance(prompt, str):
        raise ApiError(400, "'suffix' needs 'prompt' to be a single string", "invalid_prompt")
    if payload.get("n", 1) != 1:
        raise ApiError(400, "'suffix' supports only n=1", "invalid_n")
    body: dict[str, Any] = {
        "input_prefix": prompt,
        "input_suffix": payload["suffix"],
        "n_predict": payload.get("max_tokens", 16),  # OpenAI's default for completions
        "stream": bool(payload.get("stream", False)),
    }
    for name in _PASSED:
        if name in payload:
            body[_RENAMED.get(name, name)] = payload[name]
    return body


def _finish_reason(result: dict[str, Any]) -> str:
    return "length" if result.get("stop_type") == "limit" else "stop"


def _usage(result: dict[str, Any]) -> dict[str, Any]:
    return TokenUsage.from_infill(result).openai()


def _envelope(model: str, completion_id: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
    }


def infill_response(result: dict[str, Any], model: str) -> dict[str, Any]:
    choice = {
        "text": result.get("content", ""),
        "index": 0,
        "logprobs": None,
        "finish_reason": _finish_reason(result),
    }
    body = _envelope(model, f"cmpl-{uuid.uuid4().hex}", [choice])
    body["usage"] = _usage(result)
    return body


async def infill_stream(
    upstream: AsyncIterator[bytes], model: str, include_usage: bool
) -> AsyncIterator[bytes]:
    """Re-emit llama-server's infill SSE events as OpenAI completion chunks."""
    completion_id = f"cmpl-{uuid.uuid4().hex}"
    async for event in data_payloads(upstream):
        result = json.loads(event)
        if "error" in result:
            yield data_event(result)
            break
        finished = bool(result.get("stop"))
        choice = {
            "text": result.get("content", ""),
            "index": 0,
            "logprobs": None,
            "finish_reason": _finish_reason(result) if finished else None,
        }
        yield data_event(_envelope(model, completion_id, [choice]))
        if finished:
            if include_usage:
                yield data_event({**_envelope(model, completion_id, []), "usage": _usage(result)})
            break
    yield b"data: [DONE]\n\n"


class InfillUpstream:
    """llama-server's /infill, for an OpenAI completion with a `suffix`."""

    def request(self, call: Call, upstream_model: str) -> Call:
        body = infill_request(call.payload)
        return replace(call, path="/infill", payload=body, body=json.dumps(body).encode())

    def answer(self, body: bytes, status: int, model: str) -> bytes:
        if status != 200:
            return body
        return json.dumps(infill_response(json.loads(body), model)).encode()

    def stream(self, chunks: AsyncIterator[bytes], model: str) -> AsyncIterator[bytes]:
        return infill_stream(chunks, model, include_usage=True)  # accounting strips it if unasked


INFILL_UPSTREAM = InfillUpstream()
