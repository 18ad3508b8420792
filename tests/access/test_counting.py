"""Token counting through the real gateway app: what reaches the engine, the shapes answered, and
what is refused (the real llama-server's counts are checked in tests/test_end_to_end.py)."""

import json
from collections.abc import Mapping

import httpx
import pytest

from sovra.access.app import create_app
from sovra.access.auth import TokenVerifier
from sovra.access.balancer import ReplicaPool
from sovra.access.served import FixedEndpoint, ServedModel
from sovra.inference.process import Replica, ReplicaState
from tests.access.test_gateway import AUTH, TOKEN, FakeResponse

pytestmark = pytest.mark.anyio


class Engine:
    """llama-server's /apply-template and /tokenize, vLLM's /tokenize, a provider's own count."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, object]]] = []

    async def post(
        self, url: str, body: bytes, model: str, headers: Mapping[str, str] | None = None
    ) -> FakeResponse:
        sent = json.loads(body)
        self.seen.append((url, sent))
        if url.endswith("/apply-template"):
            return FakeResponse(200, json.dumps({"prompt": "|".join(m["content"] for m in sent["messages"])}))
        if url.endswith("/tokenize") and "content" in sent:
            return FakeResponse(200, json.dumps({"tokens": list(range(len(sent["content"])))}))
        if url.endswith("/tokenize"):
            return FakeResponse(200, json.dumps({"count": 99}))
        return FakeResponse(200, json.dumps({"input_tokens": 7}))

    async def aclose(self) -> None:
        pass


def model(name: str, provider: str, api: str = "openai") -> ServedModel:
    endpoint = (
        Replica(name, 0, port=1001, state=ReplicaState.READY)
        if provider == "llama.cpp"
        else FixedEndpoint("http://p")
    )
    return ServedModel(name, ReplicaPool(name, [endpoint]), provider, f"{name}-upstream", api)  # type: ignore[arg-type]


@pytest.fixture
async def gateway() -> tuple[httpx.AsyncClient, Engine]:
    engine = Engine()
    served = {
        "local": model("local", "llama.cpp"),
        "vllm": model("vllm", "vllm"),
        "claude": model("claude", "anthropic-co", "anthropic"),
        "gpt": model("gpt", "openai-co"),
    }
    app = create_app(served, TokenVerifier({"test": TokenVerifier.digest(TOKEN)}), upstream=engine)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gw"), engine


async def test_llama_server_renders_then_tokenizes(gateway: tuple[httpx.AsyncClient, Engine]) -> None:
    http, engine = gateway
    ask = {"model": "local", "system": "ab", "messages": [{"role": "user", "content": "cde"}]}
    answer = await http.post("/v1/messages/count_tokens", json=ask, headers=AUTH)
    assert answer.json() == {"input_tokens": len("ab|cde")}
    (rendered_at, rendered), (tokenized_at, tokenized) = engine.seen
    assert tokenized_at.endswith(":1001/tokenize")
    assert rendered_at.endswith(":1001/apply-template") and rendered["model"] == "local-upstream"
    assert rendered["messages"] == [{"role": "system", "content": "ab"}, {"role": "user", "content": "cde"}]
    assert tokenized == {"content": "ab|cde", "add_special": True, "parse_special": True}
    responses = await http.post(
        "/v1/responses/input_tokens",
        json={"model": "local", "input": "xyz", "instructions": "i"},
        headers=AUTH,
    )
    assert responses.json() == {"object": "response.input_tokens", "input_tokens": len("i|xyz")}


async def test_vllm_and_providers(gateway: tuple[httpx.AsyncClient, Engine]) -> None:
    http, engine = gateway
    vllm = await http.post("/v1/responses/input_tokens", json={"model": "vllm", "input": "x"}, headers=AUTH)
    assert vllm.json()["input_tokens"] == 99 and engine.seen[-1][0] == "http://p/tokenize"
    ask = {"model": "claude", "messages": [{"role": "user", "content": "x"}]}
    claude = await http.post("/v1/messages/count_tokens", json=ask, headers=AUTH)
    assert claude.json() == {"input_tokens": 7}
    assert engine.seen[-1] == ("http://p/v1/messages/count_tokens", {**ask, "model": "claude-upstream"})
    gpt = await http.post("/v1/responses/input_tokens", json={"model": "gpt", "input": "x"}, headers=AUTH)
    assert gpt.json()["input_tokens"] == 7 and engine.seen[-1][0] == "http://p/v1/responses/input_tokens"
    crossed = await http.post("/v1/messages/count_tokens", json={**ask, "model": "gpt"}, headers=AUTH)
    assert crossed.status_code == 400 and crossed.json()["type"] == "error"  # in Anthropic's envelope


async def test_counting_needs_a_key_and_a_known_model(gateway: tuple[httpx.AsyncClient, Engine]) -> None:
    http, _ = gateway
    ask = {"model": "local", "messages": [{"role": "user", "content": "x"}]}
    assert (await http.post("/v1/messages/count_tokens", json=ask)).status_code == 401
    unknown = await http.post("/v1/messages/count_tokens", json={**ask, "model": "nope"}, headers=AUTH)
    assert unknown.status_code == 404
    bad = await http.post("/v1/responses/input_tokens", json={"model": "local", "input": 3}, headers=AUTH)
    assert bad.status_code == 400 and "input" in bad.json()["error"]["message"]
