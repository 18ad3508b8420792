"""The supervisor with the real llama-server: restart after kill -9, no orphans, clean stop."""

import asyncio
import functools
import os
import signal
import time
from pathlib import Path

import pytest

from sovra.inference.drivers import Launch, llama_server_argv
from sovra.inference.process import Backoff, EngineProcess, Replica, ReplicaState
from sovra.inference.supervisor import ServicePlan, Supervisor
from sovra.spec import load_catalog
from tests.conftest import CATALOG, start_platform, stop_platform
from tests.inference.fakes import until

pytestmark = [pytest.mark.anyio, pytest.mark.engine]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def smollm2_launch(llama_server: Path, smollm2: Path) -> functools.partial[Launch]:
    (service,) = load_catalog(CATALOG).services
    return functools.partial(llama_server_argv, service, llama_server, smollm2)


async def test_a_killed_engine_is_restarted(llama_server: Path, smollm2: Path) -> None:
    replica = Replica("smollm2", 0)
    engine = EngineProcess(replica, smollm2_launch(llama_server, smollm2), backoff=Backoff(first=0.2))
    task = asyncio.create_task(engine.run())
    try:
        await asyncio.wait_for(engine.wait_ready(), 120)
        first_pid = engine.pid
        assert first_pid is not None and replica.state is ReplicaState.READY
        os.kill(first_pid, signal.SIGKILL)
        await until(lambda: replica.state is not ReplicaState.READY, within=60)
        await until(lambda: replica.state is ReplicaState.READY and engine.pid != first_pid, within=120)
        assert replica.restarts == 1
        assert not alive(first_pid)
    finally:
        await engine.stop()
        await task
    assert replica.state is ReplicaState.STOPPED
    assert engine.pid is not None and not alive(engine.pid)


async def test_an_engine_that_cannot_start_backs_off_and_keeps_retrying(tmp_path: Path) -> None:
    replica = Replica("broken", 0)
    launches: list[int] = []

    def launch(port: int) -> Launch:
        launches.append(port)
        return Launch(("sh", "-c", "echo 'model file is corrupt' >&2; exit 3"))

    engine = EngineProcess(replica, launch, startup_timeout=5, backoff=Backoff(first=0.05, cap=0.1))
    task = asyncio.create_task(engine.run())
    await until(lambda: len(launches) >= 3, within=10)
    await engine.stop()
    await task
    assert replica.restarts >= 2 and replica.state is ReplicaState.STOPPED


async def test_a_missing_engine_binary_is_retried_not_fatal(tmp_path: Path) -> None:
    replica = Replica("missing", 0)
    launches: list[int] = []

    def launch(port: int) -> Launch:
        launches.append(port)
        return Launch((str(tmp_path / "no-such-binary"),))

    engine = EngineProcess(replica, launch, backoff=Backoff(first=0.05, cap=0.1))
    task = asyncio.create_task(engine.run())
    await until(lambda: len(launches) >= 2, within=10)
    await engine.stop()
    await task
    assert replica.restarts >= 1 and replica.state is ReplicaState.STOPPED


async def test_the_supervisor_runs_min_replicas_and_stops_them_all(llama_server: Path, smollm2: Path) -> None:
    supervisor = Supervisor(
        [ServicePlan("smollm2", 2, smollm2_launch(llama_server, smollm2))], startup_timeout=120
    )
    await supervisor.start()
    try:
        assert await supervisor.wait_ready() == []
        replicas = supervisor.replicas["smollm2"]
        assert all(r.routable for r in replicas)
        assert len({r.port for r in replicas}) == 2
        pids = [p.pid for p in supervisor.processes]
    finally:
        await supervisor.stop()
    assert all(pid is not None and not alive(pid) for pid in pids)


def test_no_orphan_engine_when_the_gateway_is_killed(
    llama_server: Path, smollm2: Path, tmp_path: Path
) -> None:
    platform = start_platform(tmp_path)
    try:
        (engine_pid,) = platform.engine_pids()
        assert alive(engine_pid)
        platform.process.send_signal(signal.SIGKILL)
        platform.process.wait(10)
        deadline = time.monotonic() + 10
        while alive(engine_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(engine_pid), "the engine outlived a SIGKILLed gateway"
    finally:
        stop_platform(platform)


def test_ctrl_c_stops_engines_cleanly(llama_server: Path, smollm2: Path, tmp_path: Path) -> None:
    platform = start_platform(tmp_path)
    (engine_pid,) = platform.engine_pids()
    stop_platform(platform)
    assert platform.process.returncode == 0
    assert not alive(engine_pid)
    assert "all engines stopped" in platform.log.read_text()
