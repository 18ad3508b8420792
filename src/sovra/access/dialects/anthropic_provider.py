"""Anthropic as an upstream: OpenAI chat requests translated to the Messages API, answers back.

The mirror of `anthropic.py` (which lets Anthropic clients reach OpenAI-shaped engines). With both,
any client reaches any upstream: a /v1/messages request for an Anthropic provider goes through the
OpenAI shape and back, so what the OpenAI shape cannot carry (thinking signatures, citations) is not
relayed. Pure functions over JSON, plus one stream translator; no I/O.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from typing import Any

from sovra.access.dialects.base import Call
from sovra.access.dialects.usage import TokenUsage
from sovra.access.errors import ApiError
from sovra.access.sse import data_event, data_payloads

__all__ = [
    "ANTHROPIC_UPSTREAM",
    "API_VERSION",
    "AnthropicUpstream",
    "chat_from_message",
    "chat_stream",
    "error_from_anthropic",
    "messages_request",
]

API_VERSION = "2023-06-01"  # the anthropic-version header every request must carry
DEFAULT_MAX_TOKENS = 4096  # Anthropic requires max_tokens; OpenAI clients often leave it out
_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def _invalid(field: str, reason: str) -> ApiError:
    return ApiError(400, f"{field}: {reason}", "invalid_request")


# ---- request: OpenAI chat → Anthropic Messages ----------------------------------------------------


def messages_request(chat: Mapping[str, Any], upstream_model: str) -> dict[str, Any]:
    """An Anthropic Messages body for an OpenAI chat-completions body (already validated)."""
    if (chat.get("n") or 1) != 1:
        raise _invalid("n", "Anthropic models answer with one choice")
    limit = chat.get("max_completion_tokens") or chat.get("max_tokens") or DEFAULT_MAX_TOKENS
    body: dict[str, Any] = {"model": upstream_model, "max_tokens": limit}
    system, messages = _split_system(chat.get("messages") or [])
    if system:
        body["system"] = system
    body["messages"] = messages
    for name in ("temperature", "top_p"):
        if chat.get(name) is not None:
            body[name] = chat[name]
    stop = chat.get("stop")
    if stop:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if chat.get("tools"):
        body["tools"] = [_tool(tool, f"tools.{i}") for i, tool in enumerate(chat["tools"])]
    if chat.get("tool_choice") is not None:
        body["tool_choice"] = _tool_choice(chat["tool_choice"])
    if isinstance(chat.get("user"), str):
        body["metadata"] = {"user_id": chat["user"]}
    if chat.get("stream") is True:
        body["stream"] = True
    return body


def _split_system(messages: list[Any]) -> tuple[str, list[dict[str, Any]]]:
    """System and developer messages become `system`; the rest alternate user/assistant turns,
    consecutive turns of one role merged (tool results are user turns in Anthropic's shape)."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        role = message.get("role")
        if role in ("system", "developer"):
            system.append(_text(message.get("content"), f"messages.{index}.content"))
            continue
        role, blocks = _blocks(message, f"messages.{index}")
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += blocks
        else:
            turns.append({"role": role, "content": blocks})
    return "\n\n".join(system), turns


def _text(content: Any, field: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    raise _invalid(field, "must be a string or a list of content parts")


def _blocks(message: Mapping[str, Any], field: str) -> tuple[str, list[dict[str, Any]]]:
    role, content = message.get("role"), message.get("content")
    if role == "tool":
        result = {"type": "tool_result", "tool_use_id": message.get("tool_call_id")}
        return "user", [{**result, "content": _text(content or "", f"{field}.content")}]
    if role == "assistant":
        blocks: list[dict[str, Any]] = []
        if content:
            blocks.append({"type": "text", "text": _text(content, f"{field}.content")})
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            blocks.append(
                {
                    "type": "tool_use",
                    "id": call.get("id"),
                    "name": function.get("name"),
                    "input": _arguments(function.get("arguments"), f"{field}.tool_calls"),
                }
            )
        return "assistant", blocks
    if isinstance(content, str):
        return "user", [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise _invalid(f"{field}.content", "must be a string or a list of content parts")
    return "user", [_user_part(part, f"{field}.content.{i}") for i, part in enumerate(content)]


def _arguments(text: Any, field: str) -> Any:
    try:
        return json.loads(text) if text else {}
    except (TypeError, ValueError) as exc:
        raise _invalid(field, "function arguments must be a JSON object") from exc


def _user_part(part: Any, field: str) -> dict[str, Any]:
    kind = part.get("type") if isinstance(part, Mapping) else None
    if kind == "text":
        return {"type": "text", "text": str(part.get("text", ""))}
    if kind == "image_url":
        url = str((part.get("image_url") or {}).get("url", ""))
        if url.startswith("data:") and ";base64," in url:
            media_type, data = url[5:].split(";base64,", 1)
            return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise _invalid(f"{field}.type", f"{kind!r} is not supported by Anthropic models")


def _tool(tool: Any, field: str) -> dict[str, Any]:
    function = tool.get("function") if isinstance(tool, Mapping) else None
    if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
        raise _invalid(f"{field}.function.name", "required")
    converted = {
        "name": function["name"],
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if function.get("description"):
        converted["description"] = function["description"]
    return converted


def _tool_choice(choice: Any) -> dict[str, Any]:
    if isinstance(choice, Mapping):
        return {"type": "tool", "name": (choice.get("function") or {}).get("name")}
    mapping = {"auto": "auto", "required": "any", "none": "none"}
    if choice not in mapping:
        raise _invalid("tool_choice", "must be auto, required, none or a function")
    return {"type": mapping[choice]}


# ---- answer: Anthropic Messages → OpenAI chat -----------------------------------------------------


def _usage(usage: Mapping[str, Any]) -> dict[str, Any]:
    return TokenUsage.from_anthropic(usage).openai()


def chat_from_message(message: Mapping[str, Any], model: str) -> dict[str, Any]:
    text, reasoning, calls = [], [], []
    for block in message.get("content") or []:
        if block.get("type") == "text":
            text.append(block.get("text", ""))
        elif block.get("type") == "thinking":
            reasoning.append(block.get("thinking", ""))
        elif block.get("type") == "tool_use":
            function = {"name": block.get("name"), "arguments": json.dumps(block.get("input") or {})}
            calls.append({"id": block.get("id"), "type": "function", "function": function})
    answer: dict[str, Any] = {"role": "assistant", "content": "".join(text) or None}
    if reasoning:
        answer["reasoning_content"] = "".join(reasoning)
    if calls:
        answer["tool_calls"] = calls
    finish = _FINISH_REASONS.get(str(message.get("stop_reason")), "stop")
    return {
        "id": f"chatcmpl-{message.get('id', '')}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": answer, "finish_reason": finish}],
        "usage": _usage(message.get("usage") or {}),
    }


def error_from_anthropic(body: bytes, status: int) -> bytes:
    """Anthropic's error envelope in OpenAI's shape."""
    try:
        error = json.loads(body).get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    message = str(error.get("message") or f"the provider answered {status}")
    kind = str(error.get("type") or "upstream_error")
    return json.dumps({"error": {"message": message, "type": kind, "code": kind}}).encode()


class _ChunkWriter:
    """OpenAI chat.completion.chunk events sharing one id, model and creation time."""

    def __init__(self, model: str) -> None:
        self.id = ""
        self.model = model
        self.created = int(time.time())

    def __call__(self, delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> bytes:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
        chunk = {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                 "model": self.model, "choices": choices, **extra}  # fmt: skip
        return data_event(chunk)


async def chat_stream(events: AsyncIterator[bytes], model: str) -> AsyncIterator[bytes]:
    """Translate Anthropic's streaming events into OpenAI chat chunks, ending with a usage chunk
    and `data: [DONE]` (what the gateway's accounting reads)."""
    write = _ChunkWriter(model)
    usage: dict[str, Any] = {}
    tools: dict[int, int] = {}  # Anthropic content-block index → OpenAI tool-call index
    async for data in data_payloads(events):
        event = json.loads(data)
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") or {}
            write.id = f"chatcmpl-{message.get('id', '')}"
            usage.update(message.get("usage") or {})
            yield write({"role": "assistant", "content": ""})
        elif kind == "content_block_start":
            block = event.get("content_block") or {}
            if block.get("type") == "tool_use":
                tools[event.get("index", 0)] = len(tools)
                call = {"index": tools[event.get("index", 0)], "id": block.get("id"), "type": "function",
                        "function": {"name": block.get("name"), "arguments": ""}}  # fmt: skip
                yield write({"tool_calls": [call]})
        elif kind == "content_block_delta":
            delta = _delta(event.get("delta") or {}, tools.get(event.get("index", 0), 0))
            if delta:
                yield write(delta)
        elif kind == "message_delta":
            usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
            reason = (event.get("delta") or {}).get("stop_reason")
            yield write({}, _FINISH_REASONS.get(str(reason), "stop"))
        elif kind == "error":
            error = event.get("error") or {}
            yield data_event({"error": {"message": error.get("message", "the provider failed"),
                                        "type": "upstream_error", "code": error.get("type")}})  # fmt: skip
            return
        elif kind == "message_stop":
            break
    yield write(None, usage=_usage(usage))
    yield b"data: [DONE]\n\n"


def _delta(delta: Mapping[str, Any], tool_index: int) -> dict[str, Any] | None:
    kind = delta.get("type")
    if kind == "text_delta":
        return {"content": delta.get("text", "")}
    if kind == "thinking_delta":
        return {"reasoning_content": delta.get("thinking", "")}
    if kind == "input_json_delta":
        return {
            "tool_calls": [{"index": tool_index, "function": {"arguments": delta.get("partial_json", "")}}]
        }
    return None  # signature deltas and future kinds carry nothing the OpenAI shape can hold


class AnthropicUpstream:
    """An Anthropic provider: OpenAI chat calls become Messages calls, its answers OpenAI's."""

    def request(self, call: Call, upstream_model: str) -> Call:
        if call.path != "/v1/chat/completions":
            raise ApiError(
                400,
                f"the model {call.model!r} (an Anthropic provider) serves only chat",
                "unsupported_endpoint",
            )
        body = messages_request(call.payload, upstream_model)
        return replace(call, path="/v1/messages", payload=body, body=json.dumps(body).encode())

    def answer(self, body: bytes, status: int, model: str) -> bytes:
        if status != 200:
            return error_from_anthropic(body, status)
        return json.dumps(chat_from_message(json.loads(body), model)).encode()

    def stream(self, chunks: AsyncIterator[bytes], model: str) -> AsyncIterator[bytes]:
        return chat_stream(chunks, model)


ANTHROPIC_UPSTREAM = AnthropicUpstream()
