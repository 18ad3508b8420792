"""The gateway's own logic against a scripted upstream (an in-memory Upstream), not a real engine."""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from sovra.access.app import GatewayApp, create_app
from sovra.access.auth import TokenVerifier
from sovra.access.balancer import Balancing, ReplicaPool
from sovra.access.errors import ApiError
from sovra.access.gateway import GatewaySettings
from sovra.access.keys import ApiKey
from sovra.access.limits import MemoryLimits
from sovra.access.served import ModelCard, ServedModel
from sovra.inference.process import Replica, ReplicaState
from sovra.routing.gate import RoutingGate
from sovra.routing.router import Router, default_policy
from sovra.usage import UsageRecord

TOKEN = "sk-test-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}

pytestmark = pytest.mark.anyio


@dataclass
class Sent:
    url: str
    body: bytes
    headers: dict[str, str]

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    @property
    def port(self) -> int | None:
        return urlsplit(self.url).port


@dataclass
class FakeResponse:
    """An engine's answer, delivered in pieces split at awkward places."""

    status: int
    text: str
    content_type: str = "application/json"
    closed: bool = False

    async def chunks(self) -> AsyncIterator[bytes]:
        data = self.text.encode()
        for start in range(0, len(data), 7):
            yield data[start : start + 7]

    async def read(self) -> bytes:
        return self.text.encode()

    def close(self) -> None:
        self.closed = True


def sse(text: str) -> FakeResponse:
    return FakeResponse(200, text, "text/event-stream")


