"""Gateway metrics: OpenTelemetry GenAI names, buckets and attributes, through the gateway."""

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sovra.access.app import create_app
from sovra.access.auth import TokenVerifier
from sovra.access.balancer import Balancing
from sovra.access.gateway import GatewaySettings
from sovra.access.keys import ApiKey
from sovra.observe.metrics import MAX_TENANTS, GatewayMetrics
from tests.access.test_gateway import AUTH, CHAT, ScriptedUpstream, client, replica, served

pytestmark = pytest.mark.anyio


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples
    ]


def value(text: str, name: str, **labels: str) -> float:
    return sum(v for n, found, v in samples(text) if n == name and labels.items() <= found.items())


async def test_a_streamed_chat_is_measured_with_genai_names_and_attributes() -> None:
    upstream = ScriptedUpstream()
    async with client(upstream, {"m": served("m", [replica(1001)], provider="llama.cpp")}) as gateway:
        body = {**CHAT, "stream": True}
        await gateway.post("/v1/chat/completions", json=body, headers={**AUTH, "x-tenant-id": "team-a"})
        await gateway.post("/v1/chat/completions", json={**CHAT, "model": "gone"}, headers=AUTH)
        text = (await gateway.get("/metrics")).text
    attributes = {
        "gen_ai_operation_name": "chat",
        "gen_ai_provider_name": "llama.cpp",
        "gen_ai_request_model": "m",
        "gen_ai_response_model": "m",
        "tenant": "team-a",
    }
    assert value(text, "gen_ai_client_token_usage_sum", gen_ai_token_type="input", **attributes) == 11
    assert value(text, "gen_ai_client_token_usage_sum", gen_ai_token_type="output", **attributes) == 3
    assert value(text, "gen_ai_server_time_to_first_token_seconds_count", **attributes) == 1
    assert value(text, "gen_ai_server_time_per_output_token_seconds_count", **attributes) == 1
    assert value(text, "gen_ai_server_request_duration_seconds_count", error_type="", **attributes) == 1
    # The unknown model: counted with its error type, under the key's tenant (no header).
    assert (
        value(
            text, "gen_ai_server_request_duration_seconds_count", error_type="model_not_found", tenant="test"
        )
        == 1
    )
    assert value(text, "sovra_gateway_replica_picks_total", model="m", replica="0") == 1
    # A name nobody serves is the client's free text, never a label value (unbounded cardinality).
    assert "gone" not in text
    assert value(text, "gen_ai_server_request_duration_seconds_count", gen_ai_request_model="unknown") == 1


async def test_bucket_boundaries_are_the_semantic_conventions() -> None:
    upstream = ScriptedUpstream()
    async with client(upstream, {"m": served("m", [replica(1001)])}) as gateway:
        await gateway.post("/v1/chat/completions", json={**CHAT, "stream": True}, headers=AUTH)
        text = (await gateway.get("/metrics")).text

    def bounds(name: str) -> list[str]:
        return sorted({labels["le"] for n, labels, _ in samples(text) if n == name}, key=float)

    assert bounds("gen_ai_client_token_usage_bucket")[:3] == ["1.0", "4.0", "16.0"]
    assert bounds("gen_ai_client_token_usage_bucket")[-2:] == ["6.7108864e+07", "+Inf"]  # 64 Mi
    assert bounds("gen_ai_server_request_duration_seconds_bucket")[:2] == ["0.01", "0.02"]
    assert bounds("gen_ai_server_request_duration_seconds_bucket")[-2:] == ["81.92", "+Inf"]
    assert bounds("gen_ai_server_time_to_first_token_seconds_bucket")[:2] == ["0.001", "0.005"]
    assert bounds("gen_ai_server_time_per_output_token_seconds_bucket")[-2:] == ["2.5", "+Inf"]


async def test_rate_limits_and_failovers_are_counted() -> None:
    upstream = ScriptedUpstream()
    upstream.unreachable = {1001}
    limited = ApiKey("k3", "team-c", "ci", TokenVerifier.digest("sk-rpm"), rpm=1)
    pools = {"m": served("m", [replica(1001), replica(1002)], balancing=Balancing(affinity=False))}
    headers = {"authorization": "Bearer sk-rpm"}
    async with client(upstream, pools, keys=(limited,)) as gateway:
        for _ in range(3):
            await gateway.post("/v1/chat/completions", json=CHAT, headers=headers)
        text = (await gateway.get("/metrics")).text
    assert value(text, "sovra_gateway_rate_limited_total", limit="rpm", tenant="team-c") == 2
    assert value(text, "sovra_gateway_upstream_errors_total", error_type="upstream_unreachable") == 1
    assert value(text, "sovra_gateway_retries_total", reason="another_replica") == 1


def test_tenant_labels_are_bounded() -> None:
    metrics = GatewayMetrics()
    assert metrics.tenant_label("team-a") == "team-a"
    assert metrics.tenant_label("spaces are odd") == "other"
    assert metrics.tenant_label("x" * 200) == "other"
    for n in range(MAX_TENANTS):
        metrics.tenant_label(f"t{n}")
    assert metrics.tenant_label("one-too-many") == "other"
    assert metrics.tenant_label("team-a") == "team-a"  # known ones keep their label


async def test_a_tenant_key_cannot_label_its_traffic_as_another_tenant() -> None:
    tenant_key = ApiKey("k1", "team-b", "ci", TokenVerifier.digest("sk-team-b"))
    async with client(ScriptedUpstream(), {"m": served("m", [replica(1001)])}, keys=(tenant_key,)) as gateway:
        own = {"authorization": "Bearer sk-team-b", "x-tenant-id": "someone-else"}
        await gateway.post("/v1/chat/completions", json=CHAT, headers=own)
        await gateway.post("/v1/chat/completions", json=CHAT, headers={**AUTH, "x-tenant-id": "front-a"})
        text = (await gateway.get("/metrics")).text
    tenants = {labels.get("tenant") for _, labels, _ in samples(text) if "tenant" in labels}
    assert tenants == {"team-b", "front-a"}  # the operator token (a trusted front) may say; the key may not


async def test_metrics_can_be_kept_to_operators() -> None:
    tenant_key = ApiKey("k1", "team-b", "ci", TokenVerifier.digest("sk-team-b"))
    verifier = TokenVerifier({"ops": TokenVerifier.digest("sk-ops")})
    verifier.use_stored_keys([tenant_key])
    app = create_app(
        {"m": served("m", [replica(1001)])},
        verifier,
        GatewaySettings(metrics_auth=True),
        upstream=ScriptedUpstream(),
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gw") as gateway:
        assert (await gateway.get("/metrics")).status_code == 401
        assert (
            await gateway.get("/metrics", headers={"authorization": "Bearer sk-team-b"})
        ).status_code == 403
        allowed = await gateway.get("/metrics", headers={"authorization": "Bearer sk-ops"})
    assert allowed.status_code == 200 and "gen_ai" in allowed.text
