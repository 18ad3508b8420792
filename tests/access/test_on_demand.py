"""Requests for a model with no ready replica are held while it loads, then answered — the gateway
with the real supervisor, whose engines are fakes (launcher and prober), and a scripted upstream."""

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import uvicorn

from sovra.access.app import GatewayApp, create_app
from sovra.access.auth import TokenVerifier
from sovra.access.balancer import ReplicaPool
from sovra.access.gateway import GatewaySettings
from sovra.access.limits import MemoryLimits
from sovra.access.served import ServedModel
from sovra.inference.drivers import Launch
from sovra.inference.process import Backoff
from sovra.inference.supervisor import Activity, ServicePlan, Supervisor
from tests.access.test_gateway import AUTH, CHAT, TOKEN, Ledger, ScriptedUpstream, assert_error
from tests.inference.fakes import FakeLauncher, FakeProber, until

pytestmark = pytest.mark.anyio


def launch(port: int) -> Launch:
    return Launch(("llama-server", "--port", str(port)), key_env="LLAMA_API_KEY")


@asynccontextmanager
async def on_demand(
    upstream: ScriptedUpstream,
    prober: FakeProber,
    ledger: Ledger,
    memory: int | None = None,
    **settings: float,
) -> AsyncIterator[tuple[httpx.AsyncClient, Supervisor, FakeLauncher, GatewayApp]]:
    """Model `m` with minReplicas 0 behind the real gateway app."""
    launcher = FakeLauncher()
    served: dict[str, ServedModel] = {}

    def activity(service: str) -> Activity:
        return Activity(served[service].pool.in_flight(), served[service].pool.last_leased)

    engines = Supervisor(
        [ServicePlan("m", 0, launch, idle_unload_seconds=60, memory=memory)],
        startup_timeout=5.0,
        backoff=lambda: Backoff(first=0.01, give_up_after=2),
        activity=activity,
        launcher=lambda: launcher,
        prober=lambda: prober,
        memory_budget=2**30,
    )
    served["m"] = ServedModel("m", ReplicaPool("m", engines.replicas["m"]))
    verifier = TokenVerifier({"test": TokenVerifier.digest(TOKEN)})
    app = create_app(
        served, verifier, GatewaySettings(**settings), upstream=upstream, usage=ledger,  # type: ignore[arg-type]
        limits=MemoryLimits(), capacity=engines,
    )  # fmt: skip
    await engines.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gateway") as http:
            yield http, engines, launcher, app
    finally:
        await engines.stop()


async def test_the_first_requests_wait_for_the_load_and_are_all_answered(upstream: ScriptedUpstream) -> None:
    prober, ledger = FakeProber(healthy=False), Ledger()
    async with on_demand(upstream, prober, ledger) as (http, engines, launcher, _):
        health = await http.get("/health")
        assert health.status_code == 200 and health.json()["services"]["m"]["state"] == "unloaded"
        asked = [
            asyncio.create_task(http.post("/v1/chat/completions", json=CHAT, headers=AUTH)) for _ in range(5)
        ]
        await asyncio.sleep(0.3)
        assert not any(t.done() for t in asked)  # held while the engine starts, not refused
        status = (await http.get("/v1/status", headers=AUTH)).json()["services"]["m"]
        assert status["state"] == "loading" and status["held"] == 5
        prober.healthy_now = True  # the engine answers its health check: ready
        answers = await asyncio.gather(*asked)
        assert [a.status_code for a in answers] == [200] * 5
        assert len(launcher.started) == 1 and engines.loads["m"] == 1  # one load for all five
        assert len(ledger.rows) == 5
        status = (await http.get("/v1/status", headers=AUTH)).json()["services"]["m"]
        assert status["state"] == "ready" and status["held"] == 0 and status["unloads_in_seconds"] > 0


async def test_a_load_past_the_deadline_is_a_503_with_retry_after(upstream: ScriptedUpstream) -> None:
    held = on_demand(upstream, FakeProber(healthy=False), Ledger(), load_wait_seconds=0.2)
    async with held as (http, _, _, _):
        answer = await http.post("/v1/chat/completions", json=CHAT, headers=AUTH)
        assert_error(answer, 503, "model_loading")
        assert answer.headers["retry-after"] and "not ready within 0.2 s" in answer.json()["error"]["message"]


