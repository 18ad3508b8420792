"""External OpenAI-compatible providers, against a scripted provider on loopback (aiohttp.web) and the
real HttpUpstream: the key goes with each request, aliases become the provider's model names."""

from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web

from sovra.access.app import create_app
from sovra.access.auth import TokenVerifier
from sovra.access.providers import provider_pools
from sovra.access.upstream import HttpUpstream
from sovra.config import Provider
from sovra.errors import ConfigError
from tests.access.loopback import serving
from tests.access.test_gateway import AUTH, CHAT, TOKEN, Ledger

pytestmark = pytest.mark.anyio


@pytest.fixture
async def provider() -> AsyncIterator[tuple[str, list[dict[str, object]]]]:
    """A scripted provider that insists on its key and records what it was asked."""
    seen: list[dict[str, object]] = []

    async def chat(request: web.Request) -> web.Response:
        if request.headers.get("authorization") != "Bearer sk-provider":
            return web.json_response({"error": {"message": "bad key"}}, status=401)
        body = await request.json()
        seen.append(body)
        answer = {"object": "chat.completion", "model": body["model"], "choices": [{"message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
                  "usage": {"prompt_tokens": 3, "completion_tokens": 1}}  # fmt: skip
        return web.json_response(answer)

    app = web.Application()
    app.router.add_post("/api/v1/chat/completions", chat)
    async with serving(app) as url:
        yield f"{url}/api/v1", seen


async def test_an_alias_is_served_by_the_provider_with_its_key(
    provider: tuple[str, list[dict[str, object]]],
) -> None:
    base_url, seen = provider
    config = Provider(name="acme", base_url=base_url, api_key_env="ACME_KEY", models={"fast": "acme-large-2"})
    pools = provider_pools((config,), {"ACME_KEY": "sk-provider"}, taken={"smollm2"})
    ledger = Ledger()
    upstream = HttpUpstream(timeout=10)  # the real one; closed below (ASGITransport runs no lifespan)
    app = create_app(
        pools, TokenVerifier({"test": TokenVerifier.digest(TOKEN)}), usage=ledger, upstream=upstream
    )
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url="http://gateway"
        ) as gateway:
            response = await gateway.post(
                "/v1/chat/completions", json={**CHAT, "model": "fast"}, headers=AUTH
            )
            assert response.status_code == 200 and response.json()["choices"][0]["message"]["content"] == "hi"
            models = (await gateway.get("/v1/models", headers=AUTH)).json()
            metrics = (await gateway.get("/metrics")).text
    finally:
        await upstream.aclose()
    assert seen[0]["model"] == "acme-large-2"  # the provider's own name, not the alias
    assert [m["id"] for m in models["data"]] == ["fast"]
    (row,) = ledger.rows
    assert (row.requested_model, row.served_model, row.input_tokens, row.output_tokens) == (
        "fast",
        "fast",
        3,
        1,
    )
    assert 'gen_ai_provider_name="acme"' in metrics


def test_a_missing_key_or_a_clashing_alias_is_a_config_error() -> None:
    config = Provider(
        name="acme", base_url="https://api.acme.test/v1", api_key_env="ACME_KEY", models={"smollm2": "x"}
    )
    with pytest.raises(ConfigError) as caught:
        provider_pools((config,), {}, taken=set())
    assert str(caught.value) == "sovra.yaml: providers.0.apiKeyEnv: ACME_KEY is not set"
    with pytest.raises(ConfigError, match=r"providers\.0\.models\.smollm2: this model name is already used"):
        provider_pools((config,), {"ACME_KEY": "k"}, taken={"smollm2"})


def test_the_base_url_must_be_an_api_root() -> None:
    with pytest.raises(ValueError, match="base_url"):
        Provider(name="acme", base_url="https://api.acme.test/chat", models={"a": "b"})
