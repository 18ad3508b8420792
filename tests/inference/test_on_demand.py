"""Services with minReplicas 0: loaded by their first request, unloaded when idle, loaded again —
the supervisor driven through fakes of the launcher and prober (the real engine: test_lifecycle)."""

import asyncio
import time

import pytest

from sovra.inference.autoscaler import Autoscaling
from sovra.inference.drivers import Launch
from sovra.inference.process import Backoff, ReplicaState
from sovra.inference.supervisor import Activity, ServicePlan, Supervisor
from sovra.spec import Scaling
from tests.inference.fakes import FakeLauncher, FakeProber, until

pytestmark = pytest.mark.anyio


def launch(port: int) -> Launch:
    return Launch(("llama-server", "--port", str(port)), key_env="LLAMA_API_KEY")


class Traffic:
    """What the gateway's balancer would report: requests in flight, the last one's time."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.last = 0.0

    def __call__(self, service: str) -> Activity:
        return Activity(self.in_flight, self.last)


def supervisor(
    launcher: FakeLauncher, prober: FakeProber, traffic: Traffic, *plans: ServicePlan
) -> Supervisor:
    return Supervisor(
        plans,
        startup_timeout=5.0,
        backoff=lambda: Backoff(first=0.01, cap=0.02, give_up_after=2),
        activity=traffic,
        launcher=lambda: launcher,
        prober=lambda: prober,
        idle_check_seconds=0.02,
    )


async def test_an_on_demand_service_loads_when_asked_and_unloads_when_idle() -> None:
    launcher, prober, traffic = FakeLauncher(), FakeProber(), Traffic()
    kept = ServicePlan("kept", 1, launch)
    lazy = ServicePlan("lazy", 0, launch, idle_unload_seconds=0.3)
    engines = supervisor(launcher, prober, traffic, kept, lazy)
    await engines.start()
    try:
        assert await engines.wait_ready() == []  # only the kept one was started
        assert len(launcher.started) == 1
        assert engines.describe("lazy")["state"] == "unloaded" and engines.can_load("lazy")
        await engines.wait_for_replica("lazy")
        replica = engines.replicas["lazy"][0]
        assert replica.routable and engines.loads["lazy"] == 1 and len(launcher.started) == 2
        assert engines.describe("lazy")["state"] == "ready"
        traffic.in_flight = 1  # a long request: never unloaded under it
        assert engines.idle_for("lazy", time.monotonic()) is None
        await asyncio.sleep(0.5)  # past the idle time, the watcher checking every 0.02 s
        assert replica.routable
        traffic.in_flight, traffic.last = 0, time.monotonic()
        await until(lambda: replica.state is ReplicaState.STOPPED, within=5)
        assert launcher.started[1].terminated and not launcher.started[0].terminated  # the kept one stays
        assert engines.describe("lazy")["state"] == "unloaded"
        await engines.wait_for_replica("lazy")  # the next request loads it afresh
        assert replica.routable and engines.loads["lazy"] == 2 and len(launcher.started) == 3
    finally:
        await engines.stop()
    assert all(r.terminated for r in launcher.started)


async def test_a_service_that_keeps_failing_cannot_be_waited_for() -> None:
    launcher, prober, traffic = FakeLauncher(), FakeProber(), Traffic()
    launcher.refuse = FileNotFoundError(2, "No such file or directory")
    engines = supervisor(launcher, prober, traffic, ServicePlan("lazy", 0, launch, idle_unload_seconds=60))
    await engines.start()
    try:
        await engines.wait_for_replica("lazy")  # returns once it has given up
        assert engines.replicas["lazy"][0].failed
        assert not engines.can_load("lazy")  # a held request would wait for nothing: refused at once
        assert engines.describe("lazy")["state"] == "failed"
        assert "could not be started" in str(engines.describe("lazy")["replicas"])
    finally:
        await engines.stop()


async def test_services_it_does_not_run_are_not_its_to_load() -> None:
    engines = supervisor(FakeLauncher(), FakeProber(), Traffic())
    assert not engines.can_load("elsewhere") and engines.describe("elsewhere") == {}


class Metrics:
    """Each engine's Prometheus text, as the test sets it per port (llama-server's names)."""

    def __init__(self) -> None:
        self.processing: dict[int, int] = {}

    async def read(self, url: str, headers: object, within: float) -> str | None:
        port = int(url.split(":")[2].split("/")[0])
        busy = self.processing.get(port, 0)
        return f"# TYPE llamacpp:requests_processing gauge\nllamacpp:requests_processing {busy}\n" \
               "# TYPE llamacpp:requests_deferred gauge\nllamacpp:requests_deferred 0\n"  # fmt: skip

    async def aclose(self) -> None:
        pass


async def test_the_scaler_adds_a_replica_under_load_and_removes_it_after_the_cooldown() -> None:
    launcher, prober, metrics = FakeLauncher(), FakeProber(), Metrics()
    declared = Scaling(minReplicas=1, maxReplicas=3, runningRatioThreshold=0.7)
    scaling = declared.model_copy(update={"cooldown_seconds": 0.4})  # as engines.cooldownSeconds does
    plan = ServicePlan("svc", 1, launch, autoscaling=Autoscaling(scaling, slots=4, polling_seconds=0.02))
    in_flight: dict[int, int] = {}
    engines = Supervisor(
        [plan], startup_timeout=5.0, launcher=lambda: launcher, prober=lambda: prober,
        metrics=metrics, busy=lambda replica: in_flight.get(replica.index, 0),
    )  # fmt: skip
    await engines.start()
    try:
        assert await engines.wait_ready() == [] and len(engines.replicas["svc"]) == 3
        first, second, _ = engines.replicas["svc"]
        metrics.processing[first.port] = 4  # every slot busy: 1.0 running per slot > 0.7
        await until(lambda: second.routable, within=5)
        assert len(launcher.started) == 2  # one more, not two: ceil(1 * 1.0 / 0.7) = 2
        assert "1 → 2" in str(engines.describe("svc")["last_scaling"])
        metrics.processing[first.port] = 2
        metrics.processing[second.port] = 2  # 0.5 per slot: ceil(2 * 0.5 / 0.7) = 2, it stays
        await asyncio.sleep(0.6)
        assert second.routable and len(launcher.started) == 2
        metrics.processing = {}
        in_flight[second.index] = 1  # quiet engines, but a request still on the second replica
        await asyncio.sleep(0.8)
        assert second.routable  # never stopped under a request
        in_flight.clear()
        await until(lambda: second.state is ReplicaState.STOPPED, within=5)
        assert first.routable and "2 → 1" in str(engines.describe("svc")["last_scaling"])
    finally:
        await engines.stop()
