"""Fakes for the engine process's seams (`inference/launcher.py`): processes that exit when told,
probes that answer what they are told."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence


async def until(condition: Callable[[], bool], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


class FakeRunning:
    def __init__(self, pid: int, argv: Sequence[str], env: Mapping[str, str]) -> None:
        self.pid = pid
        self.argv = tuple(argv)
        self.env = dict(env)
        self.returncode: int | None = None
        self.terminated = False
        self._output: asyncio.Queue[str | None] = asyncio.Queue()
        self._ended = asyncio.Event()

    def say(self, line: str) -> None:
        self._output.put_nowait(line)

    def exit(self, code: int) -> None:
        if self.returncode is None:
            self.returncode = code
            self._output.put_nowait(None)
            self._ended.set()

    async def lines(self) -> AsyncIterator[str]:
        while (line := await self._output.get()) is not None:
            yield line

    async def wait(self) -> int:
        await self._ended.wait()
        assert self.returncode is not None
        return self.returncode

    async def terminate(self, grace: float) -> None:
        if self.returncode is None:
            self.terminated = True
            self.exit(-15)


class FakeLauncher:
    """Starts FakeRunning processes; `refuse` makes the next starts fail as a missing binary does."""

    def __init__(self) -> None:
        self.started: list[FakeRunning] = []
        self.refuse: OSError | None = None
        self.on_start: Callable[[FakeRunning], None] = lambda running: None

    async def start(self, argv: Sequence[str], env: Mapping[str, str]) -> FakeRunning:
        if self.refuse is not None:
            raise self.refuse
        running = FakeRunning(1000 + len(self.started), argv, env)
        self.started.append(running)
        self.on_start(running)
        return running

    @property
    def last(self) -> FakeRunning:
        return self.started[-1]


class FakeProber:
    """Answers `healthy` (a value, changed by the test); counts the probes and the URLs asked."""

    def __init__(self, healthy: bool = True) -> None:
        self.healthy_now = healthy
        self.urls: list[str] = []
        self.closed = False

    async def healthy(self, url: str, within: float) -> bool:
        self.urls.append(url)
        return self.healthy_now

    async def aclose(self) -> None:
        self.closed = True
