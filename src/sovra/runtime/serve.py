"""`sovra up`: the gateway in front of the supervised engines (or remote ones), until a signal;
engines are always stopped before it returns."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from sovra.access.app import create_app
from sovra.access.balancer import Balancing, ReplicaPool
from sovra.access.connections import uvicorn_options
from sovra.access.journal import journal_directory
from sovra.access.keys import ApiKey
from sovra.access.ledger import tokens_used
from sovra.access.limits import Limits, MemoryLimits, RedisLimits
from sovra.access.providers import provider_pools
from sovra.access.served import FixedEndpoint, ServedModel
from sovra.config import PlatformConfig
from sovra.database import Database
from sovra.errors import EngineError
from sovra.inference.process import Replica
from sovra.inference.supervisor import Activity, ServicePlan, Supervisor
from sovra.routing.gate import RoutingGate
from sovra.routing.policy import load_policy
from sovra.routing.router import Router, default_policy
from sovra.runtime import settings
from sovra.runtime.auth import AuthSetup
from sovra.runtime.engines import memory_budget, model_card, served_model
from sovra.runtime.reload import CatalogReloader
from sovra.spec import Catalog, Routing

__all__ = ["build_gate", "build_limits", "local_models", "remote_models", "run_platform"]

log = logging.getLogger("sovra")


def build_limits(config: PlatformConfig, database: Database) -> Limits:
    """Per-key limits in this process, or in Redis when several gateways must share them; budgets
    start from what the ledger already holds for the current period."""

    async def baseline(key: ApiKey, since: float) -> int:
        return await asyncio.to_thread(tokens_used, database, key.id, since)

    if config.limits.redis_url:
        return RedisLimits(config.limits.redis_url, baseline, when_down=config.limits.when_redis_is_down)
    return MemoryLimits(baseline)


class _Server(uvicorn.Server):
    """uvicorn, minus its signal handling: `run_platform` owns signals so engines stop first."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise EngineError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return sock


def build_gate(config: PlatformConfig, catalog: Catalog) -> RoutingGate:
    """The router over every model served: catalog services with their routing metadata, provider
    aliases without (a policy reaches those by name). Policy errors surface here, before engines start."""
    models: dict[str, Routing | None] = {s.name: s.spec.routing for s in catalog.services}
    models |= {alias: None for provider in config.providers for alias in provider.models}
    chosen = config.router  # not `settings`: that is the module of each part's settings
    policy = load_policy(chosen.policy) if chosen.policy else default_policy(models)
    return RoutingGate(Router(policy, models), frozenset(chosen.virtual_models), frozenset(chosen.guardrails))


def local_models(
    supervisor: Supervisor, balancing: Balancing, catalog: Catalog | None = None
) -> dict[str, ServedModel]:
    """A served model per planned service, balanced over the supervisor's replicas."""
    services = {service.name: service for service in catalog.services} if catalog is not None else {}
    return {
        plan.name: served_model(
            plan, services.get(plan.name), ReplicaPool(plan.name, supervisor.replicas[plan.name], balancing)
        )
        for plan in supervisor.plans
    }


def remote_models(catalog: Catalog | None, url: str | None, balancing: Balancing) -> dict[str, ServedModel]:
    """A served model per service whose engine runs elsewhere: one fixed endpoint at its URL (a
    Kubernetes Service balances among the pods behind it)."""
    if catalog is None or url is None:
        return {}
    served = {}
    for service in catalog.services:
        address = url.format(name=service.name, namespace=service.metadata.namespace)
        # LoRA adapters are model names of their own, served by the same pods.
        for model in (service.name, *(a.name for a in service.spec.lora_adapters)):
            pool = ReplicaPool(model, [FixedEndpoint(address)], balancing)
            served[model] = ServedModel(model, pool, "remote", card=model_card(service, "vllm", True))
    return served