class ScriptedUpstream:
    """Answers like llama-server would, and remembers what it was sent (an in-memory Upstream)."""

    def __init__(self) -> None:
        self.seen: list[Sent] = []
        self.answers: list[FakeResponse] = []
        self.unreachable: set[int] = set()
        self.hold: asyncio.Event | None = None  # when set, every request waits for it: all in flight

    async def post(
        self, url: str, body: bytes, model: str, headers: Mapping[str, str] | None = None
    ) -> FakeResponse:
        sent = Sent(url, body, dict(headers or {}))
        self.seen.append(sent)
        if sent.port in self.unreachable:
            raise ApiError(502, "unreachable", "upstream_unreachable")
        if self.hold is not None:
            await self.hold.wait()
        answer = self._answer(sent.path, json.loads(body))
        self.answers.append(answer)
        return answer

    def _answer(self, path: str, body: dict[str, Any]) -> FakeResponse:
        if path == "/infill":
            if body["stream"]:
                events = [
                    {"content": "a", "stop": False},
                    {
                        "content": "b",
                        "stop": True,
                        "stop_type": "limit",
                        "tokens_evaluated": 7,
                        "tokens_predicted": 2,
                    },
                ]
                return sse("".join(f"data: {json.dumps(e)}\n\n" for e in events))
            result = {"content": "+ b", "stop_type": "eos", "tokens_evaluated": 9, "tokens_predicted": 2}
            return FakeResponse(200, json.dumps(result))
        if body.get("stream"):
            usage = {"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 3}}
            usage_event = (
                f"data: {json.dumps(usage)}\n\n"
                if body.get("stream_options", {}).get("include_usage")
                else ""
            )
            return sse(f'data: {{"x":1}}\n\n{usage_event}data: [DONE]\n\n')
        answer = {"object": "chat.completion", "model": body["model"], "port": self.seen[-1].port}
        return FakeResponse(
            200, json.dumps({**answer, "usage": {"prompt_tokens": 5, "completion_tokens": 2}})
        )

    async def aclose(self) -> None:
        pass


def replica(port: int, state: ReplicaState = ReplicaState.READY) -> Replica:
    return Replica("m", port, port=port, state=state)


def served(
    name: str, replicas: Sequence[Replica], balancing: Balancing | None = None, **how: Any
) -> ServedModel:
    """A model served by local replicas (`how`: ServedModel's other fields)."""
    return ServedModel(name, ReplicaPool(name, replicas, balancing), **how)


class Ledger:
    """An in-memory usage sink."""

    def __init__(self) -> None:
        self.rows: list[UsageRecord] = []

    async def record(self, record: UsageRecord) -> bool:
        self.rows.append(record)
        return True


def gateway_app(
    upstream: ScriptedUpstream,
    pools: Mapping[str, ServedModel],
    max_body: int = 4096,
    keys: tuple[ApiKey, ...] = (),
    ledger: Ledger | None = None,
) -> GatewayApp:
    """The real gateway app, with a scripted upstream, in-memory ledger and in-memory limits."""
    verifier = TokenVerifier({"test": TokenVerifier.digest(TOKEN)})
    verifier.use_stored_keys(keys)
    settings = GatewaySettings(max_body_bytes=max_body)
    return create_app(
        pools, verifier, settings, upstream=upstream, usage=ledger or Ledger(), limits=MemoryLimits()
    )


def client(
    upstream: ScriptedUpstream,
    pools: Mapping[str, ServedModel],
    max_body: int = 4096,
    keys: tuple[ApiKey, ...] = (),
    ledger: Ledger | None = None,
) -> httpx.AsyncClient:
    app = gateway_app(upstream, pools, max_body, keys, ledger)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gateway")


@pytest.fixture
async def gateway(upstream: ScriptedUpstream) -> AsyncIterator[httpx.AsyncClient]:
    pools = {
        "m": served("m", [replica(1001), replica(1002)]),
        "down": served("down", [replica(1003, ReplicaState.STARTING)]),
    }
    async with client(upstream, pools) as http:
        yield http


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"] and error["type"]


async def test_tokens_are_required_and_checked(gateway: httpx.AsyncClient) -> None:
    body = CHAT
    assert_error(await gateway.post("/v1/chat/completions", json=body), 401, "invalid_api_key")
    wrong = {"authorization": "Bearer sk-nope"}
    assert_error(await gateway.post("/v1/chat/completions", json=body, headers=wrong), 401, "invalid_api_key")
    assert_error(await gateway.get("/v1/models"), 401, "invalid_api_key")
    ok = await gateway.post("/v1/chat/completions", json=body, headers={"x-api-key": TOKEN})
    assert ok.status_code == 200


async def test_malformed_requests_are_400(gateway: httpx.AsyncClient) -> None:
    post = gateway.post
    assert_error(await post("/v1/chat/completions", content=b"{nope", headers=AUTH), 400, "invalid_json")
    assert_error(await post("/v1/chat/completions", content=b"[1]", headers=AUTH), 400, "invalid_json")
    assert_error(
        await post("/v1/chat/completions", json={"messages": []}, headers=AUTH), 400, "model_required"
    )


async def test_unknown_models_and_routes_are_404(gateway: httpx.AsyncClient) -> None:
    response = await gateway.post("/v1/chat/completions", json={**CHAT, "model": "gpt-9"}, headers=AUTH)
    assert_error(response, 404, "model_not_found")
    assert "gpt-9" in response.json()["error"]["message"]
    assert_error(await gateway.get("/v1/nothing", headers=AUTH), 404, "not_found")


async def test_a_wrong_method_is_405_with_the_allowed_ones(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/v1/chat/completions", headers=AUTH)
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST"
    assert (await gateway.head("/v1/models", headers=AUTH)).status_code == 200
    assert (await gateway.delete("/v1/models", headers=AUTH)).headers["allow"] == "GET, HEAD"


async def test_a_bug_in_a_handler_is_a_500_in_the_openai_envelope(
    upstream: ScriptedUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    async def buggy(url: str, body: bytes, model: str, headers: object = None) -> FakeResponse:
        raise KeyError("a bug")

    upstream.post = buggy  # type: ignore[method-assign]
    async with client(upstream, {"m": served("m", [replica(1001)])}) as gateway:
        response = await gateway.post("/v1/chat/completions", json=CHAT, headers=AUTH)
    assert_error(response, 500, "internal_error")
    assert "a bug" not in response.text  # the details are in the log, not in the answer
    assert any(record.exc_info and "a bug" in str(record.exc_info[1]) for record in caplog.records)


async def test_the_lifespan_starts_and_stops_what_requests_share() -> None:
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        events.append("started")
        yield
        events.append("stopped")

    app = GatewayApp({}, lifespan)
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[str] = []

    async def receive() -> dict[str, str]:
        return next(messages)

    async def send(message: dict[str, str]) -> None:
        sent.append(message["type"])

    await app({"type": "lifespan"}, receive, send)  # type: ignore[arg-type]
    assert events == ["started", "stopped"]
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


async def test_a_gateway_that_cannot_start_says_why() -> None:
    @contextlib.asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        raise OSError("no database")
        yield

    sent: list[dict[str, str]] = []

    async def receive() -> dict[str, str]:
        return {"type": "lifespan.startup"}

    async def send(message: dict[str, str]) -> None:
        sent.append(message)

    await GatewayApp({}, lifespan)({"type": "lifespan"}, receive, send)  # type: ignore[arg-type]
    assert sent == [{"type": "lifespan.startup.failed", "message": "OSError: no database"}]


async def test_oversized_bodies_are_413(gateway: httpx.AsyncClient) -> None:
    body = {"model": "m", "prompt": "x" * 5000}
    assert_error(await gateway.post("/v1/completions", json=body, headers=AUTH), 413, "request_too_large")


async def test_the_header_wins_and_the_engine_sees_its_own_name(
    gateway: httpx.AsyncClient, upstream: ScriptedUpstream
) -> None:
    headers = {**AUTH, "x-ai-eg-model": "m"}
    response = await gateway.post("/v1/chat/completions", json={**CHAT, "model": "whatever"}, headers=headers)
    assert response.status_code == 200
    assert json.loads(upstream.seen[-1].body)["model"] == "m"


async def test_a_shared_prompt_prefix_sticks_to_one_replica(gateway: httpx.AsyncClient) -> None:
    async def port(content: str) -> int:
        body = {**CHAT, "messages": [{"role": "user", "content": content}]}
        return int((await gateway.post("/v1/chat/completions", json=body, headers=AUTH)).json()["port"])

    file = "def main():\n" + "    x = 1\n" * 100  # an IDE sends the same long file start each time
    assert len({await port(file + f"# edit {n}") for n in range(6)}) == 1
    assert len({await port(f"question {n}") for n in range(30)}) == 2  # different prefixes spread


async def test_without_affinity_replicas_take_turns_and_none_ready_is_503(upstream: ScriptedUpstream) -> None:
    pools = {
        "m": served("m", [replica(1001), replica(1002)], balancing=Balancing(affinity=False)),
        "down": served("down", [replica(1003, ReplicaState.STARTING)]),
    }
    async with client(upstream, pools) as gateway:
        ports = [
            (await gateway.post("/v1/chat/completions", json=CHAT, headers=AUTH)).json()["port"]
            for _ in range(4)
        ]
        assert sorted(ports) == [1001, 1001, 1002, 1002]
        response = await gateway.post("/v1/chat/completions", json={**CHAT, "model": "down"}, headers=AUTH)
    assert_error(response, 503, "model_unavailable")
    assert response.headers["retry-after"] == "1"


async def test_an_unreachable_replica_is_retried_once_elsewhere(upstream: ScriptedUpstream) -> None:
    upstream.unreachable = {1001}
    async with client(upstream, {"m": served("m", [replica(1001), replica(1002)])}) as gateway:
        for _ in range(2):
            response = await gateway.post("/v1/chat/completions", json=CHAT, headers=AUTH)
            assert response.json()["port"] == 1002
    upstream.unreachable = {1001, 1002}
    async with client(upstream, {"m": served("m", [replica(1001), replica(1002)])}) as gateway:
        response = await gateway.post("/v1/chat/completions", json=CHAT, headers=AUTH)
        assert_error(response, 502, "upstream_unreachable")


async def test_streams_are_relayed_byte_for_byte(
    gateway: httpx.AsyncClient, upstream: ScriptedUpstream
) -> None:
    response = await gateway.post("/v1/chat/completions", json={**CHAT, "stream": True}, headers=AUTH)
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text == 'data: {"x":1}\n\ndata: [DONE]\n\n'  # the usage event Sovra asked for is gone


async def test_suffix_goes_to_infill_and_comes_back_as_a_completion(
    gateway: httpx.AsyncClient, upstream: ScriptedUpstream
) -> None:
    body = {"model": "m", "prompt": "def f(", "suffix": "):\n", "max_tokens": 5, "temperature": 0}
    response = await gateway.post("/v1/completions", json=body, headers=AUTH)
    sent = upstream.seen[-1]
    assert sent.path == "/infill"
    assert json.loads(sent.body) == {
        "input_prefix": "def f(", "input_suffix": "):\n", "n_predict": 5, "stream": False, "temperature": 0,
    }  # fmt: skip
    completion = response.json()
    assert completion["object"] == "text_completion" and completion["model"] == "m"
    assert completion["choices"][0]["text"] == "+ b"
    assert completion["choices"][0]["finish_reason"] == "stop"
    assert completion["usage"] == {
        "prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11, "prompt_tokens_details": {"cached_tokens": 0}
    }  # fmt: skip


async def test_streamed_infill_becomes_completion_chunks(gateway: httpx.AsyncClient) -> None:
    body = {
        "model": "m",
        "prompt": "a",
        "suffix": "b",
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    response = await gateway.post("/v1/completions", json=body, headers=AUTH)
    events = [line.removeprefix("data: ") for line in response.text.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert [c["choices"][0]["text"] for c in chunks[:2]] == ["a", "b"]
    assert [c["choices"][0]["finish_reason"] for c in chunks[:2]] == [None, "length"]
    assert chunks[2]["choices"] == [] and chunks[2]["usage"]["total_tokens"] == 9


async def test_suffix_with_a_list_prompt_is_refused(gateway: httpx.AsyncClient) -> None:
    body = {"model": "m", "prompt": ["a", "b"], "suffix": "c"}
    assert_error(await gateway.post("/v1/completions", json=body, headers=AUTH), 400, "invalid_prompt")


async def test_models_and_health_describe_the_catalog(gateway: httpx.AsyncClient) -> None:
    models = (await gateway.get("/v1/models", headers=AUTH)).json()
    assert [m["id"] for m in models["data"]] == ["m", "down"]
    health = await gateway.get("/health")
    assert health.status_code == 503  # "down" has no ready replica
    assert health.json()["services"]["m"] == {"ready": 2, "replicas": 2}


async def test_health_says_why_a_service_gave_up(upstream: ScriptedUpstream) -> None:
    failed = Replica("broken", 0, state=ReplicaState.FAILED, failure="SIGILL: the engine binary uses …")
    pools = {"m": served("m", [replica(1001)]), "broken": served("broken", [failed])}
    async with client(upstream, pools) as http:
        health = await http.get("/health")
    assert health.status_code == 503
    services = health.json()["services"]
    assert services["m"] == {"ready": 1, "replicas": 1}  # the other services keep serving
    assert services["broken"] == {
        "ready": 0, "replicas": 1, "failed": 1, "reason": "SIGILL: the engine binary uses …"
    }  # fmt: skip


async def test_a_key_sees_and_uses_only_its_allowed_models(upstream: ScriptedUpstream) -> None:
    limited = ApiKey("k1", "team-a", "ci", TokenVerifier.digest("sk-limited"), models=frozenset({"m"}))
    pools = {"m": served("m", [replica(1001)]), "other": served("other", [replica(1002)])}
    async with client(upstream, pools, keys=(limited,)) as gateway:
        headers = {"authorization": "Bearer sk-limited"}
        models = (await gateway.get("/v1/models", headers=headers)).json()
        assert [m["id"] for m in models["data"]] == ["m"]
        assert (await gateway.post("/v1/chat/completions", json=CHAT, headers=headers)).status_code == 200
        response = await gateway.post(
            "/v1/chat/completions", json={**CHAT, "model": "other"}, headers=headers
        )
        assert_error(response, 403, "model_not_allowed")
        everything = await gateway.get("/v1/models", headers=AUTH)
        assert [m["id"] for m in everything.json()["data"]] == ["m", "other"]
        assert (await gateway.get("/v1/models/other", headers=headers)).status_code == 404


async def test_models_carry_their_cards_in_the_shape_the_client_speaks(upstream: ScriptedUpstream) -> None:
    card = ModelCard(8192, 8192, frozenset({"chat", "tools", "vision"}), "large", "code", "org/model@abc")
    pools = {"m": served("m", [replica(1001)], card=card), "org/m": served("org/m", [replica(1002)])}
    async with client(upstream, pools) as gateway:
        assert (await gateway.get("/v1/models/org/m", headers=AUTH)).json()["id"] == "org/m"
        listed = (await gateway.get("/v1/models", headers=AUTH)).json()["data"][0]
        one = (await gateway.get("/v1/models/m", headers=AUTH)).json()
        claude = (await gateway.get("/v1/models", headers={**AUTH, "anthropic-version": "2023-06-01"})).json()
        missing = await gateway.get("/v1/models/nope", headers=AUTH)
    assert listed == one
    assert (listed["context_window"], listed["context_length"], listed["max_output_tokens"]) == (
        8192,
        8192,
        8192,
    )
    assert listed["capabilities"] == ["chat", "tools", "vision"]
    assert (listed["tier"], listed["specialty"], listed["weights"]) == ("large", "code", "org/model@abc")
    assert claude["data"][0]["type"] == "model" and claude["data"][0]["id"] == "m"
    assert claude["has_more"] is False and (claude["first_id"], claude["last_id"]) == ("m", "org/m")
    assert_error(missing, 404, "model_not_found")


async def test_every_request_gets_one_ledger_row(upstream: ScriptedUpstream) -> None:
    ledger = Ledger()
    pools = {"m": served("m", [replica(1001)])}
    async with client(upstream, pools, ledger=ledger) as gateway:
        await gateway.post("/v1/chat/completions", json=CHAT, headers=AUTH)
        await gateway.post("/v1/chat/completions", json={**CHAT, "stream": True}, headers=AUTH)
        sent = json.loads(upstream.seen[-1].body)
        assert sent["stream_options"] == {"include_usage": True}  # asked upstream for accounting
        wanted = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
        kept = await gateway.post("/v1/chat/completions", json=wanted, headers=AUTH)
        assert '"usage"' in kept.text  # the client asked for it: it stays
        await gateway.post(
            "/v1/completions", json={"model": "m", "prompt": "a", "suffix": "b", "stream": True}, headers=AUTH
        )
        await gateway.post("/v1/chat/completions", json={**CHAT, "model": "nope"}, headers=AUTH)
        await gateway.post("/v1/chat/completions", json=CHAT)  # 401: no key, no row
    plain, streamed, kept_row, infill, missing = ledger.rows
    assert (plain.status, plain.input_tokens, plain.output_tokens, plain.ttft_ms) == (200, 5, 2, None)
    assert (streamed.status, streamed.input_tokens, streamed.output_tokens) == (200, 11, 3)
    assert streamed.ttft_ms is not None and streamed.ttft_ms <= streamed.duration_ms
    assert (kept_row.input_tokens, kept_row.output_tokens) == (11, 3)
    assert (infill.endpoint, infill.input_tokens, infill.output_tokens) == ("/v1/completions", 7, 2)
    assert (missing.status, missing.requested_model, missing.served_model) == (404, "unknown", "")
    assert {row.tenant for row in ledger.rows} == {"test"} and len(
        {row.request_id for row in ledger.rows}
    ) == 5


async def test_a_model_name_that_cannot_be_stored_is_refused_and_recorded_as_unknown(
    upstream: ScriptedUpstream,
) -> None:
    ledger = Ledger()
    pools = {"m": served("m", [replica(1001)])}
    async with client(upstream, pools, ledger=ledger) as gateway:
        for model, status, code in (
            ('"\\ud800"', 400, "invalid_request"),  # not Unicode: refused before anything else
            ('"m\\u0000"', 404, "model_not_found"),
            ('"' + "x" * 3_000 + '"', 404, "model_not_found"),
        ):
            body = '{"model": ' + model + ', "messages": [{"role": "user", "content": "hi"}]}'
            answer = await gateway.post("/v1/chat/completions", content=body, headers=AUTH)
            assert_error(answer, status, code)
    # One row per key and status per second of refusals: the second 404 is counted in metrics only.
    assert [row.requested_model for row in ledger.rows] == ["", "unknown"]


async def test_a_flood_of_refusals_cannot_grow_the_ledger(upstream: ScriptedUpstream) -> None:
    ledger = Ledger()
    limited = ApiKey("k9", "team-f", "ci", TokenVerifier.digest("sk-one"), rpm=1)
    pools = {"m": served("m", [replica(1001)])}
    headers = {"authorization": "Bearer sk-one"}
    async with client(upstream, pools, keys=(limited,), ledger=ledger) as gateway:
        statuses = [
            (await gateway.post("/v1/chat/completions", json=CHAT, headers=headers)).status_code
            for _ in range(40)
        ]
        for _ in range(40):
            await gateway.post("/v1/chat/completions", json={**CHAT, "model": "x" * 200}, headers=headers)
        for _ in range(5):
            await gateway.post("/v1/chat/completions", json=CHAT, headers=AUTH)
        text = (await gateway.get("/metrics")).text
    assert statuses.count(200) == 1 and statuses.count(429) == 39
    rows = [row.status for row in ledger.rows]
    assert (
        rows.count(200) == 6 and 1 <= rows.count(429) <= 2 and 1 <= rows.count(404) <= 2
    )  # a second may tick
    assert 'sovra_gateway_rate_limited_total{limit="rpm",tenant="team-f"} 39.0' in text  # every one counted


BUDGET = ApiKey(
    "kb", "team-c", "ci", TokenVerifier.digest("sk-budget"), budget_tokens=2_000, budget_period="day"
)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/chat/completions", '{"model": "m", "messages": ' + "[" * 5000 + "]" * 5000 + "}", "nested"),
        ("/v1/route", '{"messages": ' + "[" * 5000 + "]" * 5000 + "}", "nested"),
        ("/v1/chat/completions", '{"model": "m", "messages": [{"role": "user", "content": "a\\ud800"}]}',
         "messages.0.content: contains a lone surrogate"),
        ("/v1/messages", '{"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "\\udc00"}]}',
         "messages.0.content: contains a lone surrogate"),
    ],
)  # fmt: skip
async def test_hostile_bodies_are_400s_decided_before_anything_is_reserved(
    upstream: ScriptedUpstream, path: str, body: str, field: str
) -> None:
    limits = MemoryLimits()
    pools = {"m": served("m", [replica(1001)])}
    verifier = TokenVerifier({})
    verifier.use_stored_keys([BUDGET])
    gate = RoutingGate(Router(default_policy({"m": None}), {"m": None}), frozenset({"MoM"}), frozenset())
    settings = GatewaySettings(max_body_bytes=1 << 20)
    app = create_app(pools, verifier, settings, upstream=upstream, usage=Ledger(), limits=limits, gate=gate)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gw") as gateway:
        answer = await gateway.post(path, content=body, headers={"authorization": "Bearer sk-budget"})
        assert answer.status_code == 400, answer.text
        assert field in answer.text
        assert upstream.seen == []
        ok = await gateway.post(
            "/v1/chat/completions", json=CHAT, headers={"authorization": "Bearer sk-budget"}
        )
    assert ok.status_code == 200  # nothing of the budget went to the refused request


async def test_a_utf16_body_is_refused_not_relayed(
    gateway: httpx.AsyncClient, upstream: ScriptedUpstream
) -> None:
    body = json.dumps(CHAT).encode("utf-16")
    answer = await gateway.post("/v1/chat/completions", content=body, headers=AUTH)
    assert_error(answer, 400, "invalid_json")
    assert "not UTF-8" in answer.json()["error"]["message"] and upstream.seen == []


async def test_images_for_an_engine_without_a_projector_are_refused_naming_the_part(
    upstream: ScriptedUpstream,
) -> None:
    pools = {"m": served("m", [replica(1001)], images=False)}
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    chat = {
        "model": "m",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "what?"}, image]}],
    }
    block = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}
    message = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [block]}]}
    async with client(upstream, pools) as gateway:
        answer = await gateway.post("/v1/chat/completions", json=chat, headers=AUTH)
        assert_error(answer, 400, "invalid_request")
        assert (
            answer.json()["error"]["message"] == "messages.0.content.1: the model 'm' does not accept images"
        )
        answer = await gateway.post("/v1/messages", json=message, headers=AUTH)
        assert answer.status_code == 400 and "messages.0.content.0" in answer.text
    assert upstream.seen == []


