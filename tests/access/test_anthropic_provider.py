"""An Anthropic provider behind the gateway: OpenAI (and Anthropic) clients reach it through the
translation. The provider is scripted (aiohttp.web on loopback, speaking the Messages API as
documented); the gateway, its real HttpUpstream and the official SDKs are real."""

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from aiohttp import web

from sovra.access.app import create_app
from sovra.access.auth import TokenVerifier
from sovra.access.dialects.anthropic_provider import messages_request
from sovra.access.errors import ApiError
from sovra.access.providers import provider_pools
from sovra.access.upstream import HttpUpstream
from sovra.config import Provider
from tests.access.loopback import serving
from tests.access.test_gateway import TOKEN, Ledger

pytestmark = pytest.mark.anyio

USAGE = {"input_tokens": 11, "output_tokens": 2, "cache_read_input_tokens": 5}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]  # fmt: skip


def _answer(body: dict[str, Any]) -> dict[str, Any]:
    if body.get("tools"):
        content = [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Lyon"}}]
        return {"content": content, "stop_reason": "tool_use"}
    return {"content": [{"type": "text", "text": "Bonjour"}], "stop_reason": "end_turn"}


def _events(body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    start = {"id": "msg_1", "type": "message", "role": "assistant", "model": body["model"], "content": [],
             "stop_reason": None, "usage": {**USAGE, "output_tokens": 1}}  # fmt: skip
    events = [("message_start", {"message": start}), ("ping", {})]
    if body.get("tools"):
        block = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}
        pieces = [{"type": "input_json_delta", "partial_json": p} for p in ('{"city"', ': "Lyon"}')]
    else:
        block = {"type": "text", "text": ""}
        pieces = [{"type": "text_delta", "text": p} for p in ("Bon", "jour")]
    events.append(("content_block_start", {"index": 0, "content_block": block}))
    events += [("content_block_delta", {"index": 0, "delta": p}) for p in pieces]
    events.append(("content_block_stop", {"index": 0}))
    reason = _answer(body)["stop_reason"]
    events.append(("message_delta", {"delta": {"stop_reason": reason}, "usage": {"output_tokens": 2}}))
    return [*events, ("message_stop", {})]


betas: list[str | None] = []  # the anthropic-beta header of each request the provider got


@pytest.fixture
async def provider() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A scripted Anthropic Messages API that insists on its key and version header."""
    seen: list[dict[str, Any]] = []
    betas.clear()

    async def messages(request: web.Request) -> web.StreamResponse:
        if request.headers.get("x-api-key") != "sk-ant" or not request.headers.get("anthropic-version"):
            error = {"type": "authentication_error", "message": "invalid x-api-key"}
            return web.json_response({"type": "error", "error": error}, status=401)
        body = await request.json()
        seen.append(body)
        betas.append(request.headers.get("anthropic-beta"))
        if not body.get("stream"):
            message = {"id": "msg_1", "type": "message", "role": "assistant", "model": body["model"]}
            return web.json_response({**message, **_answer(body), "usage": USAGE})
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for name, data in _events(body):
            await response.write(f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n".encode())
            await asyncio.sleep(0)
        return response

    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    async with serving(app) as url:
        yield f"{url}/v1", seen


@pytest.fixture
async def gateway(
    provider: tuple[str, list[dict[str, Any]]],
) -> AsyncIterator[tuple[httpx2.AsyncClient, Ledger]]:
    config = Provider(name="anthropic", kind="anthropic", base_url=provider[0], api_key_env="ANT_KEY",
                      models={"claude": "claude-sonnet-4-5"})  # fmt: skip
    pools = provider_pools((config,), {"ANT_KEY": "sk-ant"}, taken=set())
    ledger = Ledger()
    upstream = HttpUpstream(timeout=10)
    app = create_app(
        pools, TokenVerifier({"test": TokenVerifier.digest(TOKEN)}), usage=ledger, upstream=upstream
    )
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://gateway") as http:
        yield http, ledger
    await upstream.aclose()


def _openai(http: httpx2.AsyncClient) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url="http://gateway/v1", api_key=TOKEN, http_client=http, max_retries=0)


async def test_an_openai_client_chats_with_an_anthropic_provider(
    gateway: tuple[httpx2.AsyncClient, Ledger], provider: tuple[str, list[dict[str, Any]]]
) -> None:
    http, ledger = gateway
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hello in French"},
    ]
    reply = await _openai(http).chat.completions.create(model="claude", messages=messages)  # type: ignore[arg-type]
    assert reply.choices[0].message.content == "Bonjour" and reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (16, 2)
    sent = provider[1][0]
    assert sent["model"] == "claude-sonnet-4-5" and sent["system"] == "Be brief."
    assert sent["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Say hello in French"}]}
    ]
    assert sent["max_tokens"] == 4096  # Anthropic requires it; the client left it out
    (row,) = ledger.rows
    assert (row.served_model, row.input_tokens, row.output_tokens, row.cached_tokens) == ("claude", 16, 2, 5)


async def test_streams_and_tool_calls_are_translated(
    gateway: tuple[httpx2.AsyncClient, Ledger], provider: tuple[str, list[dict[str, Any]]]
) -> None:
    http, ledger = gateway
    client = _openai(http)
    stream = await client.chat.completions.create(
        model="claude", messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Bonjour"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 2

    stream = await client.chat.completions.create(
        model="claude", messages=[{"role": "user", "content": "Lyon?"}], tools=TOOLS, stream=True,  # type: ignore[arg-type]
    )  # fmt: skip
    calls = [
        c.choices[0].delta.tool_calls[0] async for c in stream if c.choices and c.choices[0].delta.tool_calls
    ]
    assert (calls[0].id, calls[0].function.name) == ("toolu_1", "get_weather")  # type: ignore[union-attr]
    assert json.loads("".join(c.function.arguments or "" for c in calls)) == {"city": "Lyon"}  # type: ignore[union-attr]
    assert provider[1][-1]["tools"][0]["input_schema"] == TOOLS[0]["function"]["parameters"]  # type: ignore[index]
    assert [row.output_tokens for row in ledger.rows] == [2, 2]  # usage was read though not asked for


async def test_an_anthropic_client_reaches_an_anthropic_provider(
    gateway: tuple[httpx2.AsyncClient, Ledger],
) -> None:
    http, _ = gateway
    client = anthropic.AsyncAnthropic(
        base_url="http://gateway", api_key=TOKEN, http_client=http, max_retries=0
    )
    message = await client.messages.create(
        model="claude", max_tokens=64, messages=[{"role": "user", "content": "Lyon?"}],
        tools=[{"name": "get_weather", "input_schema": {"type": "object"}}],
    )  # fmt: skip
    (block,) = message.content
    assert block.type == "tool_use" and block.input == {"city": "Lyon"} and message.stop_reason == "tool_use"
    async with client.messages.stream(
        model="claude", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        text = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()
    assert text == "Bonjour" and final.usage.output_tokens == 2
    await client.messages.create(
        model="claude", max_tokens=8, messages=[{"role": "user", "content": "hi"}],
        extra_headers={"anthropic-beta": "interleaved-thinking-2025-05-14", "x-claude-code-session-id": "s1"},
    )  # fmt: skip
    assert betas == [None, None, "interleaved-thinking-2025-05-14"]  # forwarded, not dropped


async def test_provider_errors_and_other_endpoints_are_clear(
    gateway: tuple[httpx2.AsyncClient, Ledger],
) -> None:
    http, _ = gateway
    answer = await http.post(
        "/v1/embeddings", json={"model": "claude", "input": "x"}, headers={"authorization": f"Bearer {TOKEN}"}
    )
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "unsupported_endpoint"


async def test_a_provider_error_comes_back_in_the_openai_shape(
    provider: tuple[str, list[dict[str, Any]]],
) -> None:
    config = Provider(
        name="anthropic", kind="anthropic", base_url=provider[0], api_key_env="K", models={"c": "x"}
    )
    pools = provider_pools((config,), {"K": "sk-wrong"}, taken=set())
    upstream = HttpUpstream(timeout=10)
    app = create_app(pools, TokenVerifier({"test": TokenVerifier.digest(TOKEN)}), upstream=upstream)
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://gateway") as http:
        with pytest.raises(openai.AuthenticationError) as caught:
            await _openai(http).chat.completions.create(
                model="c", messages=[{"role": "user", "content": "hi"}]
            )
    await upstream.aclose()
    assert caught.value.body == {"message": "invalid x-api-key", "type": "authentication_error",
                                 "code": "authentication_error"}  # fmt: skip


def test_a_conversation_with_tool_results_becomes_alternating_turns() -> None:
    chat = {
        "messages": [
            {"role": "system", "content": "S1"},
            {"role": "developer", "content": [{"type": "text", "text": "S2"}]},
            {"role": "user", "content": [{"type": "text", "text": "Weather?"},
                                         {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "w", "arguments": '{"c": 1}'}},
                {"id": "t2", "type": "function", "function": {"name": "w", "arguments": ""}}]},
            {"role": "tool", "tool_call_id": "t1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "t2", "content": "rain"},
            {"role": "user", "content": "Thanks"},
        ],
        "max_tokens": 10, "stop": "END", "tool_choice": "required", "temperature": 0.2,
    }  # fmt: skip
    body = messages_request(chat, "claude-x")
    assert body["system"] == "S1\n\nS2"
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][0]["content"][1] == {
        "type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}
    }  # fmt: skip
    assert [b["input"] for b in body["messages"][1]["content"]] == [{"c": 1}, {}]
    assert [b["type"] for b in body["messages"][2]["content"]] == ["tool_result", "tool_result", "text"]
    assert (body["stop_sequences"], body["tool_choice"], body["max_tokens"]) == (["END"], {"type": "any"}, 10)


def test_what_anthropic_cannot_do_is_refused_by_name() -> None:
    with pytest.raises(ApiError, match=r"^n: "):
        messages_request({"messages": [{"role": "user", "content": "x"}], "n": 2}, "m")
    bad_arguments = {"role": "assistant", "tool_calls": [{"function": {"name": "w", "arguments": "{oops"}}]}
    with pytest.raises(ApiError, match=r"messages\.0\.tool_calls"):
        messages_request({"messages": [bad_arguments]}, "m")
