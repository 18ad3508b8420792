"""The supervisor: owns every engine process of the catalog, starts them, waits, stops them."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sovra.inference.drivers import Launch
from sovra.inference.process import Backoff, EngineProcess, Replica

__all__ = ["ServicePlan", "Supervisor"]

log = logging.getLogger("sovra.supervisor")


@dataclass(frozen=True)
class ServicePlan:
    """How to run one service: its name, how many replicas, and the command for a given port."""

    name: str
    replicas: int
    launch: Callable[[int], Launch]
    engine: str = "llama.cpp"
    images: bool = False  # the engine takes image parts (llama-server only with --mmproj)
    context_window: int | None = None  # tokens per sequence


class Supervisor:
    def __init__(
        self,
        plans: Sequence[ServicePlan],
        *,
        startup_timeout: float = 180.0,
        backoff: Callable[[], Backoff] = Backoff,
        answered: Callable[[Replica], float] = lambda replica: 0.0,
    ) -> None:
        """`answered` tells when the gateway last had a good answer from a replica (its balancer
        knows; the supervisor does not import the gateway)."""
        self._startup_timeout = startup_timeout
        self.plans = tuple(plans)
        self.processes: list[EngineProcess] = []
        self.replicas: dict[str, list[Replica]] = {}
        for plan in plans:
            replicas = self.replicas[plan.name] = [Replica(plan.name, i) for i in range(plan.replicas)]
            self.processes += [
                EngineProcess(
                    r,
                    plan.launch,
                    startup_timeout=startup_timeout,
                    backoff=backoff(),
                    answered=functools.partial(answered, r),
                )
                for r in replicas
            ]
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(p.run()) for p in self.processes]

    async def wait_ready(self) -> list[str]:
        """Wait until every replica is ready or has given up, or the startup deadline passes; name
        the replicas not ready."""
        waits = [asyncio.create_task(p.wait_settled()) for p in self.processes]
        if waits:
            await asyncio.wait(waits, timeout=self._startup_timeout)
        for wait in waits:
            wait.cancel()
        return [f"{p.replica.service}#{p.replica.index}" for p in self.processes if not p.replica.routable]

    def retry_failed(self) -> int:
        """Start again every replica that gave up; how many there were."""
        failed = [p for p in self.processes if p.replica.failed]
        for process in failed:
            process.retry()
        log.info("failed engines retried", extra={"count": len(failed)})
        return len(failed)

    async def stop(self) -> None:
        await asyncio.gather(*(p.stop() for p in self.processes), return_exceptions=True)
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        log.info("all engines stopped", extra={"count": len(self.processes)})
