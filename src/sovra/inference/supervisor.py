"""The supervisor: owns every engine process of the catalog; starts, loads on demand, unloads when
idle, stops.

A service with `minReplicas` ≥ 1 starts with `sovra up` and stays. One with `minReplicas: 0` starts
unloaded: its first request loads it (`wait_for_replica`, which the gateway awaits while it holds
the request), and after `idle_unload_seconds` with nothing in flight it is unloaded again — READY →
STOPPING → STOPPED in the replica's own state machine, so the next request loads it afresh. What a
service has in flight and when it was last asked for comes from the gateway's balancer
(`activity`), which owns that state; the supervisor only reads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sovra.autoscale import Stabiliser, proposal
from sovra.errors import EngineError
from sovra.inference.autoscaler import Autoscaling, MetricsReader, engine_load
from sovra.inference.drivers import Launch
from sovra.inference.launcher import HttpProber, Launcher, Prober
from sovra.inference.memory import gib, resident_bytes
from sovra.inference.process import Backoff, EngineProcess, Replica, ReplicaState

__all__ = ["Activity", "ServicePlan", "Supervisor"]

log = logging.getLogger("sovra.supervisor")


@dataclass(frozen=True)
class ServicePlan:
    """How to run one service: its name, how many replicas, and the command for a given port."""

    name: str
    replicas: int  # started with `sovra up` and kept (minReplicas); 0: loaded on demand
    launch: Callable[[int], Launch]
    engine: str = "llama.cpp"
    images: bool = False  # the engine takes image parts (llama-server only with --mmproj)
    context_window: int | None = None  # tokens per sequence
    idle_unload_seconds: float | None = None  # with replicas 0: unloaded after this long unused
    autoscaling: Autoscaling | None = None  # scaled between min and max on the engines' load
    memory: int | None = None  # bytes one replica is predicted to take (inference/memory.py)

    @property
    def slots(self) -> int:
        """Replicas it can have: its maxReplicas when it scales, else those kept or the one a
        request loads."""
        most = self.autoscaling.scaling.max_replicas if self.autoscaling else 1
        return max(self.replicas, most, 1)


@dataclass(frozen=True)
class Activity:
    """What the gateway has of a service: requests in flight, and when one was last sent (monotonic)."""

    in_flight: int = 0
    last_request: float = 0.0


class Supervisor:
    def __init__(
        self,
        plans: Sequence[ServicePlan],
        *,
        startup_timeout: float = 180.0,
        backoff: Callable[[], Backoff] = Backoff,
        answered: Callable[[Replica], float] = lambda replica: 0.0,
        activity: Callable[[str], Activity] = lambda service: Activity(),
        busy: Callable[[Replica], int] = lambda replica: 0,
        metrics: MetricsReader | None = None,
        memory_budget: int | None = None,
        launcher: Callable[[], Launcher | None] = lambda: None,
        prober: Callable[[], Prober | None] = lambda: None,
        idle_check_seconds: float = 1.0,
    ) -> None:
        """`answered` tells when the gateway last had a good answer from a replica, `activity`
        what it has of a service, `busy` what a replica has in flight (its balancer knows; the
        supervisor does not import the gateway); `metrics` reads the engines' load for scaling;
        `memory_budget` bounds what the replicas are predicted to take together."""
        self._startup_timeout = startup_timeout
        self._backoff = backoff
        self._answered = answered
        self._activity = activity
        self._busy = busy
        self._metrics = metrics or HttpProber()
        self.memory_budget = memory_budget
        self.last_scaling: dict[str, str] = {}  # the last scaling decision per service, in words
        self._launcher = launcher
        self._prober = prober
        self._idle_check = idle_check_seconds
        self._plans = {plan.name: plan for plan in plans}
        self.replicas: dict[str, list[Replica]] = {
            plan.name: [Replica(plan.name, i) for i in range(plan.slots)] for plan in plans
        }
        self._running: dict[tuple[str, int], tuple[EngineProcess, asyncio.Task[None]]] = {}
        self._loading: dict[str, asyncio.Lock] = {plan.name: asyncio.Lock() for plan in plans}
        self._loaded_at: dict[str, float] = {}
        self._watchers: dict[str, list[asyncio.Task[None]]] = {}  # idle unload, scaling: per service
        self.loads: dict[str, int] = {plan.name: 0 for plan in plans}  # loads on demand, per service

    @property
    def plans(self) -> tuple[ServicePlan, ...]:
        """The services it runs, in the order they were declared."""
        return tuple(self._plans.values())

    @property
    def processes(self) -> list[EngineProcess]:
        """The engine processes running now."""
        return [process for process, _ in self._running.values()]

    async def start(self) -> None:
        """Start the replicas kept from the beginning; watch the on-demand ones for idleness."""
        for plan in self.plans:
            self._start_kept(plan)
            self._watch(plan)

    def _start_kept(self, plan: ServicePlan) -> None:
        """Launch the replicas `plan` keeps (minReplicas), as far as the memory budget allows."""
        for replica in self.replicas[plan.name][: plan.replicas]:
            if (problem := self._room_for(plan)) is not None:
                replica.failure = problem
                log.error("not started: it does not fit", extra={"service": plan.name, "reason": problem})
                return
            self._launch(plan, replica)

    def _launch(self, plan: ServicePlan, replica: Replica) -> EngineProcess:
        process = EngineProcess(
            replica,
            plan.launch,
            startup_timeout=self._startup_timeout,
            backoff=self._backoff(),
            answered=functools.partial(self._answered, replica),
            launcher=self._launcher(),
            prober=self._prober(),
        )
        self._running[(plan.name, replica.index)] = (process, asyncio.create_task(process.run()))
        return process

    async def wait_ready(self) -> list[str]:
        """Wait until every started replica is ready or has given up, or the startup deadline
        passes; name the replicas not ready."""
        waits = [asyncio.create_task(p.wait_settled()) for p in self.processes]
        if waits:
            await asyncio.wait(waits, timeout=self._startup_timeout)
        for wait in waits:
            wait.cancel()
        return [f"{p.replica.service}#{p.replica.index}" for p in self.processes if not p.replica.routable]

    # The gateway's view (access.served.Capacity): can a held request expect a replica, and when.

    def can_load(self, service: str) -> bool:
        """Whether a request for `service` that finds no ready replica may wait for one: it is
        unloaded, loading or restarting — not given up after repeated failed starts."""
        replicas = self.replicas.get(service, [])
        return bool(replicas) and not all(r.failed for r in replicas)

    async def wait_for_replica(self, service: str) -> None:
        """Load `service` if it is unloaded; return once one of its replicas takes requests, or every
        running one has given up. (Polled: a replica that is draining or restarting for a reload
        becomes routable without an event of its own.)"""
        while service in self._plans:
            async with self._loading[service]:
                if not self._running_replicas(service):
                    await self._load(self._plans[service])
            running = [p.replica for p in self.processes if p.replica.service == service]
            if any(r.routable for r in self.replicas[service]) or (
                running and all(r.failed for r in running)
            ):
                return
            await asyncio.sleep(0.05)

    async def _load(self, plan: ServicePlan) -> None:
        await self._make_room(plan)
        log.info("loading on demand", extra={"service": plan.name})
        self.loads[plan.name] += 1
        self._loaded_at[plan.name] = time.monotonic()
        self._launch(plan, self.replicas[plan.name][0])

    # A catalog reload (runtime/reload.py): services added, replaced replica by replica, removed.

    async def add(self, plan: ServicePlan) -> list[Replica]:
        """Run a service declared since the start: its kept replicas, its watchers."""
        self._plans[plan.name] = plan
        self.replicas[plan.name] = [Replica(plan.name, i) for i in range(plan.slots)]
        self._loading[plan.name] = asyncio.Lock()
        self.loads[plan.name] = 0
        self._start_kept(plan)
        self._watch(plan)
        return self.replicas[plan.name]

    async def replace(self, plan: ServicePlan, drain_seconds: float = 600.0) -> None:
        """Run a changed declaration: each running replica in turn stops taking requests, finishes
        those it has (up to `drain_seconds`), and starts again from the new plan; requests meanwhile
        go to the others, or wait for it as for any load."""
        old = self._plans[plan.name]
        if plan.slots != old.slots:
            raise EngineError(f"{plan.name}: a change of maxReplicas applies when `sovra up` restarts")
        self._plans[plan.name] = plan
        for replica in self._running_replicas(plan.name):
            await self._drain(replica, drain_seconds)
            async with self._loading[plan.name]:
                await self._stop((plan.name, replica.index))
                replica.draining = False
                process = self._launch(plan, replica)
            await process.wait_settled()
            log.info("replica replaced", extra={"service": plan.name, "replica": replica.index})
        self._cancel_watchers(plan.name)
        self._watch(plan)

    async def remove(self, service: str, drain_seconds: float = 600.0) -> None:
        """Stop a service no longer declared, once its replicas have finished what they have."""
        self._cancel_watchers(service)
        for replica in self._running_replicas(service):
            await self._drain(replica, drain_seconds)
            await self._stop((service, replica.index))
        for table in (self._plans, self.replicas, self._loading, self.loads, self.last_scaling):
            table.pop(service, None)

    async def _drain(self, replica: Replica, within: float) -> None:
        """No new requests to `replica`; wait (polling the balancer's count) for those it has."""
        replica.draining = True
        for _ in range(int(within / 0.05)):
            if not self._busy(replica):
                return
            await asyncio.sleep(0.05)

    def _watch(self, plan: ServicePlan) -> None:
        watchers = self._watchers.setdefault(plan.name, [])
        if plan.replicas == 0 and plan.idle_unload_seconds is not None:
            watchers.append(asyncio.create_task(self._unload_when_idle(plan)))
        if plan.autoscaling is not None and plan.autoscaling.scaling.max_replicas > 1:
            watchers.append(asyncio.create_task(self._autoscale(plan, plan.autoscaling)))

    def _cancel_watchers(self, service: str) -> None:
        for watcher in self._watchers.pop(service, []):
            watcher.cancel()

    def _held_memory(self) -> int:
        return sum(self._plans[service].memory or 0 for service, _ in self._running)

    def _room_for(self, plan: ServicePlan) -> str | None:
        """None if one more replica of `plan` fits the budget now; else why not, in words."""
        if self.memory_budget is None or plan.memory is None:
            return None
        held = self._held_memory()
        if held + plan.memory <= self.memory_budget:
            return None
        return (f"{plan.name} is predicted to take {gib(plan.memory)}; {gib(held)} of the memory budget "
                f"of {gib(self.memory_budget)} (engines.memoryBudgetBytes) is taken")  # fmt: skip

    async def _make_room(self, plan: ServicePlan) -> None:
        """Unload idle replicas of other services, least recently used first, until one more of
        `plan` fits; never one with requests in flight, never below a service's minReplicas."""
        if self._room_for(plan) is None:
            return
        assert self.memory_budget is not None and plan.memory is not None
        if plan.memory > self.memory_budget:
            raise EngineError(f"{self._room_for(plan)}: it can never fit")
        for _, service, index in sorted(self._evictable(plan.name)):
            log.info("unloading to make room", extra={"service": service, "replica": index, "for": plan.name})
            await self._stop((service, index))
            if self._room_for(plan) is None:
                return
        raise EngineError(f"{self._room_for(plan)} by replicas in use or kept by their minReplicas")

    def _evictable(self, wanted: str) -> list[tuple[float, str, int]]:
        """(last request, service, replica) of every replica that may be unloaded for `wanted`."""
        running: dict[str, int] = {}
        for service, _ in self._running:
            running[service] = running.get(service, 0) + 1
        return [
            (self._activity(service).last_request, service, index)
            for service, index in self._running
            if service != wanted
            and self._busy(self.replicas[service][index]) == 0
            and running[service] > self._plans[service].replicas
        ]

    async def _stop(self, key: tuple[str, int]) -> None:
        process, task = self._running.pop(key)
        await process.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def unload(self, service: str) -> int:
        """Stop every replica of `service`; how many were running."""
        async with self._loading[service]:
            stopping = self._running_replicas(service)
            for replica in stopping:
                await self._stop((service, replica.index))
        return len(stopping)

    def idle_for(self, service: str, now: float) -> float | None:
        """Seconds `service` has been loaded and unused, or None while it is in use or unloaded."""
        if not self._running_replicas(service):
            return None
        activity = self._activity(service)
        if activity.in_flight:
            return None
        return now - max(activity.last_request, self._loaded_at.get(service, 0.0))

    async def _unload_when_idle(self, plan: ServicePlan) -> None:
        assert plan.idle_unload_seconds is not None
        while True:
            await asyncio.sleep(self._idle_check)
            idle = self.idle_for(plan.name, time.monotonic())
            ready = any(r.state is ReplicaState.READY for r in self.replicas[plan.name])
            if idle is not None and ready and idle >= plan.idle_unload_seconds:
                log.info("unloading: idle", extra={"service": plan.name, "idle_s": round(idle, 1)})
                await self.unload(plan.name)

    def _running_replicas(self, service: str) -> list[Replica]:
        return [r for r in self.replicas[service] if (service, r.index) in self._running]

    def state(self, service: str) -> str | None:
        """`unloaded`, `loading`, `ready` or `failed`; None for a service not run here."""
        if service not in self._plans:
            return None
        running = self._running_replicas(service)
        if any(r.routable for r in self.replicas[service]):
            return "ready"
        if running and all(r.failed for r in running):
            return "failed"
        return "loading" if running else "unloaded"

    def describe(self, service: str) -> dict[str, object]:
        """The service as `sovra status` shows it: its state, replicas, loads, and idle time (nothing
        for a service not run here)."""
        state = self.state(service)
        if state is None:
            return {}
        plan, running = self._plans[service], self._running_replicas(service)
        idle = self.idle_for(service, time.monotonic())
        described: dict[str, object] = {
            "state": state,
            "replicas": [{"index": r.index, "state": r.state.value, "port": r.port or None,
                          "restarts": r.restarts, "failure": r.failure or None} for r in running],
            "min_replicas": plan.replicas,
            "max_replicas": plan.slots,
            "loads_on_demand": self.loads[service],
        }  # fmt: skip
        if service in self.last_scaling:
            described["last_scaling"] = self.last_scaling[service]
        if plan.memory is not None:
            pids = [p.pid for p in self.processes if p.replica.service == service and p.pid]
            measured = [resident_bytes(pid) for pid in pids]
            described["memory"] = {
                "predicted_bytes": plan.memory * len(running),
                "each_bytes": plan.memory,
                "measured_bytes": sum(m or 0 for m in measured),
                "budget_bytes": self.memory_budget,
            }
        if idle is not None:
            described["idle_seconds"] = round(idle, 1)
            if plan.replicas == 0 and plan.idle_unload_seconds is not None:
                described["unloads_in_seconds"] = round(max(0.0, plan.idle_unload_seconds - idle), 1)
        return described

    async def _autoscale(self, plan: ServicePlan, autoscaling: Autoscaling) -> None:
        """Every polling interval: the engines' load → the triggers' arithmetic → add a replica at
        once, or stop one (idle, the highest) once the cooldown has passed below the thresholds."""
        stabiliser = Stabiliser(autoscaling.scaling)
        while True:
            await asyncio.sleep(autoscaling.polling_seconds)
            running = self._running_replicas(plan.name)
            ready = [r for r in running if r.routable]
            if not ready:
                continue  # unloaded, or still loading: on-demand loading has it
            texts = [await self._metrics.read(f"{r.base_url}/metrics", r.headers, 5.0) for r in ready]
            if any(text is None for text in texts):
                continue  # an engine too busy to answer is no sample to decide on
            load = engine_load([t for t in texts if t is not None], autoscaling)
            current = len(running)
            wanted = proposal(autoscaling.scaling, current, load, autoscaling.kv_cache)
            desired = stabiliser.decide(time.monotonic(), current, wanted)
            if desired != current:
                why = f"{load.running_ratio:.2f} running per slot, {load.waiting:g} waiting"
                self.last_scaling[plan.name] = f"{current} → {desired}: {why}"
                log.info("scaling", extra={"service": plan.name, "replicas": current, "to": desired})
            await self._scale(plan, running, desired)

    async def _scale(self, plan: ServicePlan, running: list[Replica], desired: int) -> None:
        if desired > len(running):
            free = [r for r in self.replicas[plan.name] if (plan.name, r.index) not in self._running]
            for replica in free[: desired - len(running)]:
                if self._room_for(plan) is not None:  # scaling out evicts nothing: it waits for room
                    self.last_scaling[plan.name] += " (no room in the memory budget)"
                    break
                self._launch(plan, replica)
        elif desired < len(running):
            idle = [r for r in running[1:] if self._busy(r) == 0]  # replica 0 is unloaded when idle
            if idle:  # one per interval, never one with requests in flight
                await self._stop((plan.name, idle[-1].index))

    def retry_failed(self) -> int:
        """Start again every replica that gave up; how many there were."""
        failed = [p for p in self.processes if p.replica.failed]
        for process in failed:
            process.retry()
        log.info("failed engines retried", extra={"count": len(failed)})
        return len(failed)

    async def stop(self) -> None:
        for service in list(self._watchers):
            self._cancel_watchers(service)
        await asyncio.gather(*(p.stop() for p in self.processes), return_exceptions=True)
        for _, task in self._running.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._metrics.aclose()
        log.info("all engines stopped", extra={"count": len(self._running)})