@pytest.mark.parametrize(
    ("block", "field"),
    [
        ({"type": "tool_use", "id": 7, "name": "f", "input": {}}, "messages.1.content.0.id"),
        ({"type": "tool_use", "id": "t1", "name": ["f"], "input": {}}, "messages.1.content.0.name"),
        ({"type": "tool_use", "id": "t1", "name": "f", "input": "text"}, "messages.1.content.0.input"),
    ],
)
async def test_malformed_tool_use_blocks_are_400s_naming_the_field(
    gateway: httpx.AsyncClient, upstream: ScriptedUpstream, block: dict[str, Any], field: str
) -> None:
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": [block]}]
    body = {"model": "m", "max_tokens": 5, "messages": messages}
    answer = await gateway.post("/v1/messages", json=body, headers=AUTH)
    assert answer.status_code == 400 and field in answer.json()["error"]["message"], answer.text
    assert upstream.seen == []


async def test_concurrent_requests_cannot_overshoot_a_token_limit(upstream: ScriptedUpstream) -> None:
    limited = ApiKey("k2", "team-b", "ci", TokenVerifier.digest("sk-tpm"), tpm=300)
    ledger = Ledger()
    upstream.hold = asyncio.Event()
    headers = {"authorization": "Bearer sk-tpm"}
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50}
    async with client(
        upstream, {"m": served("m", [replica(1001)])}, keys=(limited,), ledger=ledger
    ) as gateway:
        calls = [gateway.post("/v1/chat/completions", json=body, headers=headers) for _ in range(20)]
        answers = asyncio.gather(*calls)
        await asyncio.sleep(0.2)  # every request has been admitted or refused; none has finished
        upstream.hold.set()
        responses = await answers
    admitted = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert len(admitted) + len(refused) == 20 and admitted and refused
    assert all(int(r.headers["retry-after"]) >= 1 for r in refused)
    assert {r.json()["error"]["code"] for r in refused} == {"rate_limit_exceeded"}
    spent = sum(row.input_tokens + row.output_tokens for row in ledger.rows if row.status == 200)
    assert spent <= 300  # each request used less than it reserved: no overshoot at all
    assert sorted({row.status for row in ledger.rows}) == [200, 429]


