"""The seam between dialects: each client dialect's call, and the upstream dialect chosen for it."""

import json

import pytest

from sovra.access.dialects.anthropic import ANTHROPIC_CLIENT
from sovra.access.dialects.anthropic_provider import ANTHROPIC_UPSTREAM
from sovra.access.dialects.base import Call
from sovra.access.dialects.compose import upstream_dialect
from sovra.access.dialects.infill import INFILL_UPSTREAM
from sovra.access.dialects.openai import OPENAI_CLIENT, OPENAI_UPSTREAM
from sovra.access.errors import ApiError

TIMINGS = {"timings_per_token": True}


def test_an_unchanged_openai_request_is_sent_byte_for_byte() -> None:
    raw = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'
    call = OPENAI_CLIENT.request("/v1/chat/completions", json.loads(raw), raw, "m", "m", TIMINGS)
    assert call.body is raw and not call.stream
    assert upstream_dialect("openai", call) is OPENAI_UPSTREAM


def test_a_streamed_openai_request_asks_for_usage_and_the_engines_name() -> None:
    payload = {
        "model": "alias",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "stream_options": {"x": 1},
    }
    call = OPENAI_CLIENT.request("/v1/chat/completions", payload, b"", "alias", "engine-name", TIMINGS)
    sent = json.loads(call.body)
    assert sent["model"] == "engine-name" and sent["timings_per_token"] is True
    assert sent["stream_options"] == {"x": 1, "include_usage": True}
    assert call.payload == sent and not call.wants_usage and call.model == "alias"


def test_a_completion_with_a_suffix_goes_to_infill() -> None:
    payload = {"model": "m", "prompt": "def f(", "suffix": "):\n", "max_tokens": 8}
    call = OPENAI_CLIENT.request("/v1/completions", payload, b"", "m", "m", {})
    dialect = upstream_dialect("openai", call)
    assert dialect is INFILL_UPSTREAM
    infill = dialect.request(call, "m")
    assert infill.path == "/infill"
    assert json.loads(infill.body) == {"input_prefix": "def f(", "input_suffix": "):\n", "n_predict": 8,
                                       "stream": False}  # fmt: skip


def test_an_anthropic_provider_gets_messages_and_only_chat() -> None:
    payload = {"model": "claude", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    chat = OPENAI_CLIENT.request("/v1/chat/completions", payload, b"", "claude", "claude-x", {})
    dialect = upstream_dialect("anthropic", chat)
    assert dialect is ANTHROPIC_UPSTREAM
    sent = dialect.request(chat, "claude-x")
    assert sent.path == "/v1/messages" and json.loads(sent.body)["model"] == "claude-x"
    embeddings = OPENAI_CLIENT.request("/v1/embeddings", {"model": "claude", "input": "x"}, b"", "claude",
                                       "claude-x", {})  # fmt: skip
    with pytest.raises(ApiError) as refused:
        dialect.request(embeddings, "claude-x")
    assert refused.value.code == "unsupported_endpoint"


def test_anthropic_clients_reach_engines_as_chat_and_get_their_own_errors() -> None:
    payload = {"model": "m", "max_tokens": 5, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    call = ANTHROPIC_CLIENT.request("/v1/messages", payload, b"", "m", "engine", TIMINGS)
    assert call.path == "/v1/chat/completions" and call.stream
    assert json.loads(call.body)["timings_per_token"] is True
    assert upstream_dialect("openai", call) is OPENAI_UPSTREAM
    error = ANTHROPIC_CLIENT.error(ApiError(429, "slow down", "rate_limit_exceeded", {"retry-after": "3"}))
    assert error.status_code == 429 and error.headers["retry-after"] == "3"
    assert json.loads(bytes(error.body))["error"]["type"] == "rate_limit_error"
    openai = json.loads(bytes(OPENAI_CLIENT.error(ApiError(429, "slow down", "rate_limit_exceeded")).body))
    assert openai["error"]["code"] == "rate_limit_exceeded"


def test_a_call_keeps_its_payload_beside_its_body() -> None:
    call = Call("/v1/chat/completions", {"a": 1}, b'{"a": 1}', "m", False)
    assert json.loads(call.body) == call.payload
