"""OpenAI's Responses API, translated to and from chat completions, in front of any engine.

So that Codex and `client.responses.create(...)` work with every engine: `input` (a string, or
items — messages with `input_text`/`input_image`/`output_text` parts, `function_call`,
`function_call_output`; reasoning items tolerated) and `instructions` become chat messages;
function tools, `tool_choice`, `max_output_tokens` and `text.format` their chat equivalents; tools
of other types (web search, namespaces, custom) are left out and named in the
`x-sovra-ignored-tools` header. Answers come back as a response object and streams as the Responses
events (`response.created` … `response.completed`). Unknown fields are ignored, as OpenAI does.

A request is a turn (`ResponsesTurn`, one per request): it carries the conversation so far
(`previous_response_id`, read from the `ResponseStore` under the key's tenant) and stores the
response it produced unless `store` is false — before the client sees it complete, so the next
turn can refer to it at once.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import JSONResponse, Response

from sovra.access.dialects.base import Call
from sovra.access.dialects.usage import TokenUsage
from sovra.access.errors import ApiError, error_response
from sovra.access.keys import ApiKey
from sovra.access.response_store import ResponseStore, StoredResponse
from sovra.access.sse import data_payloads

__all__ = ["ResponsesClient", "ResponsesTurn", "chat_messages", "chat_request"]

log = logging.getLogger("sovra.access")
IGNORED_TOOLS_HEADER = "x-sovra-ignored-tools"
# Request fields echoed in the response object, with OpenAI's defaults.
_ECHOED = {
    "instructions": None,
    "max_output_tokens": None,
    "parallel_tool_calls": True,
    "temperature": None,
    "tool_choice": "auto",
    "top_p": None,
    "truncation": "disabled",
    "user": None,
    "metadata": {},
    "reasoning": {"effort": None, "summary": None},
    "text": {"format": {"type": "text"}},
}


def _invalid(field: str, reason: str) -> ApiError:
    return ApiError(400, f"{field}: {reason}", "invalid_request")


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


# ---- request: Responses → chat ----------------------------------------------------------------------


def input_items(value: Any) -> list[dict[str, Any]]:
    """The request's `input` as items, each with an id (input_items lists them so)."""
    if isinstance(value, str):
        value = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": value}]}]
    if not isinstance(value, list) or not value:
        raise _invalid("input", "required, a string or a non-empty list of items")
    items = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise _invalid(f"input.{index}", "an item must be an object")
        kind = item.get("type", "message")
        prefix = {"message": "msg", "function_call": "fc", "function_call_output": "fco"}.get(kind, "item")
        items.append({"id": _id(prefix), **item, "type": kind})
    return items


def chat_messages(items: list[dict[str, Any]], instructions: Any = None) -> list[dict[str, Any]]:
    """Chat messages for a conversation's items (`instructions` first, as the system message)."""
    messages: list[dict[str, Any]] = []
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    for index, item in enumerate(items):
        where = f"input.{index}"
        kind = item["type"]
        if kind == "message":
            messages.append(_message(item, where))
        elif kind == "function_call":
            call = {
                "id": str(item.get("call_id") or item.get("id")),
                "type": "function",
                "function": {
                    "name": _text(item.get("name"), f"{where}.name"),
                    "arguments": item.get("arguments") or "{}",
                },
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)  # parallel calls: one assistant turn
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            content = output if isinstance(output, str) else _joined(output, f"{where}.output")
            messages.append({"role": "tool", "tool_call_id": str(item.get("call_id")), "content": content})
        # reasoning items, references and other tools' calls: nothing an engine can be shown
    return messages


