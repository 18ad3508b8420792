"""One engine replica as a state machine: start, health-check, restart with back-off, give up, stop.

    STOPPED ──run──▶ STARTING ──healthy──▶ READY ◀──probes──▶ UNHEALTHY
                      │  ▲  exit / deadline  │ exit                │ exit
                      │  │                   ▼                     │
                      │  └──── delay ──── BACKOFF (1, 2, 4 … 30 s) ◀┘
                      │                      │ `give_up_after` failed starts in a row
                      └──────────────────────┴──▶ FAILED ──retry()──▶ STARTING
    any state ──stop()──▶ STOPPING ──the engine has ended──▶ STOPPED

Every change of state goes through `_enter`, which refuses a transition not drawn here. A start has
failed when the engine exits, or misses its health deadline, before it has run for
`Backoff.stable_after` (60 s); a stable run forgives the failures before it. After
`Backoff.give_up_after` failed starts in a row the replica stops retrying and says why
(`Replica.failure`, in words: `exits.py`) until `retry()` — a crash loop is diagnosed, not repeated.

Processes and probes go through `Launcher` and `Prober` (`launcher.py`): the real ones start
`llama-server` or vLLM and GET its health path; tests drive every transition with fakes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from sovra.inference.drivers import Launch
from sovra.inference.exits import describe_exit
from sovra.inference.launcher import HttpProber, Launcher, Prober, Running, SubprocessLauncher, free_port

__all__ = ["Backoff", "EngineProcess", "Replica", "ReplicaState"]

log = logging.getLogger("sovra.supervisor")
engine_log = logging.getLogger("sovra.engine")
STARTUP_PROBE_TIMEOUT = 2.0  # for /health while starting: it answers at once or not at all
PROBE_TIMEOUT = 5.0  # for /health once ready (llama-server answers it late when busy)
UNHEALTHY_AFTER = 3  # failed probes in a row, with no good answer meanwhile
STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL


class ReplicaState(StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    UNHEALTHY = "unhealthy"
    BACKOFF = "backoff"
    FAILED = "failed"  # gave up after repeated failed starts; see Replica.failure
    STOPPING = "stopping"


_S = ReplicaState
_ENDED = {_S.BACKOFF, _S.FAILED, _S.STOPPING}  # where a start that ended can go
TRANSITIONS: dict[ReplicaState, frozenset[ReplicaState]] = {
    _S.STOPPED: frozenset({_S.STARTING, _S.STOPPING}),
    _S.STARTING: frozenset({_S.READY, *_ENDED}),
    _S.READY: frozenset({_S.UNHEALTHY, *_ENDED}),
    _S.UNHEALTHY: frozenset({_S.READY, *_ENDED}),
    _S.BACKOFF: frozenset({_S.STARTING, _S.STOPPING}),
    _S.FAILED: frozenset({_S.STARTING, _S.STOPPING}),
    _S.STOPPING: frozenset({_S.STOPPED}),
}


@dataclass
class Replica:
    """One local engine replica as the supervisor keeps it: where it listens, its state, why it
    failed. The gateway only reads it (as an `access.balancer.Endpoint`)."""

    service: str
    index: int
    port: int = 0
    state: ReplicaState = ReplicaState.STOPPED
    restarts: int = 0
    failure: str = ""  # why the last start failed, in words; kept while FAILED
    # What the gateway sends to reach it: the engine's per-start secret, or nothing.
    headers: dict[str, str] = field(default_factory=dict)
    draining: bool = False  # ready, but taking no new requests: about to be replaced or removed

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def failed(self) -> bool:
        return self.state is ReplicaState.FAILED

    @property
    def routable(self) -> bool:
        return self.state is ReplicaState.READY and not self.draining


@dataclass
class Backoff:
    """Doubling delays, capped; reset once a run has been stable for a while; None (give up) after
    `give_up_after` failed starts in a row (0: never)."""

    first: float = 1.0
    cap: float = 30.0
    stable_after: float = 60.0
    give_up_after: int = 5
    _next: float = field(default=0.0, init=False)
    _failures: int = field(default=0, init=False)

    def delay(self, ran_for: float) -> float | None:
        if ran_for >= self.stable_after:
            self.reset()
        if self._next == 0.0:
            self._next = self.first
        self._failures += 1
        if self.give_up_after and self._failures >= self.give_up_after:
            return None
        current = self._next
        self._next = min(self._next * 2, self.cap)
        return current

    def reset(self) -> None:
        self._next, self._failures = 0.0, 0


class EngineProcess:
    """Runs one replica until `stop()`; `replica.state` tells the gateway whether to use it."""

    def __init__(
        self,
        replica: Replica,
        launch: Callable[[int], Launch],
        *,
        startup_timeout: float = 180.0,
        check_interval: float = 5.0,
        backoff: Backoff | None = None,
        answered: Callable[[], float] = lambda: 0.0,
        launcher: Launcher | None = None,
        prober: Prober | None = None,
    ) -> None:
        """`answered` tells when the gateway last had a good answer from this replica (monotonic)."""
        self.replica = replica
        self._launch = launch
        self._startup_timeout = startup_timeout
        self._check_interval = check_interval
        self._backoff = backoff or Backoff()
        self._answered = answered
        self._launcher = launcher or SubprocessLauncher()
        self._prober = prober or HttpProber()
        self._running: Running | None = None
        self._stopping = asyncio.Event()
        self._ready = asyncio.Event()
        self._settled = asyncio.Event()  # READY, or FAILED: nothing more to wait for
        self._retry = asyncio.Event()
        self._recent: collections.deque[str] = collections.deque(maxlen=40)  # of the last start only
        self._fields = {"service": replica.service, "replica": replica.index}

    @property
    def pid(self) -> int | None:
        return self._running.pid if self._running else None

    @property
    def last_output(self) -> str:
        """The engine's last output lines, from its most recent start."""
        return " | ".join(self._recent)

    async def wait_ready(self) -> None:
        await self._ready.wait()

    async def wait_settled(self) -> None:
        """Until the replica is ready, or has given up."""
        await self._settled.wait()

    def retry(self) -> None:
        """Start a FAILED replica again, with a fresh count of failures."""
        if self.replica.failed:
            self._retry.set()

    def _enter(self, new: ReplicaState) -> None:
        """The one place a replica's state changes."""
        old = self.replica.state
        if new is old:
            return
        if new not in TRANSITIONS[old]:
            raise RuntimeError(f"{self.replica.service}#{self.replica.index}: no transition {old} → {new}")
        self.replica.state = new
        if new in (_S.READY, _S.FAILED):
            self._settled.set()
        if new is _S.READY:
            self._ready.set()
        elif new is _S.STARTING:
            self._settled.clear()

    async def run(self) -> None:
        try:
            while not self._stopping.is_set():
                started = time.monotonic()
                reason = await self._run_once()
                if self._stopping.is_set():
                    break
                self.replica.failure = reason
                delay = self._backoff.delay(time.monotonic() - started)
                if delay is None:
                    await self._give_up(reason)
                    continue
                self._enter(_S.BACKOFF)
                self.replica.restarts += 1
                log.warning("engine stopped unexpectedly; restarting", extra={**self._fields, "in_s": delay})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
        finally:
            await self._prober.aclose()
        self._enter(_S.STOPPING)
        self._enter(_S.STOPPED)

    async def _give_up(self, reason: str) -> None:
        """FAILED until retry() or stop(): the same crash again and again helps nobody."""
        self._enter(_S.FAILED)
        log.error(
            "engine keeps failing to start; not restarting it (send SIGHUP to `sovra up` to retry)",
            extra={**self._fields, "failed_starts": self._backoff.give_up_after, "reason": reason},
        )
        retry = asyncio.create_task(self._retry.wait())
        stopping = asyncio.create_task(self._stopping.wait())
        await asyncio.wait({retry, stopping}, return_when=asyncio.FIRST_COMPLETED)
        retry.cancel()
        stopping.cancel()
        if self._retry.is_set() and not self._stopping.is_set():
            self._retry.clear()
            self._backoff.reset()
            self.replica.failure = ""
            log.info("engine retried", extra=self._fields)

    async def _run_once(self) -> str:
        """One start of the engine, until it ends; returns why it ended, in words."""
        self.replica.port = free_port()
        launch = self._launch(self.replica.port)
        self._enter(_S.STARTING)
        self._recent.clear()
        secret = secrets.token_urlsafe(24)
        self.replica.headers = {"authorization": f"Bearer {secret}"}
        try:
            running = self._running = await self._launcher.start(launch.argv, {launch.key_env: secret})
        except OSError as exc:
            reason = f"could not be started: {launch.argv[0]}: {exc.strerror or exc}"
            log.error("engine could not be started", extra={**self._fields, "reason": reason})
            return reason
        log.info("engine starting", extra={**self._fields, "pid": running.pid, "port": self.replica.port})
        forward = asyncio.create_task(self._forward_output(running))
        reason = ""
        try:
            if await self._wait_healthy(running, launch.health_path) and not self._stopping.is_set():
                self._enter(_S.READY)
                self.replica.failure = ""
                log.info("engine ready", extra={**self._fields, "port": self.replica.port})
                await self._watch(running, launch.health_path)
            elif running.returncode is None and not self._stopping.is_set():
                reason = f"not healthy within its {self._startup_timeout:.0f} s startup deadline"
        finally:
            await running.terminate(STOP_GRACE)
            await forward
        if self._stopping.is_set():
            return ""
        reason = reason or describe_exit(running.returncode)
        log.error(
            "engine exited",
            extra={
                **self._fields,
                "code": running.returncode,
                "reason": reason,
                "last_output": self.last_output,
            },
        )
        return reason

    async def _wait_healthy(self, running: Running, path: str) -> bool:
        deadline = time.monotonic() + self._startup_timeout
        url = f"{self.replica.base_url}{path}"
        while time.monotonic() < deadline and not self._stopping.is_set():
            if running.returncode is not None:
                return False
            if await self._prober.healthy(url, STARTUP_PROBE_TIMEOUT):
                return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), 0.05)
        if not self._stopping.is_set():
            log.error(
                "engine not healthy before its deadline",
                extra={**self._fields, "timeout_s": self._startup_timeout},
            )
        return False

    async def _watch(self, running: Running, path: str) -> None:
        """Until the process exits or we stop: active health checks move READY ⇄ UNHEALTHY.

        An engine busy with requests answers /health slowly (its HTTP threads compete with its
        compute threads), so a slow or failed probe is not proof of sickness: the replica turns
        UNHEALTHY only after UNHEALTHY_AFTER failed probes in a row (each may take PROBE_TIMEOUT)
        during which it also answered no request (`answered`, from the gateway's balancer)."""
        exited = asyncio.create_task(running.wait())
        stopping = asyncio.create_task(self._stopping.wait())
        url = f"{self.replica.base_url}{path}"
        failed = 0
        try:
            while not exited.done() and not self._stopping.is_set():
                await asyncio.wait({exited, stopping}, timeout=self._check_interval)
                if exited.done() or self._stopping.is_set():
                    break
                probed = time.monotonic()
                failed = 0 if await self._prober.healthy(url, PROBE_TIMEOUT) else failed + 1
                answering = self._answered() >= probed - self._check_interval * UNHEALTHY_AFTER
                healthy = failed < UNHEALTHY_AFTER or answering
                new = _S.READY if healthy else _S.UNHEALTHY
                if new is not self.replica.state and not exited.done() and not self._stopping.is_set():
                    log.warning("engine health changed", extra={**self._fields, "state": new.value})
                    self._enter(new)
        finally:
            stopping.cancel()
            if not exited.done():
                exited.cancel()

    async def _forward_output(self, running: Running) -> None:
        async for line in running.lines():
            if line:
                self._recent.append(line)
                engine_log.info(line, extra=self._fields)

    async def stop(self) -> None:
        self._stopping.set()
        if self.replica.state is not _S.STOPPED:
            self._enter(_S.STOPPING)
        if self._running is not None:
            await self._running.terminate(STOP_GRACE)
