"""/v1/responses through the real gateway app, driven by the official `openai` SDK, in front of a
scripted chat-completions upstream (SmolLM2 cannot call tools; the translation is what is tested)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import openai
import pytest

from sovra.access.app import create_app
from sovra.access.auth import TokenVerifier
from sovra.access.balancer import ReplicaPool
from sovra.access.dialects.responses import ResponsesTurn
from sovra.access.keys import ApiKey
from sovra.access.served import ServedModel
from sovra.inference.process import Replica, ReplicaState
from tests.access.test_gateway import FakeResponse, Ledger, sse

pytestmark = pytest.mark.anyio
TEAM_A, TEAM_B = "sk-team-a", "sk-team-b"
KEYS = (
    ApiKey("ka", "team-a", "a", TokenVerifier.digest(TEAM_A)),
    ApiKey("kb", "team-b", "b", TokenVerifier.digest(TEAM_B)),
)
WEATHER = {
    "type": "function",
    "name": "weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def text_answer(text: str, stream: bool, usage: tuple[int, int, int] = (20, 3, 4)) -> FakeResponse:
    prompt, completion, cached = usage
    counts = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }
    if not stream:
        message = {"role": "assistant", "content": text}
        body = {"choices": [{"index": 0, "message": message, "finish_reason": "stop"}], "usage": counts}
        return FakeResponse(200, json.dumps(body))
    events = [{"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
    events += [{"choices": [{"index": 0, "delta": {"content": word}}]} for word in text.split(" ")]
    events += [
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {"choices": [], "usage": counts},
    ]
    return sse("".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n")


def call_answer(stream: bool) -> FakeResponse:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
    }
    counts = {"prompt_tokens": 30, "completion_tokens": 8}
    if not stream:
        message = {"role": "assistant", "content": None, "tool_calls": [call]}
        body = {"choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}], "usage": counts}
        return FakeResponse(200, json.dumps(body))
    first = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "weather", "arguments": ""}}
    events = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [first]}}]},
        {
            "choices": [
                {"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}}
            ]
        },
        {
            "choices": [
                {"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}}
            ]
        },
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
        {"choices": [], "usage": counts},
    ]
    return sse("".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n")


def reasoning_answer() -> FakeResponse:
    deltas = [{"reasoning_content": "Think "}, {"reasoning_content": "first."}, {"content": "Answer."}]
    events = [{"choices": [{"index": 0, "delta": d}]} for d in deltas]
    events.append({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3}})
    return sse("".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n")


class ChatUpstream:
    """A chat-completions engine that answers from a script and keeps what it was sent."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.script: list[str] = []  # "text" or "call", one per request (default text)

    async def post(
        self, url: str, body: bytes, model: str, headers: Mapping[str, str] | None = None
    ) -> FakeResponse:
        assert url.endswith("/v1/chat/completions")
        sent = json.loads(body)
        self.bodies.append(sent)
        kind = self.script.pop(0) if self.script else "text"
        stream = bool(sent.get("stream"))
        if kind == "reasoning":
            return reasoning_answer()
        return call_answer(stream) if kind == "call" else text_answer("Hello there friend", stream)

    async def aclose(self) -> None:
        pass


@pytest.fixture
def upstream() -> ChatUpstream:
    return ChatUpstream()


@pytest.fixture
async def clients(
    upstream: ChatUpstream,
) -> AsyncIterator[tuple[openai.AsyncOpenAI, openai.AsyncOpenAI, Ledger]]:
    verifier = TokenVerifier({})
    verifier.use_stored_keys(KEYS)
    ledger = Ledger()
    pool = ReplicaPool("m", [Replica("m", 0, port=1001, state=ReplicaState.READY)])
    app = create_app({"m": ServedModel("m", pool)}, verifier, upstream=upstream, usage=ledger)
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gw/v1") as http_a,
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gw/v1") as http_b,
    ):
        yield (
            openai.AsyncOpenAI(api_key=TEAM_A, base_url="http://gw/v1", http_client=http_a, max_retries=0),
            openai.AsyncOpenAI(api_key=TEAM_B, base_url="http://gw/v1", http_client=http_b, max_retries=0),
            ledger,
        )


async def test_a_text_response(upstream: ChatUpstream, clients: Any) -> None:
    client, _, ledger = clients
    response = await client.responses.create(
        model="m", input="Say hello", instructions="Be brief.", max_output_tokens=20, temperature=0.2,
        reasoning={"summary": "auto"}, prompt_cache_key="abc", include=["reasoning.encrypted_content"],
    )  # fmt: skip
    assert response.output_text == "Hello there friend"
    assert response.status == "completed" and response.id.startswith("resp_")
    assert (response.usage.input_tokens, response.usage.output_tokens) == (20, 3)
    assert response.usage.input_tokens_details.cached_tokens == 4 and response.usage.total_tokens == 23
    sent = upstream.bodies[0]
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hello"},
    ]
    assert (sent["max_tokens"], sent["temperature"], sent["model"]) == (20, 0.2, "m")
    assert [(row.endpoint, row.status, row.input_tokens) for row in ledger.rows] == [
        ("/v1/responses", 200, 20)
    ]


