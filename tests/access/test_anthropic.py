"""The Anthropic Messages translation, and the real `anthropic` SDK against the gateway.

Tool calls come from a scripted upstream: the tiny default model cannot produce them reliably."""

import json
from collections.abc import AsyncIterator

import anthropic
import httpx2
import pytest

from sovra.access.dialects.anthropic import chat_request, message_from_chat, message_stream
from sovra.access.errors import ApiError
from tests.access.test_gateway import (
    TOKEN,
    FakeResponse,
    ScriptedUpstream,
    client,
    gateway_app,
    replica,
    served,
    sse,
)

pytestmark = pytest.mark.anyio

WEATHER = {"name": "get_weather", "description": "Weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}  # fmt: skip


def test_a_conversation_with_tools_becomes_a_chat_completion() -> None:
    body = {
        "model": "ignored",
        "max_tokens": 100,
        "system": [{"type": "text", "text": "Be brief."}],
        "stop_sequences": ["END"],
        "temperature": 0.2,
        "tools": [WEATHER],
        "tool_choice": {"type": "tool", "name": "get_weather"},
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "18C"}]},
                {"type": "text", "text": "Thanks"},
            ]},
        ],
    }  # fmt: skip
    chat = chat_request(body, "m")
    assert chat["model"] == "m" and chat["max_tokens"] == 100 and chat["stop"] == ["END"]
    assert chat["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
        ]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
        {"role": "user", "content": "Thanks"},
    ]  # fmt: skip
    assert chat["tools"][0]["function"]["parameters"] == WEATHER["input_schema"]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, "max_tokens"),
        ({"max_tokens": 5, "messages": []}, "messages"),
        ({"max_tokens": 5, "messages": [{"role": "robot", "content": "hi"}]}, "messages.0.role"),
        (
            {"max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "video"}]}]},
            "messages.0.content.0.type",
        ),
        (
            {
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "x"}],
                "tool_choice": {"type": "maybe"},
            },
            "tool_choice.type",
        ),
    ],
)
def test_bad_requests_name_the_field(body: dict[str, object], field: str) -> None:
    with pytest.raises(ApiError) as caught:
        chat_request(body, "m")
    assert caught.value.status == 400 and caught.value.message.startswith(f"{field}: ")


def test_an_answer_with_tool_calls_becomes_tool_use_blocks() -> None:
    chat = {
        "choices": [{"finish_reason": "tool_calls", "message": {"content": "Let me check.", "tool_calls": [
            {"id": "call_9", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}
        ]}}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 4}},
    }  # fmt: skip
    message = message_from_chat(chat, "m")
    assert message["stop_reason"] == "tool_use"
    assert message["content"] == [
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "call_9", "name": "get_weather", "input": {"city": "Oslo"}},
    ]
    # Anthropic counts cache reads apart from input_tokens: 20 prompt tokens, 4 of them cached.
    assert message["usage"] == {"input_tokens": 16, "output_tokens": 7, "cache_read_input_tokens": 4}
    truncated = message_from_chat(
        {"choices": [{"finish_reason": "length", "message": {"content": "a"}}]}, "m"
    )
    assert truncated["stop_reason"] == "max_tokens"


