"""What `sovra up` reads to scale a service between minReplicas and maxReplicas: the engines' own
load, from their Prometheus endpoints — the same signals KEDA's triggers query on a cluster, turned
into a decision by the same arithmetic (`sovra/autoscale.py`). The loop that acts on it is the
supervisor's (it owns the processes)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from sovra.autoscale import Load
from sovra.spec import Scaling

__all__ = ["Autoscaling", "MetricsReader", "engine_load"]

# What each engine calls requests being decoded, waiting, and its KV-cache use.
_NAMES = {
    "llama.cpp": ("llamacpp:requests_processing", "llamacpp:requests_deferred", None),
    "vllm": ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc"),
}


@dataclass(frozen=True)
class Autoscaling:
    """A service's scaling, as declared (with this machine's overrides of the cooldown and polling)."""

    scaling: Scaling
    slots: int  # maxNumSeqs: sequences one replica decodes together
    engine: str = "llama.cpp"
    polling_seconds: float = 15.0

    @property
    def kv_cache(self) -> bool:
        return _NAMES[self.engine][2] is not None


class MetricsReader(Protocol):
    """What reads an engine's Prometheus text: `launcher.HttpProber`, or a fake in tests."""

    async def read(self, url: str, headers: Mapping[str, str], within: float) -> str | None:
        """The Prometheus text at `url`, or None if it did not answer in time."""
        ...

    async def aclose(self) -> None: ...


def engine_load(texts: Sequence[str], autoscaling: Autoscaling) -> Load:
    """The triggers' values over the replicas' metrics: running per slot (averaged), waiting (in
    total), KV-cache use (averaged, vLLM)."""
    from prometheus_client.parser import text_string_to_metric_families

    running_name, waiting_name, cache_name = _NAMES[autoscaling.engine]
    running = waiting = cache = 0.0
    for text in texts:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == running_name:
                    running += sample.value
                elif sample.name == waiting_name:
                    waiting += sample.value
                elif sample.name == cache_name:
                    cache += sample.value
    replicas = max(len(texts), 1)
    return Load(
        running_ratio=running / (autoscaling.slots * replicas),
        waiting=waiting,
        cache=cache / replicas if cache_name else None,
    )
