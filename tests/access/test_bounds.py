"""What a request may make an engine do is bounded before the engine is asked (access/bounds.py)."""

import json
from typing import Any

import httpx
import pytest

from sovra.access.accounting import Exchange, usage_from_body
from sovra.access.app import create_app
from sovra.access.auth import TokenVerifier
from sovra.access.bounds import Bounds, bound_request
from sovra.access.errors import ApiError
from sovra.access.gateway import GatewaySettings
from sovra.access.keys import ApiKey
from tests.access.test_gateway import AUTH, Ledger, ScriptedUpstream, client, replica, served

pytestmark = pytest.mark.anyio
CHAT = "/v1/chat/completions"
BUDGET = ApiKey(
    "kb", "team", "ci", TokenVerifier.digest("sk-budget"), budget_tokens=2_000, budget_period="day"
)


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}


def test_engine_output_limits_are_folded_into_max_tokens() -> None:
    bounds = Bounds(default_max_tokens=64)
    sent = bound_request(
        CHAT, chat(max_tokens=1, n_predict=60, ignore_eos=True), bounds, limited=True, context_window=None
    )
    assert (
        sent is not None
        and sent["max_tokens"] == 1
        and "n_predict" not in sent
        and sent["ignore_eos"] is True
    )
    sent = bound_request(CHAT, chat(n_predict=60), bounds, limited=False, context_window=None)
    assert sent is not None and sent["max_tokens"] == 60 and "n_predict" not in sent
    sent = bound_request(
        CHAT, chat(max_completion_tokens=90, n_predict=30), bounds, limited=False, context_window=None
    )
    assert sent is not None and sent["max_completion_tokens"] == 30 and sent["max_tokens"] == 30
    sent = bound_request(CHAT, chat(id_slot=0, n_probs=10), bounds, limited=False, context_window=None)
    assert sent is not None and "id_slot" not in sent and "n_probs" not in sent


def test_a_limited_key_always_sends_an_explicit_output_limit() -> None:
    bounds = Bounds(default_max_tokens=64)
    sent = bound_request(CHAT, chat(ignore_eos=True), bounds, limited=True, context_window=None)
    assert sent is not None and sent["max_tokens"] == 64
    assert bound_request(CHAT, chat(), bounds, limited=False, context_window=None) is None  # untouched
    assert bound_request(CHAT, chat(max_tokens=5), bounds, limited=True, context_window=None) is None


@pytest.mark.parametrize(
    ("endpoint", "payload", "message"),
    [
        (CHAT, chat(logprobs=True, top_logprobs=100_000), "top_logprobs: at most 20"),
        ("/v1/completions", {"model": "m", "prompt": "a", "logprobs": 100}, "logprobs: at most 5"),
        (
            CHAT,
            {"model": "m", "messages": [{"role": "user", "content": "x"}] * 1001},
            "messages: at most 1000",
        ),
        (CHAT, chat(messages=[{"role": "user", "content": "word " * 8_000}]), "context window is 4096"),
    ],
)
def test_requests_that_multiply_cost_are_refused(
    endpoint: str, payload: dict[str, Any], message: str
) -> None:
    with pytest.raises(ApiError) as refused:
        bound_request(endpoint, payload, Bounds(), limited=False, context_window=4096)
    assert refused.value.status == 400 and message in refused.value.message


def test_the_context_check_is_a_lower_bound_images_and_separate_prompts_excluded() -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 1_000_000}}
    fits = chat(messages=[{"role": "user", "content": [{"type": "text", "text": "word " * 3000}, image]}])
    assert bound_request(CHAT, fits, Bounds(), limited=False, context_window=4096) is None
    prompts = {"model": "m", "prompt": ["word " * 5000, "word " * 5000]}  # two sequences, each fits
    assert bound_request("/v1/completions", prompts, Bounds(), limited=False, context_window=4096) is None


async def test_engine_parameters_cannot_spend_past_a_budget(upstream: ScriptedUpstream) -> None:
    pools = {"m": served("m", [replica(1001)], context_window=4096)}
    headers = {"authorization": "Bearer sk-budget"}
    async with client(upstream, pools, max_body=1 << 20, keys=(BUDGET,)) as gateway:
        answer = await gateway.post(
            CHAT, json=chat(max_tokens=1, n_predict=60, ignore_eos=True), headers=headers
        )
        assert answer.status_code == 200
        sent = json.loads(upstream.seen[-1].body)
        assert sent["max_tokens"] == 1 and "n_predict" not in sent
        assert (await gateway.post(CHAT, json=chat(ignore_eos=True), headers=headers)).status_code == 200
        assert json.loads(upstream.seen[-1].body)["max_tokens"] == 512  # limits.defaultMaxTokens
        huge = chat(messages=[{"role": "user", "content": "word " * 20_000}])
        answer = await gateway.post(CHAT, json=huge, headers=AUTH)
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "context_length_exceeded"
    assert len(upstream.seen) == 2


async def test_a_huge_body_is_not_sent_after_being_bounded(upstream: ScriptedUpstream) -> None:
    many = {"model": "m", "messages": [{"role": "user", "content": "x"}] * 20_000}
    pools = {"m": served("m", [replica(1001)])}
    async with client(upstream, pools, max_body=1 << 20) as gateway:
        answer = await gateway.post(CHAT, content=json.dumps(many), headers=AUTH)
    assert answer.status_code == 400 and "messages: at most 1000" in answer.text
    assert upstream.seen == []


async def test_an_answer_larger_than_the_buffer_bound_is_a_502_not_memory(upstream: ScriptedUpstream) -> None:
    pools = {"m": served("m", [replica(1001)])}
    verifier = TokenVerifier({"test": TokenVerifier.digest("sk-test")})
    app = create_app(
        pools, verifier, GatewaySettings(max_response_bytes=64), upstream=upstream, usage=Ledger()
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gw") as gateway:
        answer = await gateway.post(CHAT, json=chat(), headers={"authorization": "Bearer sk-test"})
    assert answer.status_code == 502 and answer.json()["error"]["code"] == "upstream_answer_too_large"


def test_usage_is_read_without_parsing_the_whole_answer() -> None:
    logprobs = [{"token": "a", "logprob": -0.1, "top_logprobs": [{"token": "b", "logprob": -1}] * 20}] * 2000
    body = {"choices": [{"message": {"content": 'say "usage": 1'}, "logprobs": {"content": logprobs}}]}
    raw = json.dumps(
        {**body, "usage": {"prompt_tokens": 12, "completion_tokens": 2000}, "timings": {}}
    ).encode()
    exchange = Exchange(BUDGET, CHAT)
    usage_from_body(raw, exchange)
    assert (exchange.input_tokens, exchange.output_tokens) == (12, 2000)
    usage_from_body(b'{"usage": {"prompt_tokens": ', exchange)  # cut: ignored, not an error