class BrokenStream(FakeResponse):
    """An engine that dies after its first event."""

    async def chunks(self) -> AsyncIterator[bytes]:
        yield b'data: {"choices":[{"delta":{"content":"Hel"}}]}\n\n'
        raise ApiError(502, "the engine for 'm' broke off its answer", "upstream_error")


async def test_an_engine_dying_mid_stream_ends_it_with_an_error_event(upstream: ScriptedUpstream) -> None:
    ledger = Ledger()

    async def broken(url: str, body: bytes, model: str, headers: object = None) -> FakeResponse:
        return BrokenStream(200, "", "text/event-stream")

    upstream.post = broken  # type: ignore[method-assign]
    async with client(upstream, {"m": served("m", [replica(1001)])}, ledger=ledger) as gateway:
        response = await gateway.post("/v1/chat/completions", json={**CHAT, "stream": True}, headers=AUTH)
        anthropic_style = await gateway.post(
            "/v1/messages",
            json={
                "model": "m",
                "max_tokens": 5,
                "stream": True,
                "messages": [{"role": "user", "content": "x"}],
            },
            headers=AUTH,
        )
    events = [e for e in response.text.split("\n\n") if e]
    assert events[0].startswith('data: {"choices"')
    assert json.loads(events[1].removeprefix("data: "))["error"]["code"] == "upstream_error"
    assert "[DONE]" not in response.text  # a cut answer is not presented as complete
    assert "event: error" in anthropic_style.text and "message_stop" not in anthropic_style.text
    for _ in range(100):  # a stream its dialect stopped reading early is committed in the background
        if len(ledger.rows) == 2:
            break
        await asyncio.sleep(0.01)
    assert [(row.status, row.endpoint) for row in ledger.rows] == [
        (502, "/v1/chat/completions"),
        (502, "/v1/messages"),
    ]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/chat/completions", {"model": "m"}, "messages"),
        ("/v1/chat/completions", {"model": "m", "messages": "hi"}, "messages"),
        (
            "/v1/chat/completions",
            {"model": "m", "messages": [{"role": "wizard", "content": "x"}]},
            "messages.0.role",
        ),
        (
            "/v1/chat/completions",
            {"model": "m", "messages": [{"role": "user", "content": 7}]},
            "messages.0.content",
        ),
        ("/v1/chat/completions", {**CHAT, "max_tokens": 0}, "max_tokens"),
        ("/v1/chat/completions", {**CHAT, "max_tokens": "ten"}, "max_tokens"),
        ("/v1/chat/completions", {**CHAT, "temperature": 3}, "temperature"),
        ("/v1/chat/completions", {**CHAT, "stream": "yes"}, "stream"),
        ("/v1/chat/completions", {**CHAT, "stop": [1, 2]}, "stop"),
        ("/v1/chat/completions", {**CHAT, "tools": [{"type": "function"}]}, "tools.0.function.name"),
        ("/v1/completions", {"model": "m"}, "prompt"),
        ("/v1/completions", {"model": "m", "prompt": {"text": "x"}}, "prompt"),
        ("/v1/embeddings", {"model": "m", "input": 3.5}, "input"),
    ],
)
async def test_schema_violations_are_400_naming_the_field(
    gateway: httpx.AsyncClient, upstream: ScriptedUpstream, path: str, body: dict[str, object], field: str
) -> None:
    response = await gateway.post(path, json=body, headers=AUTH)
    assert_error(response, 400, "invalid_request")
    assert response.json()["error"]["message"].startswith(f"{field}: ")
    assert upstream.seen == []  # nothing reached an engine