async def test_the_queue_of_held_requests_is_bounded(upstream: ScriptedUpstream) -> None:
    prober = FakeProber(healthy=False)
    async with on_demand(upstream, prober, Ledger(), load_queue_length=2) as (http, _, _, _):
        held = [
            asyncio.create_task(http.post("/v1/chat/completions", json=CHAT, headers=AUTH)) for _ in range(2)
        ]
        await asyncio.sleep(0.2)
        refused = await http.post("/v1/chat/completions", json=CHAT, headers=AUTH)
        assert_error(refused, 503, "model_loading")
        assert "2 requests already wait" in refused.json()["error"]["message"]
        prober.healthy_now = True
        assert [a.status_code for a in await asyncio.gather(*held)] == [200, 200]


async def test_a_model_that_cannot_start_is_refused_at_once(upstream: ScriptedUpstream) -> None:
    async with on_demand(upstream, FakeProber(), Ledger()) as (http, engines, launcher, _):
        launcher.refuse = FileNotFoundError(2, "No such file or directory")
        first = await http.post("/v1/chat/completions", json=CHAT, headers=AUTH)
        assert_error(first, 503, "model_unavailable")  # waited for the failed starts, then said so
        assert engines.replicas["m"][0].failed
        again = await http.post("/v1/chat/completions", json=CHAT, headers=AUTH)
        assert_error(again, 503, "model_unavailable")
        health = (await http.get("/health")).json()
        assert health["status"] == "degraded" and "could not be started" in health["services"]["m"]["reason"]


async def test_operators_load_and_unload_a_service(upstream: ScriptedUpstream) -> None:
    async with on_demand(upstream, FakeProber(), Ledger()) as (http, engines, launcher, _):
        loaded = await http.post("/v1/status/m/load", headers=AUTH)
        assert loaded.status_code == 200 and loaded.json()["state"] == "ready" and len(launcher.started) == 1
        unloaded = await http.post("/v1/status/m/unload", headers=AUTH)
        assert unloaded.json() | {"stopped": 1, "state": "unloaded"} == unloaded.json()
        assert launcher.started[0].terminated and not engines.replicas["m"][0].routable
        assert_error(await http.post("/v1/status/nope/load", headers=AUTH), 404, "model_not_found")
        assert_error(await http.post("/v1/status/m/load"), 401, "invalid_api_key")


async def test_a_client_that_hangs_up_leaves_the_queue(upstream: ScriptedUpstream) -> None:
    """Through a real HTTP server (uvicorn), a real socket closed while its request is held."""
    prober = FakeProber(healthy=False)
    async with on_demand(upstream, prober, Ledger()) as (http, _, launcher, app):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="off"))
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            await until(lambda: server.started, within=10)
            _, writer = await asyncio.open_connection(*sock.getsockname())
            body = json.dumps(CHAT).encode()
            head = (
                f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: {AUTH['authorization']}\r\n"
            )
            writer.write(
                f"{head}content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body
            )
            await writer.drain()

            async def held() -> int:
                return int((await http.get("/v1/status", headers=AUTH)).json()["services"]["m"]["held"])

            for _ in range(200):
                if await held() == 1:
                    break
                await asyncio.sleep(0.02)
            assert await held() == 1
            writer.close()  # the client hangs up while the model loads
            for _ in range(200):
                if await held() == 0:
                    break
                await asyncio.sleep(0.02)
            assert await held() == 0
            assert len(launcher.started) == 1  # the load itself goes on for whoever asks next
            prober.healthy_now = True
            assert (await http.post("/v1/chat/completions", json=CHAT, headers=AUTH)).status_code == 200
        finally:
            server.should_exit = True
            await serving


async def test_a_model_that_can_never_fit_is_refused_with_its_size_and_the_budget(
    upstream: ScriptedUpstream,
) -> None:
    async with on_demand(upstream, FakeProber(), Ledger(), memory=3 * 2**30) as (http, _, launcher, _):
        answer = await http.post("/v1/chat/completions", json=CHAT, headers=AUTH)
        assert_error(answer, 503, "insufficient_memory")
        message = answer.json()["error"]["message"]
        assert "3.00 GiB" in message and "1.00 GiB" in message and "never fit" in message
        assert launcher.started == []
