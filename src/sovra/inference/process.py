"""One engine replica as a state machine: start, health-check, restart with back-off, give up, stop.

    STOPPED ──start──▶ STARTING ──/health 200──▶ READY ◀──▶ UNHEALTHY (active checks fail)
       ▲                  │  exit / deadline        │ exit
       │                  ▼                         ▼
       └──stop── BACKOFF (1 s, 2 s, 4 s … 30 s) ◀───┘
                          │ 5 failed starts in a row
                          ▼
                       FAILED ──retry()──▶ STARTING

A start has failed when the engine exits, or misses its health deadline, before it has run for
`Backoff.stable_after` (60 s); a stable run forgives the failures before it. After
`Backoff.give_up_after` failed starts in a row the replica stops retrying and says why
(`Replica.failure`, in words: `exits.py`) until `retry()` — a crash loop is diagnosed, not repeated.

The engine runs in its own process group (so a stop reaches everything it spawned) and is told by
the kernel to die with us (PR_SET_PDEATHSIG), so no engine outlives the gateway, even on SIGKILL.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import logging
import os
import secrets
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

import aiohttp

from sovra.inference.drivers import Launch
from sovra.inference.exits import describe_exit

__all__ = ["Backoff", "EngineProcess", "Replica", "ReplicaState", "die_with_parent", "free_port"]

log = logging.getLogger("sovra.supervisor")
PROBE_TIMEOUT = 5.0  # for /health once ready (llama-server answers it late when busy)
UNHEALTHY_AFTER = 3  # failed probes in a row, with no good answer meanwhile
engine_log = logging.getLogger("sovra.engine")


class ReplicaState(StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    UNHEALTHY = "unhealthy"
    BACKOFF = "backoff"
    FAILED = "failed"  # gave up after repeated failed starts; see Replica.failure


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

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def failed(self) -> bool:
        return self.state is ReplicaState.FAILED

    @property
    def routable(self) -> bool:
        return self.state is ReplicaState.READY


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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def die_with_parent(parent: int, signum: signal.Signals = signal.SIGKILL) -> Callable[[], None]:
    """A preexec_fn: the kernel sends the child `signum` when the parent dies, however it dies."""

    def preexec() -> None:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signum)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


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
    ) -> None:
        """`answered` tells when the gateway last had a good answer from this replica (monotonic)."""
        self.replica = replica
        self._answered = answered
        self._launch = launch
        self._startup_timeout = startup_timeout
        self._check_interval = check_interval
        self._backoff = backoff or Backoff()
        self._process: asyncio.subprocess.Process | None = None
        self._stopping = asyncio.Event()
        self._ready = asyncio.Event()
        self._settled = asyncio.Event()  # READY, or FAILED: nothing more to wait for
        self._retry = asyncio.Event()
        self._recent: collections.deque[str] = collections.deque(maxlen=40)  # of the last start only
        self._fields = {"service": replica.service, "replica": replica.index}

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

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

    async def run(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0)) as http:
            while not self._stopping.is_set():
                started = time.monotonic()
                reason = await self._run_once(http)
                if self._stopping.is_set():
                    break
                self.replica.failure = reason
                delay = self._backoff.delay(time.monotonic() - started)
                if delay is None:
                    await self._give_up(reason)
                    continue
                self.replica.state = ReplicaState.BACKOFF
                self.replica.restarts += 1
                log.warning("engine stopped unexpectedly; restarting", extra={**self._fields, "in_s": delay})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
        self.replica.state = ReplicaState.STOPPED

    async def _give_up(self, reason: str) -> None:
        """FAILED until retry() or stop(): the same crash again and again helps nobody."""
        self.replica.state = ReplicaState.FAILED
        self._settled.set()
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
            self._settled.clear()
            self._backoff.reset()
            self.replica.failure = ""
            log.info("engine retried", extra=self._fields)

    async def _run_once(self, http: aiohttp.ClientSession) -> str:
        """One start of the engine, until it ends; returns why it ended, in words."""
        self.replica.port = free_port()
        launch = self._launch(self.replica.port)
        self.replica.state = ReplicaState.STARTING
        self._recent.clear()
        secret = secrets.token_urlsafe(24)
        self.replica.headers = {"authorization": f"Bearer {secret}"}
        try:
            self._process = await asyncio.create_subprocess_exec(
                *launch.argv,
                env={**os.environ, launch.key_env: secret},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent(os.getpid()),
            )
        except OSError as exc:
            reason = f"could not be started: {launch.argv[0]}: {exc.strerror or exc}"
            log.error("engine could not be started", extra={**self._fields, "reason": reason})
            return reason
        log.info(
            "engine starting", extra={**self._fields, "pid": self._process.pid, "port": self.replica.port}
        )
        forward = asyncio.create_task(self._forward_output(self._process))
        reason = ""
        try:
            if await self._wait_healthy(http, launch.health_path):
                self.replica.state = ReplicaState.READY
                self.replica.failure = ""
                self._ready.set()
                self._settled.set()
                log.info("engine ready", extra={**self._fields, "port": self.replica.port})
                await self._watch(http, launch.health_path)
            elif self._process.returncode is None and not self._stopping.is_set():
                reason = f"not healthy within its {self._startup_timeout:.0f} s startup deadline"
        finally:
            await self._terminate()
            await forward
        if self._stopping.is_set():
            return ""
        reason = reason or describe_exit(self._process.returncode)
        log.error(
            "engine exited",
            extra={**self._fields, "code": self._process.returncode, "reason": reason,
                   "last_output": self.last_output},
        )  # fmt: skip
        return reason

    async def _wait_healthy(self, http: aiohttp.ClientSession, path: str) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline and not self._stopping.is_set():
            if self._process.returncode is not None:
                return False
            if await self._healthy(http, path):
                return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), 0.05)
        if not self._stopping.is_set():
            log.error(
                "engine not healthy before its deadline",
                extra={**self._fields, "timeout_s": self._startup_timeout},
            )
        return False

    async def _watch(self, http: aiohttp.ClientSession, path: str) -> None:
        """Until the process exits or we stop: active health checks move READY ⇄ UNHEALTHY.

        An engine busy with requests answers /health slowly (its HTTP threads compete with its
        compute threads), so a slow or failed probe is not proof of sickness: the replica turns
        UNHEALTHY only after UNHEALTHY_AFTER failed probes in a row (each may take PROBE_TIMEOUT)
        during which it also answered no request (`answered`, from the gateway's balancer)."""
        assert self._process is not None
        exited = asyncio.create_task(self._process.wait())
        stopping = asyncio.create_task(self._stopping.wait())
        failed = 0
        try:
            while not exited.done() and not stopping.done():
                await asyncio.wait({exited, stopping}, timeout=self._check_interval)
                if exited.done() or stopping.done():
                    break
                probed = time.monotonic()
                failed = 0 if await self._healthy(http, path, PROBE_TIMEOUT) else failed + 1
                answering = self._answered() >= probed - self._check_interval * UNHEALTHY_AFTER
                healthy = failed < UNHEALTHY_AFTER or answering
                new = ReplicaState.READY if healthy else ReplicaState.UNHEALTHY
                if new is not self.replica.state:
                    log.warning("engine health changed", extra={**self._fields, "state": new.value})
                    self.replica.state = new
        finally:
            stopping.cancel()

    async def _healthy(self, http: aiohttp.ClientSession, path: str, within: float | None = None) -> bool:
        try:
            limit = aiohttp.ClientTimeout(total=within) if within else None
            async with http.get(f"{self.replica.base_url}{path}", timeout=limit) as response:
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def _forward_output(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        async for raw in process.stdout:
            line = raw.decode(errors="replace").rstrip()
            if line:
                self._recent.append(line)
                engine_log.info(line, extra=self._fields)

    async def stop(self) -> None:
        self._stopping.set()
        await self._terminate()

    async def _terminate(self, grace: float = 10.0) -> None:
        """SIGTERM the engine's process group, then SIGKILL it if it lingers."""
        process = self._process
        if process is None or process.returncode is not None:
            return
        self.replica.state = ReplicaState.STOPPED if self._stopping.is_set() else ReplicaState.BACKOFF
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
