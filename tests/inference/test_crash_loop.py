"""The crash-loop breaker, with real processes that die by real signals."""

import asyncio
import sys
import time
from pathlib import Path

import pytest

from sovra.inference.drivers import Launch
from sovra.inference.exits import describe_exit
from sovra.inference.process import Backoff, EngineProcess, Replica, ReplicaState
from sovra.inference.supervisor import ServicePlan, Supervisor
from tests.inference.fakes import until

pytestmark = pytest.mark.anyio
STAND_IN = Path(__file__).parent / "stand_in_engine.py"


class DiesBy:
    """A launch whose process prints which start it is, then kills itself with `signal`."""

    def __init__(self, signal: str) -> None:
        self.signal = signal
        self.starts = 0

    def __call__(self, port: int) -> Launch:
        self.starts += 1
        return Launch(
            ("sh", "-c", f"echo 'start {self.starts}'; echo 'llama threadpool init'; kill -{self.signal} $$")
        )


def fast(give_up_after: int = 3) -> Backoff:
    return Backoff(first=0.01, cap=0.02, give_up_after=give_up_after)


async def test_a_replica_dying_by_sigill_gives_up_with_the_reason_and_can_be_retried() -> None:
    replica = Replica("smollm2", 0)
    launch = DiesBy("ILL")
    engine = EngineProcess(replica, launch, backoff=fast())
    task = asyncio.create_task(engine.run())
    try:
        await asyncio.wait_for(engine.wait_settled(), 20)
        assert replica.state is ReplicaState.FAILED and replica.failed
        assert replica.failure.startswith("SIGILL: the engine binary uses CPU instructions this machine")
        assert "sovra engines install --rebuild" in replica.failure
        assert launch.starts == 3 and replica.restarts == 2
        assert engine.last_output == "start 3 | llama threadpool init"  # the last start's, alone
        await asyncio.sleep(0.3)
        assert launch.starts == 3, "a failed replica must not be restarted by itself"

        engine.retry()
        await until(lambda: launch.starts > 3)
        await until(lambda: replica.state is ReplicaState.FAILED)
        assert launch.starts == 6  # a fresh count of failures after a retry
    finally:
        await engine.stop()
        await task
    assert replica.state is ReplicaState.STOPPED


async def test_the_supervisor_waits_no_longer_for_a_failed_replica_and_retries_it_on_demand() -> None:
    crash, slow = DiesBy("SEGV"), DiesBy("KILL")
    plans = [ServicePlan("broken", 1, crash), ServicePlan("oom", 1, slow)]
    supervisor = Supervisor(plans, startup_timeout=60, backoff=fast)  # the default takes ~15 s to give up
    await supervisor.start()
    try:
        started = time.monotonic()
        assert sorted(await supervisor.wait_ready()) == ["broken#0", "oom#0"]
        assert time.monotonic() - started < 30  # not the 60 s startup deadline
        reasons = {p.replica.service: p.replica.failure for p in supervisor.processes}
        assert reasons["broken"].startswith("SIGSEGV: segmentation fault")
        assert reasons["oom"].startswith("SIGKILL: killed, often by the kernel's out-of-memory killer")
        assert supervisor.retry_failed() == 2
        await until(lambda: crash.starts > 3 and slow.starts > 3)
    finally:
        await supervisor.stop()


async def test_a_stable_run_forgives_earlier_failures() -> None:
    backoff = Backoff(first=1, cap=8, stable_after=60, give_up_after=3)
    assert [backoff.delay(1), backoff.delay(1)] == [1, 2]
    assert backoff.delay(120) == 1  # ran for two minutes: the count starts again
    assert backoff.delay(1) == 2
    assert backoff.delay(1) is None  # third failed start in a row
    assert Backoff(give_up_after=0).delay(0) == 1.0  # 0: never give up


def test_exits_are_described_in_words() -> None:
    assert describe_exit(-4).startswith("SIGILL: the engine binary uses CPU instructions")
    assert describe_exit(-9).startswith("SIGKILL: killed, often by the kernel's out-of-memory killer")
    assert describe_exit(-7).startswith("SIGBUS:")
    assert describe_exit(3) == "exited with code 3"
    assert describe_exit(-200) == "killed by signal 200"


async def test_failed_probes_do_not_mark_a_replica_that_answers_requests_unhealthy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A busy engine answers /health late or not at all; while it answers requests it is healthy."""
    monkeypatch.setenv("STAND_IN_HEALTHY_PROBES", "3")  # the readiness probe and two more, then 503s
    replica = Replica("busy", 0)
    launch = lambda port: Launch((sys.executable, str(STAND_IN), "--port", str(port)))  # noqa: E731
    answered = [0.0]
    engine = EngineProcess(replica, launch, check_interval=0.05, backoff=fast(), answered=lambda: answered[0])
    task = asyncio.create_task(engine.run())
    try:
        await asyncio.wait_for(engine.wait_ready(), 20)
        states = set()
        for _ in range(40):  # 2 s of failing probes while the gateway sees answers
            answered[0] = time.monotonic()
            states.add(replica.state)
            await asyncio.sleep(0.05)
        assert states == {ReplicaState.READY}
        await until(lambda: replica.state is ReplicaState.UNHEALTHY, within=5)  # no answers: now it is
    finally:
        await engine.stop()
        await task
