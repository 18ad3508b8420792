"""Every transition of the engine state machine, driven through fakes of its Launcher and Prober
(the real engine is in test_supervisor.py and test_crash_loop.py)."""

import asyncio
from collections.abc import Callable

import pytest

from sovra.inference.drivers import Launch
from sovra.inference.process import TRANSITIONS, Backoff, EngineProcess, Replica, ReplicaState
from tests.inference.fakes import FakeLauncher, FakeProber, until

pytestmark = pytest.mark.anyio
S = ReplicaState


def launch(port: int) -> Launch:
    return Launch(("llama-server", "--port", str(port)), key_env="LLAMA_API_KEY")


def engine(
    launcher: FakeLauncher,
    prober: FakeProber,
    *,
    give_up_after: int = 5,
    startup_timeout: float = 5.0,
    answered: Callable[[], float] = lambda: 0.0,
) -> EngineProcess:
    return EngineProcess(
        Replica("svc", 0),
        launch,
        startup_timeout=startup_timeout,
        check_interval=0.01,
        backoff=Backoff(first=0.01, cap=0.02, give_up_after=give_up_after),
        answered=answered,
        launcher=launcher,
        prober=prober,
    )


async def running(process: EngineProcess) -> asyncio.Task[None]:
    task = asyncio.create_task(process.run())
    await asyncio.sleep(0)
    return task


async def stopped(process: EngineProcess, task: asyncio.Task[None]) -> None:
    await process.stop()
    await asyncio.wait_for(task, 5)
    assert process.replica.state is S.STOPPED


async def test_start_ready_stop() -> None:
    launcher, prober = FakeLauncher(), FakeProber()
    process = engine(launcher, prober)
    task = await running(process)
    await asyncio.wait_for(process.wait_ready(), 5)
    replica = process.replica
    assert replica.state is S.READY and replica.routable and process.pid == launcher.last.pid
    # A fresh secret per start, in the engine's environment and in what the gateway sends.
    secret = launcher.last.env["LLAMA_API_KEY"]
    assert replica.headers == {"authorization": f"Bearer {secret}"}
    assert launcher.last.argv == ("llama-server", "--port", str(replica.port))
    assert prober.urls[0] == f"http://127.0.0.1:{replica.port}/health"
    await stopped(process, task)
    assert launcher.last.terminated and prober.closed and replica.restarts == 0


async def test_an_exit_backs_off_and_starts_again_with_the_reason_in_words() -> None:
    launcher, prober = FakeLauncher(), FakeProber()
    process = engine(launcher, prober)
    task = await running(process)
    await asyncio.wait_for(process.wait_ready(), 5)
    first_secret = launcher.last.env["LLAMA_API_KEY"]
    launcher.last.say("ggml: illegal instruction")
    await asyncio.sleep(0.02)
    launcher.last.exit(-4)
    await until(lambda: len(launcher.started) == 2 and process.replica.state is S.READY)
    assert process.replica.restarts == 1
    assert launcher.last.env["LLAMA_API_KEY"] != first_secret  # a new start, a new secret
    assert process.replica.failure == ""  # ready again: the failure is over
    await stopped(process, task)


async def test_failed_probes_make_it_unhealthy_and_good_ones_ready_again() -> None:
    launcher, prober = FakeLauncher(), FakeProber()
    process = engine(launcher, prober)
    task = await running(process)
    await asyncio.wait_for(process.wait_ready(), 5)
    prober.healthy_now = False
    await until(lambda: process.replica.state is S.UNHEALTHY)
    assert not process.replica.routable and len(launcher.started) == 1  # not restarted for it
    prober.healthy_now = True
    await until(lambda: process.replica.state is S.READY)
    await stopped(process, task)


