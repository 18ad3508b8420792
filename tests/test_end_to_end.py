"""`sovra up` with the real llama-server and SmolLM2, driven by the official OpenAI SDK."""

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from tests.conftest import TOKEN, RunningPlatform

pytestmark = pytest.mark.engine


@pytest.fixture
def client(platform: RunningPlatform) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{platform.base_url}/v1", api_key=TOKEN, max_retries=0)


def test_models_lists_the_catalog_and_the_router(client: openai.OpenAI) -> None:
    models = client.models.list().data
    assert [m.id for m in models] == ["smollm2", "MoM"]
    smollm2 = models[0].model_dump()  # as catalog/smollm2.yaml declares it
    assert (smollm2["context_window"], smollm2["tier"], smollm2["specialty"]) == (4096, "small", "general")
    assert smollm2["weights"] == "HuggingFaceTB/SmolLM2-135M-Instruct@main"
    assert {"chat", "tools", "fim"} <= set(smollm2["capabilities"]) and "vision" not in smollm2[
        "capabilities"
    ]
    assert client.models.retrieve("smollm2").model_dump()["context_length"] == 4096


def test_chat_completion(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Name a colour."}],
        max_tokens=12,
        temperature=0,
    )
    assert reply.choices[0].message.content
    assert reply.usage is not None and reply.usage.completion_tokens > 0 and reply.usage.prompt_tokens > 5
    assert reply.system_fingerprint is None and "timings" not in reply.model_dump()  # llama-server's own


def test_chat_completion_streams_chunk_by_chunk(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Count from one to five."}],
        max_tokens=16,
        temperature=0,
        stream=True,
    )
    chunks = list(stream)
    assert not any(chunk.system_fingerprint or "timings" in chunk.model_dump() for chunk in chunks)
    pieces = [
        chunk.choices[0].delta.content for chunk in chunks if chunk.choices and chunk.choices[0].delta.content
    ]
    assert len(pieces) >= 5  # token by token, not one buffered blob
    assert "".join(pieces).strip()


def test_the_header_routes_like_envoy_ai_gateway(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="anything",
        messages=[{"role": "user", "content": "Hi"}],
        max_tokens=4,
        extra_headers={"x-ai-eg-model": "smollm2"},
    )
    assert reply.choices[0].message.content is not None


def test_completion_with_suffix_reaches_the_engine(client: openai.OpenAI) -> None:
    prefix = "def add(a, b):\n    return "
    short = client.completions.create(
        model="smollm2", prompt=prefix, suffix="\n", max_tokens=4, temperature=0
    )
    long_suffix = "\n\n" + "\n".join(f"assert add({i}, {i}) == {2 * i}" for i in range(10)) + "\n"
    long = client.completions.create(
        model="smollm2", prompt=prefix, suffix=long_suffix, max_tokens=4, temperature=0
    )
    assert short.object == "text_completion" and long.choices[0].finish_reason in ("stop", "length")
    assert short.usage is not None and long.usage is not None
    # The engine counted the suffix's tokens: it was in the FIM prompt it evaluated.
    assert long.usage.prompt_tokens - short.usage.prompt_tokens >= 40


