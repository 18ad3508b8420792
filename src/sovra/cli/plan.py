"""`sovra plan`: what each declared llama.cpp service is predicted to take, from its GGUF header,
against the memory budget — what `sovra up` keeps loaded, what loads on demand, and whether it fits.
Nothing is started and nothing is downloaded (weights not yet fetched are named)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sovra.config import PlatformConfig
    from sovra.spec import Catalog

__all__ = ["print_plan"]


def print_plan(catalog: Catalog, config: PlatformConfig) -> int:
    from sovra.inference.drivers import HostFacts, choose_engine
    from sovra.inference.memory import gib
    from sovra.runtime.engines import build_store, memory_budget, predicted_memory
    from sovra.spec import EngineKind

    store, budget, host = build_store(config), memory_budget(config), HostFacts.probe()
    print(f"memory budget: {gib(budget)} (engines.memoryBudgetBytes; default 90 % of this machine)")
    print(f"{'SERVICE':<24} {'REPLICAS':<9} {'WEIGHTS':>9} {'KV CACHE':>9} {'COMPUTE':>9} {'EACH':>9}")
    kept = on_demand = 0
    largest = 0
    for service in catalog.services:
        scaling = service.spec.scaling
        counts = f"{scaling.min_replicas}-{scaling.max_replicas}"
        weights = service.spec.model.weights
        if choose_engine(service, host) is not EngineKind.LLAMACPP:  # as `sovra up` chooses
            print(f"{service.name:<24} {counts:<9} {'(vLLM: its GPU memory share, not planned here)':>39}")
            continue
        if not store.is_present(weights):
            print(f"{service.name:<24} {counts:<9} {'(weights not fetched: sovra preload)':>39}")
            continue
        each = predicted_memory(service, store.location(weights))
        print(f"{service.name:<24} {counts:<9} {gib(each.weights):>9} {gib(each.kv_cache):>9} "
              f"{gib(each.compute):>9} {gib(each.total):>9}")  # fmt: skip
        kept += each.total * scaling.min_replicas
        on_demand += each.total * (scaling.max_replicas - scaling.min_replicas)
        largest = max(largest, each.total)
    verdict = "fits" if kept <= budget else "does NOT fit: sovra up cannot start them all"
    print(f"kept loaded (minReplicas): {gib(kept)} — {verdict}")
    if kept + on_demand <= budget:
        print(f"everything at maxReplicas: {gib(kept + on_demand)} — fits, nothing would be unloaded")
    elif kept + largest <= budget:
        print(f"everything at maxReplicas: {gib(kept + on_demand)} — over budget: loads on demand "
              "unload idle replicas (least recently used) to make room")  # fmt: skip
    else:
        print("on demand: the largest replica does not fit beside those kept loaded")
    return 0 if kept <= budget else 1