async def test_a_replica_that_answers_requests_stays_ready_whatever_its_probes_say() -> None:
    launcher, prober = FakeLauncher(), FakeProber()
    loop = asyncio.get_running_loop()
    process = engine(launcher, prober, answered=lambda: loop.time() + 1e9)  # always just answered
    task = await running(process)
    await asyncio.wait_for(process.wait_ready(), 5)
    prober.healthy_now = False
    probes = len(prober.urls)
    await until(lambda: len(prober.urls) >= probes + 10)
    assert process.replica.state is S.READY
    await stopped(process, task)


async def test_a_missed_startup_deadline_is_a_failed_start() -> None:
    launcher, prober = FakeLauncher(), FakeProber(healthy=False)
    process = engine(launcher, prober, startup_timeout=0.05, give_up_after=2)
    task = await running(process)
    await asyncio.wait_for(process.wait_settled(), 5)
    assert process.replica.state is S.FAILED and len(launcher.started) == 2
    assert all(r.terminated for r in launcher.started)  # each start that missed it was stopped
    assert process.replica.failure == "not healthy within its 0 s startup deadline"
    await stopped(process, task)


async def test_a_binary_that_cannot_start_gives_up_and_is_retried_on_request() -> None:
    launcher, prober = FakeLauncher(), FakeProber()
    launcher.refuse = FileNotFoundError(2, "No such file or directory")
    process = engine(launcher, prober, give_up_after=3)
    task = await running(process)
    await asyncio.wait_for(process.wait_settled(), 5)
    replica = process.replica
    assert replica.failed and replica.restarts == 2 and launcher.started == []
    assert replica.failure == "could not be started: llama-server: No such file or directory"
    launcher.refuse = None
    process.retry()
    await asyncio.wait_for(process.wait_ready(), 5)
    assert replica.state is S.READY and replica.failure == ""
    await stopped(process, task)


async def test_a_crash_loop_gives_up_and_says_why() -> None:
    launcher, prober = FakeLauncher(), FakeProber()
    launcher.on_start = lambda running: running.exit(-9)  # dies at once, every time
    process = engine(launcher, prober, give_up_after=4)
    task = await running(process)
    await asyncio.wait_for(process.wait_settled(), 5)
    assert process.replica.failed and len(launcher.started) == 4
    assert process.replica.failure.startswith("SIGKILL: killed, often by the kernel's out-of-memory killer")
    await asyncio.sleep(0.1)
    assert len(launcher.started) == 4  # no more starts once FAILED
    await stopped(process, task)


async def test_stop_while_starting_ends_without_backoff() -> None:
    launcher, prober = FakeLauncher(), FakeProber(healthy=False)
    process = engine(launcher, prober, startup_timeout=60)
    task = await running(process)
    await until(lambda: process.replica.state is S.STARTING and bool(launcher.started))
    await stopped(process, task)
    assert launcher.last.terminated and process.replica.restarts == 0


async def test_stop_before_run_and_retry_of_a_healthy_replica_change_nothing() -> None:
    process = engine(FakeLauncher(), FakeProber())
    process.retry()  # not FAILED: nothing to retry
    await process.stop()
    assert process.replica.state is S.STOPPED  # never started: nothing to stop
    await asyncio.wait_for(process.run(), 5)  # returns at once: it was told to stop
    assert process.replica.state is S.STOPPED


async def test_output_is_kept_per_start() -> None:
    launcher, prober = FakeLauncher(), FakeProber()
    process = engine(launcher, prober)
    task = await running(process)
    await asyncio.wait_for(process.wait_ready(), 5)
    launcher.last.say("first start")
    await until(lambda: "first start" in process.last_output)
    launcher.last.exit(1)
    await until(lambda: len(launcher.started) == 2 and process.replica.state is S.READY)
    launcher.last.say("second start")
    await until(lambda: "second start" in process.last_output)
    assert "first start" not in process.last_output
    await stopped(process, task)


def test_every_state_can_be_stopped_and_only_stopping_reaches_stopped() -> None:
    for state, allowed in TRANSITIONS.items():
        assert state is S.STOPPING or S.STOPPING in allowed, state
        assert (S.STOPPED in allowed) == (state is S.STOPPING), state
    assert set(TRANSITIONS) == set(S)