def test_completion_with_suffix_streams(client: openai.OpenAI) -> None:
    stream = client.completions.create(
        model="smollm2",
        prompt="x = ",
        suffix="\n",
        max_tokens=4,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens > 0
    assert any(c.choices and c.choices[0].finish_reason for c in chunks)


def test_a_wrong_token_is_401(platform: RunningPlatform) -> None:
    bad = openai.OpenAI(base_url=f"{platform.base_url}/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        bad.models.list()
    assert caught.value.status_code == 401


def test_an_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert "gpt-4o" in str(caught.value)


def test_malformed_json_is_400(platform: RunningPlatform) -> None:
    response = httpx.post(
        f"{platform.base_url}/v1/chat/completions",
        content=b'{"model": "smollm2", "messages": [',
        headers={"authorization": f"Bearer {TOKEN}", "content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


def engine_url(platform: RunningPlatform) -> str:
    (pid,) = platform.engine_pids()
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    return f"http://127.0.0.1:{argv[argv.index('--port') + 1]}"


def test_the_engine_answers_only_the_gateway(platform: RunningPlatform) -> None:
    """Any local process can reach the engine's port; without the per-start secret it gets 401."""
    (pid,) = platform.engine_pids()
    body = {"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    refused = httpx.post(f"{engine_url(platform)}/v1/chat/completions", json=body, timeout=30)
    assert refused.status_code == 401
    assert str(platform.engine_key(pid)["authorization"]).removeprefix("Bearer ") not in (
        Path(f"/proc/{pid}/cmdline").read_text()
    )  # not on the command line, which `ps` shows every user
    allowed = httpx.post(
        f"{engine_url(platform)}/v1/chat/completions", json=body, headers=platform.engine_key(pid), timeout=60
    )
    assert allowed.status_code == 200


def busy_slots(platform: RunningPlatform) -> int:
    (pid,) = platform.engine_pids()
    slots = httpx.get(f"{engine_url(platform)}/slots", headers=platform.engine_key(pid), timeout=5).json()
    return sum(1 for slot in slots if slot["is_processing"])


def test_a_client_that_hangs_up_stops_the_generation(platform: RunningPlatform) -> None:
    body = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": "Tell me a very long story."}],
        "max_tokens": 3000,
        "ignore_eos": True,
        "stream": True,
    }
    headers = {"authorization": f"Bearer {TOKEN}"}
    with httpx.stream(
        "POST", f"{platform.base_url}/v1/chat/completions", json=body, headers=headers
    ) as response:
        lines = response.iter_lines()
        for _ in range(6):
            next(lines)
        assert busy_slots(platform) == 1
    deadline = time.monotonic() + 3  # 3000 tokens would take the engine ~20 s more
    while busy_slots(platform) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert busy_slots(platform) == 0, "the engine kept generating for a client that left"
    (pid,) = platform.engine_pids()
    engine_metrics = httpx.get(
        f"{engine_url(platform)}/metrics", headers=platform.engine_key(pid), timeout=5
    ).text
    assert "llamacpp:requests_processing 0" in engine_metrics


def sovra_cli(platform: RunningPlatform, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "sovra", *args, "-c", str(platform.config)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return result.stdout


def eventually(check: Callable[[], bool], within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_keys_created_and_revoked_with_the_cli_take_effect(platform: RunningPlatform) -> None:
    created = sovra_cli(platform, "keys", "create", "--tenant", "team-e2e", "--models", "smollm2")
    token = created.strip().splitlines()[-1]
    key_id = token.split("-")[2]
    assert key_id in sovra_cli(platform, "keys", "list")

    def status() -> int:
        headers = {"authorization": f"Bearer {token}"}
        return httpx.get(f"{platform.base_url}/v1/models", headers=headers, timeout=5).status_code

    assert eventually(lambda: status() == 200)
    sovra_cli(platform, "keys", "revoke", key_id)
    assert eventually(lambda: status() == 401)


def test_a_key_over_its_rate_limit_gets_429_with_retry_after(platform: RunningPlatform) -> None:
    token = (
        sovra_cli(platform, "keys", "create", "--tenant", "team-rl", "--rpm", "2").strip().splitlines()[-1]
    )
    limited = openai.OpenAI(base_url=f"{platform.base_url}/v1", api_key=token, max_retries=0)
    assert eventually(lambda: _accepted(limited))
    ask = {"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    limited.chat.completions.create(**ask)  # type: ignore[call-overload]
    limited.chat.completions.create(**ask)  # type: ignore[call-overload]
    with pytest.raises(openai.RateLimitError) as caught:
        limited.chat.completions.create(**ask)  # type: ignore[call-overload]
    assert int(caught.value.response.headers["retry-after"]) >= 1
    assert caught.value.code == "rate_limit_exceeded"


def _accepted(client: openai.OpenAI) -> bool:
    try:
        client.models.list()
    except openai.AuthenticationError:
        return False
    return True


def test_metrics_follow_the_genai_conventions(client: openai.OpenAI, platform: RunningPlatform) -> None:
    stream = client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "Hi"}], max_tokens=4, stream=True
    )
    assert [c for c in stream]
    text = httpx.get(f"{platform.base_url}/metrics", timeout=5).text
    assert (
        'gen_ai_server_time_to_first_token_seconds_count{gen_ai_operation_name="chat",gen_ai_provider_name="llama.cpp"'
        in text
    )
    assert 'gen_ai_client_token_usage_bucket{gen_ai_operation_name="chat"' in text
    assert 'gen_ai_token_type="output"' in text


def test_the_anthropic_sdk_works_against_llama_server(platform: RunningPlatform) -> None:
    ask = {
        "model": "smollm2",
        "max_tokens": 12,
        "extra_body": {"temperature": 0},  # greedy, so both answers below are the same
        "system": "You are terse.",
        "messages": [{"role": "user", "content": "Name a fruit."}],
    }
    with anthropic.Anthropic(base_url=platform.base_url, api_key=TOKEN, max_retries=0) as claude:
        message = claude.messages.create(**ask)  # type: ignore[arg-type]
        with claude.messages.stream(**ask) as stream:  # type: ignore[arg-type]
            pieces = list(stream.text_stream)
            final = stream.get_final_message()
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "text" and message.content[0].text  # type: ignore[union-attr]
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert message.usage.input_tokens > 5 and message.usage.output_tokens > 0
    assert len(pieces) >= 2 and "".join(pieces) == final.content[0].text  # type: ignore[union-attr]
    assert final.usage.output_tokens == message.usage.output_tokens
    with (
        anthropic.Anthropic(base_url=platform.base_url, api_key="sk-wrong", max_retries=0) as stranger,
        pytest.raises(anthropic.AuthenticationError),
    ):
        stranger.messages.create(**ask)  # type: ignore[arg-type]


WEATHER_TOOL = {
    "name": "weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@pytest.mark.parametrize(
    "ask",
    [
        {"messages": [{"role": "user", "content": "Hello there"}]},
        {
            "system": "You are terse.",
            "messages": [
                {"role": "user", "content": "Hello there"},
                {"role": "assistant", "content": "Hi."},
                {"role": "user", "content": "Name a fruit."},
            ],
        },
        {"messages": [{"role": "user", "content": "Weather in Paris?"}], "tools": [WEATHER_TOOL]},
    ],
    ids=["one-message", "system-and-turns", "tools"],
)
def test_count_tokens_is_what_the_answer_then_reports(
    platform: RunningPlatform, ask: dict[str, object]
) -> None:
    with anthropic.Anthropic(base_url=platform.base_url, api_key=TOKEN, max_retries=0) as claude:
        counted = claude.messages.count_tokens(model="smollm2", **ask).input_tokens  # type: ignore[arg-type]
        usage = claude.messages.create(model="smollm2", max_tokens=2, **ask).usage  # type: ignore[arg-type]
    # Anthropic counts the tokens read from the cache apart from input_tokens: together, the prompt.
    assert counted == usage.input_tokens + (usage.cache_read_input_tokens or 0)
    assert counted > 5


def test_the_responses_api_against_llama_server(client: openai.OpenAI) -> None:
    ask = {"model": "smollm2", "input": "Tell me a joke.", "instructions": "Be kind."}
    counted = client.responses.input_tokens.count(**ask).input_tokens  # type: ignore[arg-type]
    first = client.responses.create(**ask, max_output_tokens=8)  # type: ignore[arg-type]
    assert first.output_text and first.usage is not None and first.usage.input_tokens == counted
    with client.responses.stream(model="smollm2", input="Say hi.", previous_response_id=first.id) as stream:
        kinds = [event.type for event in stream]
    assert kinds[0] == "response.created" and "response.output_text.delta" in kinds
    assert kinds[-1] in ("response.completed", "response.incomplete")
    assert len(client.responses.input_items.list(first.id).data) == 1


def test_concurrent_requests_cannot_spend_past_a_budget(platform: RunningPlatform) -> None:
    """12 at once against a 400-token budget, engine parameters included: what the engine really
    processed (the ledger's counts, from its usage) stays within the budget."""
    created = sovra_cli(
        platform, "keys", "create", "--tenant", "team-budget", "--budget", "400", "--period", "day"
    )
    token = created.strip().splitlines()[-1]
    headers = {"authorization": f"Bearer {token}"}
    body = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": "Write a poem about the sea."}],
        "max_tokens": 1, "n_predict": 60, "ignore_eos": True,
    }  # fmt: skip
    assert eventually(
        lambda: httpx.get(f"{platform.base_url}/v1/models", headers=headers, timeout=5).status_code == 200
    )

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=platform.base_url, headers=headers, timeout=120) as http:
            return await asyncio.gather(*(http.post("/v1/chat/completions", json=body) for _ in range(12)))

    answers = asyncio.run(burst())
    served = [a.json()["usage"] for a in answers if a.status_code == 200]
    assert served and all(a.status_code in (200, 429) for a in answers), [a.text for a in answers]
    assert all(usage["completion_tokens"] <= 1 for usage in served)  # n_predict did not get past max_tokens
    spent = sum(usage["prompt_tokens"] + usage["completion_tokens"] for usage in served)
    assert spent <= 400, f"{spent} tokens spent against a 400-token budget"


def test_a_prompt_longer_than_the_context_is_context_length_exceeded(client: openai.OpenAI) -> None:
    too_long = "the cat sat on the mat and " * 900  # ~6,300 tokens; SmolLM2's window is 4,096
    for ask in (
        lambda: client.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": too_long}]
        ),
        lambda: client.responses.create(model="smollm2", input=too_long, stream=True),
    ):
        with pytest.raises(openai.BadRequestError) as caught:
            ask()
        assert caught.value.code == "context_length_exceeded"
        assert "context window is 4096" in caught.value.message
