"""The Anthropic Messages API, translated to and from OpenAI chat completions.

So that Claude Code style clients work in front of any engine: requests (system, content blocks,
images, tools, tool_use / tool_result, stop sequences, tool_choice) become a chat completion;
answers come back as a Message, and streams as Anthropic's events (message_start, content blocks,
message_delta, message_stop). Pure functions over JSON; no I/O.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

from starlette.responses import JSONResponse, Response

from sovra.access.dialects.base import Call, ClientDialect
from sovra.access.dialects.usage import TokenUsage
from sovra.access.errors import ApiError
from sovra.access.keys import ApiKey
from sovra.access.sse import data_payloads

__all__ = [
    "ANTHROPIC_CLIENT",
    "ERROR_TYPES",
    "AnthropicClient",
    "chat_request",
    "error_body",
    "message_from_chat",
    "message_stream",
]

_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
}
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
}
_SAMPLING = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "stop_sequences": "stop"}


def error_body(status: int, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message}}


def _invalid(field: str, reason: str) -> ApiError:
    return ApiError(400, f"{field}: {reason}", "invalid_request")


# ---- request: Anthropic → OpenAI ------------------------------------------------------------------


def chat_request(body: Mapping[str, Any], model: str) -> dict[str, Any]:
    """An OpenAI chat-completions body for an Anthropic Messages body."""
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or max_tokens < 1:
        raise _invalid("max_tokens", "required, a positive integer")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _invalid("messages", "required, a non-empty list")
    chat: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "messages": _system(body.get("system"))}
    for index, message in enumerate(messages):
        chat["messages"] += _messages(message, f"messages.{index}")
    for source, target in _SAMPLING.items():
        if source in body:
            chat[target] = body[source]
    if body.get("tools"):
        chat["tools"] = [_tool(tool, f"tools.{i}") for i, tool in enumerate(body["tools"])]
    if "tool_choice" in body:
        chat["tool_choice"] = _tool_choice(body["tool_choice"])
    if body.get("stream") is True:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return chat


def _text_of(content: Any, field: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(_block_text(block, f"{field}.{i}") for i, block in enumerate(content))
    raise _invalid(field, "must be a string or a list of content blocks")


def _block_text(block: Any, field: str) -> str:
    if (
        not isinstance(block, Mapping)
        or block.get("type") != "text"
        or not isinstance(block.get("text"), str)
    ):
        raise _invalid(field, "expected a text block")
    return str(block["text"])


def _system(system: Any) -> list[dict[str, Any]]:
    if system is None or system == "":
        return []
    return [{"role": "system", "content": _text_of(system, "system")}]


def _messages(message: Any, field: str) -> list[dict[str, Any]]:
    if not isinstance(message, Mapping) or message.get("role") not in ("user", "assistant"):
        raise _invalid(f"{field}.role", "must be 'user' or 'assistant'")
    role, content = str(message["role"]), message.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise _invalid(f"{field}.content", "must be a string or a list of content blocks")
    if role == "assistant":
        return [_assistant(content, field)]
    return _user(content, field)


def _assistant(blocks: list[Any], field: str) -> dict[str, Any]:
    text, calls = [], []
    for i, block in enumerate(blocks):
        kind = block.get("type") if isinstance(block, Mapping) else None
        if kind == "text":
            text.append(_block_text(block, f"{field}.content.{i}"))
        elif kind == "tool_use":
            where = f"{field}.content.{i}"
            for name in ("id", "name"):
                if not isinstance(block.get(name), str) or not block[name]:
                    raise _invalid(f"{where}.{name}", "required: a non-empty string")
            if not isinstance(block.get("input", {}), Mapping):
                raise _invalid(f"{where}.input", "must be an object")
            arguments = json.dumps(block.get("input") or {})
            calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": arguments},
                }
            )
        elif kind not in ("thinking", "redacted_thinking"):
            raise _invalid(f"{field}.content.{i}.type", f"{kind!r} is not supported in assistant turns")
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) or None}
    if calls:
        message["tool_calls"] = calls
    return message


def _user(blocks: list[Any], field: str) -> list[dict[str, Any]]:
    """Tool results become `tool` messages (which must come first); the rest one user message."""
    results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for i, block in enumerate(blocks):
        where = f"{field}.content.{i}"
        kind = block.get("type") if isinstance(block, Mapping) else None
        if kind == "text":
            parts.append({"type": "text", "text": _block_text(block, where)})
        elif kind == "image":
            parts.append({"type": "image_url", "image_url": {"url": _image_url(block.get("source"), where)}})
        elif kind == "tool_result":
            result = block.get("content", "")
            text = _text_of(result, f"{where}.content") if result else ""
            if block.get("is_error"):
                text = f"Error: {text}"
            if not isinstance(block.get("tool_use_id"), str) or not block["tool_use_id"]:
                raise _invalid(f"{where}.tool_use_id", "required: a non-empty string")
            results.append({"role": "tool", "tool_call_id": block["tool_use_id"], "content": text})
        else:
            raise _invalid(f"{where}.type", f"{kind!r} is not supported in user turns")
    if not parts:
        return results
    only_text = all(p["type"] == "text" for p in parts)
    content: Any = "".join(p["text"] for p in parts) if only_text else parts
    return [*results, {"role": "user", "content": content}]


def _image_url(source: Any, field: str) -> str:
    if isinstance(source, Mapping) and source.get("type") == "base64":
        return f"data:{source.get('media_type')};base64,{source.get('data')}"
    if isinstance(source, Mapping) and source.get("type") == "url":
        return str(source.get("url"))
    raise _invalid(f"{field}.source", "expected a base64 or url image source")


def _tool(tool: Any, field: str) -> dict[str, Any]:
    if not isinstance(tool, Mapping) or not isinstance(tool.get("name"), str):
        raise _invalid(f"{field}.name", "required")
    function = {"name": tool["name"], "parameters": tool.get("input_schema") or {"type": "object"}}
    if tool.get("description"):
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


def _tool_choice(choice: Any) -> Any:
    kind = choice.get("type") if isinstance(choice, Mapping) else None
    if kind == "tool":
        return {"type": "function", "function": {"name": choice.get("name")}}
    mapping = {"auto": "auto", "any": "required", "none": "none"}
    if kind not in mapping:
        raise _invalid("tool_choice.type", "must be auto, any, tool or none")
    return mapping[kind]


# ---- answer: OpenAI → Anthropic -------------------------------------------------------------------


def _usage(usage: Any) -> dict[str, int]:
    return TokenUsage.from_openai(usage if isinstance(usage, Mapping) else {}).anthropic()


def _arguments(text: str) -> Any:
    try:
        return json.loads(text) if text else {}
    except ValueError:
        return {"_raw": text}  # the model produced invalid JSON; keep it visible rather than drop it


def message_from_chat(chat: Mapping[str, Any], model: str) -> dict[str, Any]:
    choice = (chat.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    if message.get("reasoning_content"):  # an engine's reasoning (llama-server, vLLM) is thinking here
        content.append({"type": "thinking", "thinking": message["reasoning_content"], "signature": ""})
    if message.get("content"):
        content.append({"type": "text", "text": message["content"]})
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id"),
                "name": function.get("name"),
                "input": _arguments(function.get("arguments") or ""),
            }
        )
    return {
        "id": f"msg_{uuid.uuid4().hex}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": _STOP_REASONS.get(choice.get("finish_reason") or "stop", "end_turn"),
        "stop_sequence": None,
        "usage": _usage(chat.get("usage")),
    }


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps({'type': name, **payload}, separators=(',', ':'))}\n\n".encode()


class _StreamState:
    """Which content block is open, so text and tool calls become well-formed block sequences."""

    def __init__(self) -> None:
        self.index = -1
        self.open: str | None = None  # "text", "thinking", or the OpenAI tool-call index as "tool:<n>"

    def switch(self, to: str, start: dict[str, Any]) -> list[bytes]:
        if self.open == to:
            return []
        events = self.close()
        self.index += 1
        self.open = to
        return [*events, _event("content_block_start", {"index": self.index, "content_block": start})]

    def close(self) -> list[bytes]:
        if self.open is None:
            return []
        self.open = None
        return [_event("content_block_stop", {"index": self.index})]


async def message_stream(chunks: AsyncIterator[bytes], model: str) -> AsyncIterator[bytes]:
    """Translate an OpenAI chat SSE stream (with its usage event) into Anthropic message events."""
    state = _StreamState()
    stop_reason = "end_turn"
    usage = _usage(None)
    start: dict[str, Any] = {
        "id": f"msg_{uuid.uuid4().hex}", "type": "message", "role": "assistant", "model": model,
        "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage,
    }  # fmt: skip
    yield _event("message_start", {"message": start})
    async for data in data_payloads(chunks):
        if data == "[DONE]":
            break
        chunk = json.loads(data)
        if "error" in chunk:
            message = str((chunk.get("error") or {}).get("message", "the engine failed"))
            yield _event("error", {"error": {"type": "api_error", "message": message}})
            return
        if chunk.get("usage"):
            usage = _usage(chunk["usage"])
        for choice in chunk.get("choices") or []:
            events, finish = _choice_events(choice, state)
            for event in events:
                yield event
            stop_reason = _STOP_REASONS.get(finish, stop_reason) if finish else stop_reason
    for event in state.close():
        yield event
    yield _event(
        "message_delta", {"delta": {"stop_reason": stop_reason, "stop_sequence": None}, "usage": usage}
    )
    yield _event("message_stop", {})


def _choice_events(choice: Mapping[str, Any], state: _StreamState) -> tuple[list[bytes], str | None]:
    events: list[bytes] = []
    delta = choice.get("delta") or {}
    if delta.get("reasoning_content"):  # thinking, interleaved with text and tool calls as it comes
        events += state.switch("thinking", {"type": "thinking", "thinking": "", "signature": ""})
        piece = {"type": "thinking_delta", "thinking": delta["reasoning_content"]}
        events.append(_event("content_block_delta", {"index": state.index, "delta": piece}))
    if delta.get("content"):
        events += state.switch("text", {"type": "text", "text": ""})
        events.append(
            _event(
                "content_block_delta",
                {"index": state.index, "delta": {"type": "text_delta", "text": delta["content"]}},
            )
        )
    for call in delta.get("tool_calls") or []:
        function = call.get("function") or {}
        if call.get("id") or f"tool:{call.get('index', 0)}" != state.open:
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{uuid.uuid4().hex[:24]}",
                "name": function.get("name"),
                "input": {},
            }
            events += state.switch(f"tool:{call.get('index', 0)}", block)
        if function.get("arguments"):
            piece = {"type": "input_json_delta", "partial_json": function["arguments"]}
            events.append(_event("content_block_delta", {"index": state.index, "delta": piece}))
    return events, choice.get("finish_reason")


def _as_message(body: bytes, status: int, model: str) -> Response:
    try:
        answer = json.loads(body)
    except ValueError:
        answer = {}
    if status == 200:
        return JSONResponse(message_from_chat(answer, model))
    error = answer.get("error") if isinstance(answer, dict) else None
    message = str(error.get("message")) if isinstance(error, dict) else f"the engine answered {status}"
    return JSONResponse(error_body(status, message), status_code=status)


class AnthropicClient:
    """Anthropic Messages clients (Claude Code and the like), served by any upstream."""

    reports_usage = True  # message_delta carries the usage: the stream needs it whatever was asked

    def request(
        self,
        path: str,
        payload: dict[str, Any],
        raw: bytes,
        model: str,
        upstream_model: str,
        stream_fields: Mapping[str, Any],
    ) -> Call:
        chat = chat_request(payload, upstream_model)
        stream = chat.get("stream") is True
        if stream:
            chat.update(stream_fields)
        return Call("/v1/chat/completions", chat, json.dumps(chat).encode(), model, stream)

    async def begin(self, payload: dict[str, Any], key: ApiKey) -> tuple[ClientDialect, dict[str, Any]]:
        return self, payload

    async def answer(self, body: bytes, status: int, content_type: str, model: str) -> Response:
        return _as_message(body, status, model)

    def stream(self, chunks: AsyncIterator[bytes], model: str) -> AsyncIterator[bytes]:
        return message_stream(chunks, model)

    def error(self, error: ApiError) -> Response:
        return JSONResponse(error_body(error.status, error.message), error.status, error.headers)


ANTHROPIC_CLIENT = AnthropicClient()