async def test_a_streamed_response_has_the_events_sdks_parse(upstream: ChatUpstream, clients: Any) -> None:
    client, _, _ = clients
    kinds, deltas = [], []
    async with client.responses.stream(model="m", input=[{"role": "developer", "content": "Terse."},
                                                          {"role": "user", "content": [{"type": "input_text", "text": "Hi"}]}]) as stream:  # fmt: skip
        async for event in stream:
            kinds.append(event.type)
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = await stream.get_final_response()
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[2:4] == ["response.output_item.added", "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"]  # fmt: skip
    assert "".join(deltas) == "Hellotherefriend" and final.output_text == "Hellotherefriend"
    assert final.usage is not None and final.usage.input_tokens == 20
    assert upstream.bodies[0]["messages"] == [
        {"role": "system", "content": "Terse."},
        {"role": "user", "content": "Hi"},
    ]
    assert upstream.bodies[0]["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("stream", [False, True])
async def test_a_function_call_round_trip(upstream: ChatUpstream, clients: Any, stream: bool) -> None:
    client, _, _ = clients
    upstream.script = ["call", "text"]
    tools = [WEATHER, {"type": "web_search"}]
    if stream:
        async with client.responses.stream(model="m", input="Weather in Paris?", tools=tools) as events:
            kinds = [event.type async for event in events]
            first = await events.get_final_response()
        assert "response.function_call_arguments.delta" in kinds
        assert "response.function_call_arguments.done" in kinds
    else:
        first = await client.responses.create(
            model="m", input="Weather in Paris?", tools=tools, tool_choice="auto"
        )
    call = first.output[0]
    assert (call.type, call.name, call.call_id, json.loads(call.arguments)) == ("function_call", "weather", "call_1", {"city": "Paris"})  # fmt: skip
    assert upstream.bodies[0]["tools"] == [{"type": "function", "function": {k: v for k, v in WEATHER.items() if k != "type"}}]  # fmt: skip
    output = {"type": "function_call_output", "call_id": call.call_id, "output": "18 °C, sunny"}
    second = await client.responses.create(
        model="m", previous_response_id=first.id, input=[output], tools=tools
    )
    assert second.output_text == "Hello there friend"
    messages = upstream.bodies[1]["messages"]
    assert messages[0] == {"role": "user", "content": "Weather in Paris?"}
    assert messages[1]["role"] == "assistant" and messages[1]["tool_calls"][0]["id"] == "call_1"
    assert messages[1]["tool_calls"][0]["function"] == {"name": "weather", "arguments": '{"city": "Paris"}'}
    assert messages[2] == {"role": "tool", "tool_call_id": "call_1", "content": "18 °C, sunny"}


async def test_stored_responses_continue_and_belong_to_their_tenant(
    upstream: ChatUpstream, clients: Any
) -> None:
    client, other, _ = clients
    first = await client.responses.create(model="m", input="My name is Ada.")
    second = await client.responses.create(model="m", input="What is my name?", previous_response_id=first.id)
    assert [m["content"] for m in upstream.bodies[1]["messages"]] == ["My name is Ada.", "Hello there friend", "What is my name?"]  # fmt: skip
    assert (await client.responses.retrieve(second.id)).output_text == "Hello there friend"
    items = await client.responses.input_items.list(second.id, order="asc")
    assert [item.content[0].text for item in items.data] == ["My name is Ada.", "Hello there friend", "What is my name?"]  # fmt: skip
    for attempt in (other.responses.retrieve(first.id), other.responses.delete(first.id)):
        with pytest.raises(openai.NotFoundError):
            await attempt
    with pytest.raises(openai.BadRequestError) as caught:  # as OpenAI answers an unknown previous id
        await other.responses.create(model="m", input="?", previous_response_id=first.id)
    assert caught.value.code == "previous_response_not_found"
    await client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(first.id)
    unstored = await client.responses.create(model="m", input="x", store=False)
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(unstored.id)


async def test_bad_input_is_a_400_naming_the_field(clients: Any) -> None:
    client, _, _ = clients
    with pytest.raises(openai.BadRequestError) as caught:
        await client.responses.create(model="m", input=[{"role": "robot", "content": "x"}])
    assert "input.0.role" in str(caught.value)
    with pytest.raises(openai.BadRequestError) as caught:
        await client.responses.create(model="m", input=[])
    assert "input" in str(caught.value)


async def test_ignored_tools_are_named_and_unknown_fields_ignored(clients: Any) -> None:
    client, _, _ = clients
    raw = await client.responses.with_raw_response.create(
        model="m", input="x", tools=[WEATHER, {"type": "web_search"}, {"type": "namespace", "name": "mcp"}],
        extra_body={"client_metadata": {"a": 1}, "some_future_field": True},
    )  # fmt: skip
    assert raw.headers["x-sovra-ignored-tools"] == "web_search,namespace"
    assert raw.parse().output_text == "Hello there friend"


async def test_an_engines_reasoning_streams_as_a_reasoning_item(upstream: ChatUpstream, clients: Any) -> None:
    client, _, _ = clients
    upstream.script = ["reasoning"]
    async with client.responses.stream(model="m", input="Why?") as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_response()
    assert "response.reasoning_text.delta" in kinds and "response.reasoning_text.done" in kinds
    reasoning, message = final.output
    assert reasoning.type == "reasoning" and reasoning.content[0].text == "Think first."
    assert message.type == "message" and final.output_text == "Answer."


async def test_a_store_that_fails_costs_the_continuation_not_the_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken:
        async def save(self, stored: object) -> None:
            raise OSError("disk full")

    turn = ResponsesTurn(Broken(), "team-a", {"model": "m", "input": "x"})  # type: ignore[arg-type]
    answer = await turn.answer(text_answer("Fine.", stream=False).text.encode(), 200, "application/json", "m")
    assert answer.status_code == 200 and json.loads(answer.body)["output"][0]["content"][0]["text"] == "Fine."
    assert any("could not be stored" in record.message for record in caplog.records)