def _message(item: Mapping[str, Any], where: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in ("user", "assistant", "system", "developer"):
        raise _invalid(f"{where}.role", "one of user, assistant, system, developer")
    content = item.get("content")
    chat_role = "system" if role == "developer" else role  # engines' chat templates know `system`
    if isinstance(content, str):
        return {"role": chat_role, "content": content}
    if not isinstance(content, list):
        raise _invalid(f"{where}.content", "a string or a list of content parts")
    parts: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text", "refusal", "summary_text"):
            text = part.get("text", part.get("refusal"))
            parts.append({"type": "text", "text": _text(text, f"{where}.content.{index}.text")})
        elif kind == "input_image":
            url = part.get("image_url")
            if not isinstance(url, str):
                raise _invalid(f"{where}.content.{index}.image_url", "required (file ids are not kept here)")
            parts.append({"type": "image_url", "image_url": {"url": url}})
        else:
            raise _invalid(f"{where}.content.{index}.type", f"{kind!r} is not supported")
    if all(part["type"] == "text" for part in parts):
        return {"role": chat_role, "content": "".join(part["text"] for part in parts)}
    return {"role": chat_role, "content": parts}


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _invalid(where, "a string")
    return value


def _joined(parts: Any, where: str) -> str:
    if not isinstance(parts, list):
        raise _invalid(where, "a string or a list of content parts")
    return "".join(str(p.get("text", "")) for p in parts if isinstance(p, dict))


def chat_request(
    body: Mapping[str, Any], items: list[dict[str, Any]], model: str
) -> tuple[dict[str, Any], list[str]]:
    """The chat-completions body for a Responses request over `items` (the whole conversation),
    and the types of the tools left out."""
    chat: dict[str, Any] = {"model": model, "messages": chat_messages(items, body.get("instructions"))}
    if isinstance(body.get("max_output_tokens"), int):
        chat["max_tokens"] = body["max_output_tokens"]
    for name in ("temperature", "top_p", "parallel_tool_calls", "user"):
        if body.get(name) is not None:
            chat[name] = body[name]
    tools, ignored = [], []
    for index, tool in enumerate(body.get("tools") or []):
        if isinstance(tool, dict) and tool.get("type") == "function":
            function = {"name": _text(tool.get("name"), f"tools.{index}.name")}
            for key in ("description", "parameters", "strict"):
                if tool.get(key) is not None:
                    function[key] = tool[key]
            tools.append({"type": "function", "function": function})
        else:
            ignored.append(str(tool.get("type") if isinstance(tool, dict) else "?"))
    if tools:
        chat["tools"] = tools
        choice = body.get("tool_choice")
        if isinstance(choice, dict) and choice.get("type") == "function":
            chat["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
        elif choice in ("auto", "none", "required"):
            chat["tool_choice"] = choice
    text_format = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
    if isinstance(text_format, dict):
        if text_format.get("type") == "json_schema":
            schema = {
                k: text_format[k] for k in ("name", "schema", "strict", "description") if k in text_format
            }
            chat["response_format"] = {"type": "json_schema", "json_schema": schema}
        elif text_format.get("type") == "json_object":
            chat["response_format"] = {"type": "json_object"}
    if body.get("stream") is True:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return chat, ignored


# ---- answer: chat → Responses -----------------------------------------------------------------------


def output_items(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A chat answer's message as Responses output items: reasoning, text, function calls."""
    items: list[dict[str, Any]] = []
    reasoning = message.get("reasoning_content")
    if isinstance(reasoning, str) and reasoning:
        items.append(_reasoning_item(_id("rs"), reasoning))
    content = message.get("content")
    if isinstance(content, str) and content:
        items.append(_message_item(_id("msg"), content))
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        items.append(
            _call_item(
                _id("fc"),
                str(call.get("id") or _id("call")),
                function.get("name", ""),
                function.get("arguments") or "",
            )
        )
    return items


def _reasoning_item(item_id: str, text: str) -> dict[str, Any]:
    return {
        "type": "reasoning",
        "id": item_id,
        "summary": [],
        "content": [{"type": "reasoning_text", "text": text}],
    }


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    content = [_text_part(text)] if status == "completed" else []
    return {"type": "message", "id": item_id, "status": status, "role": "assistant", "content": content}


def _call_item(
    item_id: str, call_id: str, name: str, arguments: str, status: str = "completed"
) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


@dataclass
class ResponsesTurn:
    """One request to /v1/responses: its conversation, and where its response is kept."""

    store: ResponseStore | None
    tenant: str
    body: Mapping[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    id: str = field(default_factory=lambda: _id("resp"))
    created_at: int = field(default_factory=lambda: int(time.time()))
    items: list[dict[str, Any]] = field(default_factory=list)
    ignored_tools: list[str] = field(default_factory=list)

    reports_usage = True  # response.completed carries the usage whatever the client asked

    def request(
        self,
        path: str,
        payload: dict[str, Any],
        raw: bytes,
        model: str,
        upstream_model: str,
        stream_fields: Mapping[str, Any],
    ) -> Call:
        chat = {**payload, "model": upstream_model}
        stream = chat.get("stream") is True
        if stream:
            chat.update(stream_fields)
        return Call("/v1/chat/completions", chat, json.dumps(chat).encode(), model, stream)

    def response(
        self, model: str, status: str, output: list[dict[str, Any]], usage: TokenUsage | None
    ) -> dict[str, Any]:
        body = self.body
        echoed = {
            name: default if body.get(name) is None else body[name] for name, default in _ECHOED.items()
        }
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            "model": model,
            "output": output,
            "previous_response_id": body.get("previous_response_id"),
            "store": body.get("store") is not False,
            "tools": body.get("tools") or [],
            "usage": usage.responses() if usage is not None else None,
            **echoed,
        }

    async def keep(self, response: dict[str, Any]) -> None:
        """Store the response (unless the request said `store: false`). A store that fails costs the
        continuation, not the answer: it is logged and the client still gets what the model said."""
        if self.store is None or self.body.get("store") is False:
            return
        stored = StoredResponse(self.id, self.tenant, time.time(), self.history + self.items, response)
        try:
            await self.store.save(stored)
        except Exception:
            log.exception("a response could not be stored", extra={"response": self.id})

    async def answer(self, body: bytes, status: int, content_type: str, model: str) -> Response:
        try:
            answer = json.loads(body)
        except ValueError:
            answer = {}
        if status != 200 or not isinstance(answer, dict):
            return Response(body, status_code=status, media_type=content_type)  # OpenAI's envelope already
        choice = (answer.get("choices") or [{}])[0]
        output = output_items(choice.get("message") or {})
        finish = "incomplete" if choice.get("finish_reason") == "length" else "completed"
        usage = TokenUsage.from_openai(answer.get("usage") or {})
        response = self.response(model, finish, output, usage)
        await self.keep(response)
        return JSONResponse(response, headers=self.headers())

    def headers(self) -> dict[str, str]:
        return {IGNORED_TOOLS_HEADER: ",".join(self.ignored_tools)} if self.ignored_tools else {}

    def stream(self, chunks: AsyncIterator[bytes], model: str) -> AsyncIterator[bytes]:
        return _ResponseEvents(self, model).run(chunks)

    def error(self, error: ApiError) -> Response:
        return error_response(error)


class _ResponseEvents:
    """Chat chunks → Responses events, one output item open at a time (text, or a function call)."""

    def __init__(self, turn: ResponsesTurn, model: str) -> None:
        self.turn = turn
        self.model = model
        self.sequence = 0
        self.output: list[dict[str, Any]] = []
        self.open: dict[str, Any] | None = None  # the item being streamed
        self.text = ""
        self.calls: dict[int, dict[str, Any]] = {}  # chat's tool-call index → its item

    def event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return f"event: {kind}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()

    async def run(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        response = self.turn.response(self.model, "in_progress", [], None)
        yield self.event("response.created", response=response)
        yield self.event("response.in_progress", response=response)
        usage: TokenUsage | None = None
        finish = "completed"
        async for data in data_payloads(chunks):
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            if "error" in chunk:
                for event in self.close():
                    yield event
                error = chunk.get("error") or {}
                failed = self.turn.response(self.model, "failed", self.output, usage)
                failed["error"] = {
                    "code": "server_error",
                    "message": str(error.get("message", "the engine failed")),
                }
                yield self.event("response.failed", response=failed)
                return
            if chunk.get("usage"):
                usage = TokenUsage.from_openai(chunk["usage"])
            for choice in chunk.get("choices") or []:
                for event in self.delta(choice.get("delta") or {}):
                    yield event
                if choice.get("finish_reason") == "length":
                    finish = "incomplete"
        for event in self.close():
            yield event
        done = self.turn.response(self.model, finish, self.output, usage)
        await self.turn.keep(done)
        yield self.event(
            "response.completed" if finish == "completed" else "response.incomplete", response=done
        )

    def delta(self, delta: Mapping[str, Any]) -> list[bytes]:
        events: list[bytes] = []
        if delta.get("reasoning_content"):
            if self.open is None or self.open["type"] != "reasoning":
                events += self.close()
                events += self.start({"type": "reasoning", "id": _id("rs"), "summary": [], "content": []})
            self.text += delta["reasoning_content"]
            events.append(
                self.event(
                    "response.reasoning_text.delta",
                    item_id=self.open_id,
                    output_index=self.index,
                    content_index=0,
                    delta=delta["reasoning_content"],
                )
            )
        if delta.get("content"):
            if self.open is None or self.open["type"] != "message":
                events += self.close()
                events += self.start(_message_item(_id("msg"), "", "in_progress"))
                events.append(
                    self.event(
                        "response.content_part.added",
                        item_id=self.open_id,
                        output_index=self.index,
                        content_index=0,
                        part=_text_part(""),
                    )
                )
            self.text += delta["content"]
            events.append(
                self.event(
                    "response.output_text.delta",
                    item_id=self.open_id,
                    output_index=self.index,
                    content_index=0,
                    delta=delta["content"],
                    logprobs=[],
                )
            )
        for call in delta.get("tool_calls") or []:
            function = call.get("function") or {}
            index = int(call.get("index", 0))
            if index not in self.calls:
                events += self.close()
                item = _call_item(
                    _id("fc"),
                    str(call.get("id") or _id("call")),
                    function.get("name") or "",
                    "",
                    "in_progress",
                )
                self.calls[index] = item
                events += self.start(item)
            item = self.calls[index]
            if function.get("arguments"):
                item["arguments"] += function["arguments"]
                events.append(
                    self.event(
                        "response.function_call_arguments.delta",
                        item_id=item["id"],
                        output_index=self.output.index(item),
                        delta=function["arguments"],
                    )
                )
        return events

    @property
    def open_id(self) -> str:
        assert self.open is not None
        return str(self.open["id"])

    @property
    def index(self) -> int:
        return len(self.output) - 1

    def start(self, item: dict[str, Any]) -> list[bytes]:
        self.open = item
        self.output.append(item)
        return [self.event("response.output_item.added", output_index=self.index, item=dict(item))]

    def close(self) -> list[bytes]:
        """End the open item (its .done events)."""
        item, self.open = self.open, None
        if item is None:
            return []
        index = self.output.index(item)
        events = []
        item["status"] = "completed"
        if item["type"] == "reasoning":
            item["content"] = [{"type": "reasoning_text", "text": self.text}]
            events.append(
                self.event(
                    "response.reasoning_text.done",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    text=self.text,
                )
            )
            self.text = ""
        elif item["type"] == "message":
            part = _text_part(self.text)
            item["content"] = [part]
            events.append(
                self.event(
                    "response.output_text.done",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    text=self.text,
                    logprobs=[],
                )
            )
            events.append(
                self.event(
                    "response.content_part.done",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    part=part,
                )
            )
            self.text = ""
        else:
            events.append(
                self.event(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=index,
                    arguments=item["arguments"],
                    name=item["name"],
                )
            )
        events.append(self.event("response.output_item.done", output_index=index, item=item))
        return events


class ResponsesClient:
    """The /v1/responses endpoint's API: each request begins its own turn."""

    def __init__(self, store: ResponseStore | None) -> None:
        self._store = store

    async def begin(self, payload: dict[str, Any], key: ApiKey) -> tuple[ResponsesTurn, dict[str, Any]]:
        """The turn for this request, with its conversation so far, and the chat request the rest
        of the gateway reads (routing, bounds, images) and sends."""
        history: list[dict[str, Any]] = []
        previous = payload.get("previous_response_id")
        if previous is not None:
            stored = await self._store.get(key.tenant, str(previous)) if self._store is not None else None
            if stored is None:
                raise ApiError(
                    400, f"previous_response_id: no response {previous!r}", "previous_response_not_found"
                )
            history = [*stored.input_items, *stored.response.get("output", [])]
        turn = ResponsesTurn(self._store, key.tenant, dict(payload), history)
        turn.items = input_items(payload.get("input"))
        chat, turn.ignored_tools = chat_request(payload, history + turn.items, str(payload.get("model", "")))
        return turn, chat

    def error(self, error: ApiError) -> Response:
        return error_response(error)