TOOL_STREAM = [
    {"choices": [{"delta": {"role": "assistant", "content": "Sure."}}]},
    {"choices": [{"delta": {"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "get_weather", "arguments": ""}}]}}]},
    {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}}]},
    {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": '"Rome"}'}}]}}]},
    {"choices": [{"delta": {}, "finish_reason": "tool_calls"}]},
    {"choices": [], "usage": {"prompt_tokens": 30, "completion_tokens": 12}},
]  # fmt: skip


def sse_text(events: list[dict[str, object]]) -> str:
    return "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"


async def test_a_streamed_tool_call_becomes_anthropic_events() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield sse_text(TOOL_STREAM).encode()

    events = [
        json.loads(block.split(b"data: ", 1)[1]) async for block in _split(message_stream(chunks(), "m"))
    ]
    assert [e["type"] for e in events] == [
        "message_start",
        "content_block_start", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
        "message_delta", "message_stop",
    ]  # fmt: skip
    assert events[4]["content_block"] == {
        "type": "tool_use",
        "id": "call_1",
        "name": "get_weather",
        "input": {},
    }
    assert events[5]["delta"] == {"type": "input_json_delta", "partial_json": '{"city":'}
    assert events[8]["delta"]["stop_reason"] == "tool_use" and events[8]["usage"]["output_tokens"] == 12


async def test_an_engines_reasoning_becomes_thinking_interleaved_with_tool_calls() -> None:
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    deltas = [{"reasoning_content": "Let me "}, {"reasoning_content": "think."}, {"tool_calls": [call]},
              {"reasoning_content": "Now answer."}, {"content": "Done."}]  # fmt: skip
    stream = [{"choices": [{"index": 0, "delta": d}]} for d in deltas] + [
        {"choices": [], "usage": {"prompt_tokens": 3}}
    ]

    async def chunks() -> AsyncIterator[bytes]:
        yield "".join(f"data: {json.dumps(e)}\n\n" for e in stream).encode() + b"data: [DONE]\n\n"

    events = [json.loads(b.split(b"data: ", 1)[1]) async for b in _split(message_stream(chunks(), "m"))]
    blocks = [e["content_block"]["type"] for e in events if e["type"] == "content_block_start"]
    assert blocks == ["thinking", "tool_use", "thinking", "text"]
    thinking = [e["delta"]["thinking"] for e in events if e.get("delta", {}).get("type") == "thinking_delta"]
    assert thinking == ["Let me ", "think.", "Now answer."]
    whole = {
        "choices": [
            {"message": {"reasoning_content": "Because.", "content": "Yes."}, "finish_reason": "stop"}
        ]
    }
    assert [b["type"] for b in message_from_chat(whole, "m")["content"]] == ["thinking", "text"]


async def _split(stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    async for chunk in stream:
        for block in chunk.split(b"\n\n"):
            if block:
                yield block


class ToolUpstream(ScriptedUpstream):
    """Answers any request that offers tools with a call to the first tool."""

    def _answer(self, path: str, body: dict[str, object]) -> FakeResponse:
        if not body.get("tools"):
            return super()._answer(path, body)
        if body.get("stream"):
            return sse(sse_text(TOOL_STREAM))
        message = {"content": None, "tool_calls": [{"id": "call_2", "type": "function",
                   "function": {"name": "get_weather", "arguments": '{"city":"Lyon"}'}}]}  # fmt: skip
        answer = {
            "choices": [{"finish_reason": "tool_calls", "message": message}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 4},
        }
        return FakeResponse(200, json.dumps(answer))


def sdk(upstream: ScriptedUpstream, token: str = TOKEN) -> anthropic.AsyncAnthropic:
    """The real Anthropic SDK, talking to the real gateway app in memory."""
    app = gateway_app(upstream, {"m": served("m", [replica(1001)])})
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://gateway")
    return anthropic.AsyncAnthropic(base_url="http://gateway", api_key=token, http_client=http, max_retries=0)


async def test_the_anthropic_sdk_gets_tool_use_plain_and_streamed() -> None:
    upstream = ToolUpstream()
    ask = {
        "model": "m",
        "max_tokens": 64,
        "tools": [WEATHER],
        "messages": [{"role": "user", "content": "Lyon?"}],
    }
    async with sdk(upstream) as claude:
        message = await claude.messages.create(**ask)  # type: ignore[arg-type]
        assert message.stop_reason == "tool_use"
        (call,) = message.content
        assert (call.type, call.name, call.input) == ("tool_use", "get_weather", {"city": "Lyon"})  # type: ignore[union-attr]
        assert (message.usage.input_tokens, message.usage.output_tokens) == (9, 4)
        async with claude.messages.stream(**ask) as stream:  # type: ignore[arg-type]
            final = await stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert [b.type for b in final.content] == ["text", "tool_use"]
    assert final.content[1].input == {"city": "Rome"}  # type: ignore[union-attr]
    assert final.usage.output_tokens == 12
    assert json.loads(upstream.seen[-1].body)["tools"][0]["function"]["name"] == "get_weather"


async def test_errors_on_messages_use_the_anthropic_envelope() -> None:
    upstream = ScriptedUpstream()
    ask = {"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    async with sdk(upstream, "sk-wrong") as stranger:
        with pytest.raises(anthropic.AuthenticationError):
            await stranger.messages.create(model="m", **ask)  # type: ignore[arg-type]
    async with sdk(upstream) as claude:
        with pytest.raises(anthropic.NotFoundError) as missing:
            await claude.messages.create(model="nope", **ask)  # type: ignore[arg-type]
    assert missing.value.body == {
        "type": "error",
        "error": {"type": "not_found_error", "message": "the model 'nope' does not exist"},
    }
    async with client(upstream, {"m": served("m", [replica(1001)])}) as gateway:
        raw = await gateway.post(
            "/v1/messages", json={"model": "m", "messages": []}, headers={"x-api-key": TOKEN}
        )
    assert raw.status_code == 400 and raw.json()["error"]["message"].startswith("max_tokens: ")