async def run_platform(
    config: PlatformConfig,
    plans: list[ServicePlan],
    auth: AuthSetup,
    gate: RoutingGate | None = None,
    catalog: Catalog | None = None,
    catalog_path: Path | None = None,
) -> int:
    """Serve until SIGINT/SIGTERM; engines are always stopped before this returns. With
    `engines.remoteUrl`, `plans` is empty and the catalog's services are reached remotely. With
    `catalog_path`, the catalog is reloaded when a file changes or on SIGHUP."""
    sock = _bind(config.listen.host, config.listen.port)
    balancing = settings.balancing(config)
    served: dict[str, ServedModel] = {}

    def answered(replica: Replica) -> float:  # the balancer knows when a replica last answered
        return served[replica.service].pool.last_answer(replica.index)

    def activity(service: str) -> Activity:  # and what it has of a service
        pool = served[service].pool
        return Activity(pool.in_flight(), pool.last_leased)

    def busy(replica: Replica) -> int:  # and what a replica has in flight
        return served[replica.service].pool.outstanding(replica.index)

    supervisor = Supervisor(
        plans,
        startup_timeout=config.engines.startup_timeout_seconds,
        answered=answered,
        activity=activity,
        busy=busy,
        memory_budget=memory_budget(config),
    )
    database = Database(config.database_url)
    await asyncio.to_thread(database.migrate)
    served |= local_models(supervisor, balancing, catalog) or remote_models(
        catalog, config.engines.remote_url, balancing
    )
    served |= provider_pools(config.providers, os.environ, set(served), balancing)
    app = create_app(
        served,
        auth.verifier,
        settings.gateway_settings(config),
        config.gateway.upstream_timeout_seconds,
        database=database,
        limits=build_limits(config, database),
        journal_dir=journal_directory(config.home, config.database_url),
        gate=gate,
        capacity=supervisor,
    )
    options = uvicorn_options(settings.connection_limits(config))
    # No proxy headers: nothing reads a client's address, so no header need be trusted to rewrite it.
    server = _Server(
        uvicorn.Config(app, log_config=None, access_log=False, lifespan="on", proxy_headers=False, **options)
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    reloader = None
    if catalog_path is not None and catalog is not None and plans:
        reloader = CatalogReloader(catalog_path, catalog, config, supervisor, served, balancing)
    reloads: set[asyncio.Task[None]] = set()

    def hangup() -> None:  # after a fix, without a restart: failed engines retried, catalog reread
        supervisor.retry_failed()
        if reloader is not None:
            reloads.add(task := asyncio.create_task(reloader.reload()))
            task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, hangup)
    await supervisor.start()
    watching = asyncio.create_task(reloader.watch()) if reloader is not None else None
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        ready = asyncio.create_task(supervisor.wait_ready())
        await asyncio.wait(
            {ready, serving, asyncio.create_task(stop.wait())}, return_when=asyncio.FIRST_COMPLETED
        )
        if ready.done():
            _announce(config, supervisor, auth, ready.result())
        await asyncio.wait({serving, asyncio.create_task(stop.wait())}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        print("sovra: stopping", file=sys.stderr, flush=True)
        server.should_exit = True
        if watching is not None:
            watching.cancel()
        await supervisor.stop()
        await serving
        sock.close()
    return 0


def _announce(config: PlatformConfig, supervisor: Supervisor, auth: AuthSetup, laggards: list[str]) -> None:
    base = f"http://{config.listen.host}:{config.listen.port}/v1"
    lines = [f"sovra: serving {len(supervisor.replicas)} model(s) at {base}"]
    on_demand = {plan.name for plan in supervisor.plans if plan.replicas == 0}
    for name, replicas in supervisor.replicas.items():
        ready = sum(r.routable for r in replicas)
        shown = (
            "unloaded: loads on its first request"
            if name in on_demand
            else f"{ready}/{len(replicas)} replicas ready"
        )
        lines.append(f"  {name:<24} {shown}")
        lines += [f"    #{r.index} FAILED: {r.failure}" for r in replicas if r.failed]
    failed = {f"{p.replica.service}#{p.replica.index}" for p in supervisor.processes if p.replica.failed}
    if waiting := [name for name in laggards if name not in failed]:
        lines.append(f"  not ready yet (still retrying): {', '.join(waiting)}")
    if failed:
        lines.append(f"  after a fix, retry the failed engines with: kill -HUP {os.getpid()}")
    lines.append(f"  {auth.notice}")
    lines.append("  stop with Ctrl-C")
    print("\n".join(lines), flush=True)
