"""The engine process's seams: starting a process (`Launcher`) and asking whether it is healthy
(`Prober`), with the real implementations. `process.py` runs its state machine over these; tests
give it fakes.

The real launcher runs each engine in its own process group (so a stop reaches everything it
spawned) and has the kernel kill it when we die (PR_SET_PDEATHSIG), so no engine outlives the
gateway, even on SIGKILL. The fork happens on the event loop's thread, which lives as long as the
process; PDEATHSIG follows the thread that forked.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Protocol

import aiohttp

__all__ = [
    "HttpProber",
    "Launcher",
    "Prober",
    "Running",
    "SubprocessLauncher",
    "die_with_parent",
    "free_port",
]


class Running(Protocol):
    """A started engine."""

    @property
    def pid(self) -> int: ...
    @property
    def returncode(self) -> int | None: ...

    def lines(self) -> AsyncIterator[str]:
        """Its output (stdout and stderr), line by line, until it ends."""
        ...

    async def wait(self) -> int: ...

    async def terminate(self, grace: float) -> None:
        """Ask it to stop, then make it stop after `grace` seconds; nothing if it has ended."""
        ...


class Launcher(Protocol):
    async def start(self, argv: Sequence[str], env: Mapping[str, str]) -> Running:
        """Start `argv` with `env` added to ours; OSError when it cannot be started."""
        ...


class Prober(Protocol):
    async def healthy(self, url: str, within: float) -> bool:
        """Whether `url` answers 200 within `within` seconds."""
        ...

    async def aclose(self) -> None: ...


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


class _Subprocess:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    async def lines(self) -> AsyncIterator[str]:
        assert self._process.stdout is not None
        async for raw in self._process.stdout:
            yield raw.decode(errors="replace").rstrip()

    async def wait(self) -> int:
        return await self._process.wait()

    async def terminate(self, grace: float) -> None:
        """SIGTERM the process group, then SIGKILL it if it lingers."""
        if self._process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(self._process.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
            await self._process.wait()


class SubprocessLauncher:
    async def start(self, argv: Sequence[str], env: Mapping[str, str]) -> Running:
        process = await asyncio.create_subprocess_exec(
            *argv,
            env={**os.environ, **env},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent(os.getpid()),
        )
        return _Subprocess(process)


class HttpProber:
    """GET over one aiohttp session, opened on first use (on the running loop)."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def healthy(self, url: str, within: float) -> bool:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.get(url, timeout=aiohttp.ClientTimeout(total=within)) as response:
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def read(self, url: str, headers: Mapping[str, str], within: float) -> str | None:
        """The body at `url` (an engine's /metrics), or None unless it answered 200 in time."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            timeout = aiohttp.ClientTimeout(total=within)
            async with self._session.get(url, headers=dict(headers), timeout=timeout) as response:
                return await response.text() if response.status == 200 else None
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