async def test_an_agents_session_lands_on_one_replica(upstream: ScriptedUpstream) -> None:
    pools = {"m": served("m", [replica(1001), replica(1002), replica(1003)])}
    async with client(upstream, pools) as gateway:
        for n in range(12):
            ask = {**CHAT, "messages": [{"role": "user", "content": f"{n} " * 40}]}
            headers = {**AUTH, "x-claude-code-session-id": "session-1"}
            assert (await gateway.post("/v1/chat/completions", json=ask, headers=headers)).status_code == 200
        by_session = {sent.port for sent in upstream.seen}
        upstream.seen.clear()
        for n in range(12):  # the same prompts without a session spread by their prefixes
            ask = {**CHAT, "messages": [{"role": "user", "content": f"{n} " * 40}]}
            await gateway.post("/v1/chat/completions", json=ask, headers=AUTH)
        by_prompt = {sent.port for sent in upstream.seen}
    assert len(by_session) == 1 and len(by_prompt) > 1


async def test_rerank_reaches_the_engine_and_is_metered(upstream: ScriptedUpstream) -> None:
    ledger = Ledger()
    async with client(upstream, {"m": served("m", [replica(1001)])}, ledger=ledger) as gateway:
        ask = {
            "model": "m",
            "query": "capital of France",
            "documents": ["Paris", {"text": "Lyon"}],
            "top_n": 1,
        }
        answer = await gateway.post("/v1/rerank", json=ask, headers=AUTH)
        assert answer.status_code == 200
        assert upstream.seen[-1].path == "/v1/rerank" and json.loads(upstream.seen[-1].body) == ask
        for bad, field in (({**ask, "query": ""}, "query"), ({**ask, "documents": [3]}, "documents.0"),
                           ({**ask, "top_n": 0}, "top_n")):  # fmt: skip
            refused = await gateway.post("/v1/rerank", json=bad, headers=AUTH)
            assert_error(refused, 400, "invalid_request")
            assert refused.json()["error"]["message"].startswith(field)
    first = ledger.rows[0]
    assert (first.endpoint, first.status, first.input_tokens, first.output_tokens) == (
        "/v1/rerank",
        200,
        5,
        2,
    )


async def test_every_answer_names_its_ledger_row(upstream: ScriptedUpstream) -> None:
    """`x-request-id` is the usage row's id: on a success, a stream and an error alike."""
    ledger = Ledger()
    async with client(upstream, {"m": served("m", [replica(1001)])}, ledger=ledger) as gateway:
        plain = await gateway.post("/v1/chat/completions", json=CHAT, headers=AUTH)
        stream = await gateway.post("/v1/chat/completions", json={**CHAT, "stream": True}, headers=AUTH)
        missing = await gateway.post("/v1/chat/completions", json={**CHAT, "model": "gone"}, headers=AUTH)
    ids = [r.headers["x-request-id"] for r in (plain, stream, missing)]
    assert missing.status_code == 404
    assert ids == [row.request_id for row in ledger.rows] and len(set(ids)) == 3
