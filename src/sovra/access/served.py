"""What the gateway serves: a model name, the endpoints that answer it, and the upstream's shape.

Local engines are `inference.process.Replica`s (their state kept by the supervisor); external
providers and engines running elsewhere are `FixedEndpoint`s — an address that is always there, its
health seen only passively (by the balancer, from the answers).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from sovra.access.balancer import ReplicaPool

__all__ = ["CAPABILITIES", "Capacity", "FixedEndpoint", "ModelCard", "ServedModel"]

CAPABILITIES = ("chat", "completions", "fim", "embeddings", "rerank", "tools", "vision", "reasoning")


@dataclass(frozen=True)
class ModelCard:
    """What `/v1/models` says of a model, so clients size their context and choose features."""

    context_window: int | None = None
    max_output_tokens: int | None = None  # no limit of its own: what the context leaves
    capabilities: frozenset[str] = frozenset({"chat", "completions"})
    tier: str | None = None  # the router's (small, medium, large)
    specialty: str | None = None
    weights: str | None = None  # repository@revision

    def describe(self) -> dict[str, object]:
        """The card's fields, under the names clients of different servers look for."""
        described: dict[str, object] = {
            "capabilities": [c for c in CAPABILITIES if c in self.capabilities],
            "tier": self.tier,
            "specialty": self.specialty,
            "weights": self.weights,
        }
        if self.context_window is not None:
            described |= {
                "context_window": self.context_window,
                "context_length": self.context_window,  # OpenRouter, LM Studio
                "max_model_len": self.context_window,  # vLLM
            }
        if self.max_output_tokens is not None:
            described["max_output_tokens"] = self.max_output_tokens
        return described


class Capacity(Protocol):
    """What can bring up replicas of a service that has none ready: on this machine, the supervisor
    (`inference.supervisor.Supervisor`), which loads a service on demand."""

    def can_load(self, service: str) -> bool:
        """Whether a request that finds no ready replica may wait for one (unloaded or starting)."""
        ...

    async def wait_for_replica(self, service: str) -> None:
        """Load the service if need be; return once a replica is ready or has given up."""
        ...

    async def unload(self, service: str) -> int:
        """Stop its replicas (a later request loads it again); how many there were."""
        ...

    def state(self, service: str) -> str | None:
        """`unloaded`, `loading`, `ready` or `failed`; None for a service it does not run."""
        ...

    def describe(self, service: str) -> Mapping[str, object]:
        """Its state, replicas, loads, memory and idle time; nothing for a service it does not run."""
        ...


@dataclass(frozen=True)
class FixedEndpoint:
    """An address outside this process's care: an external provider, a Kubernetes Service."""

    base_url: str
    headers: Mapping[str, str] = field(default_factory=dict)  # e.g. the provider's API key
    routable: bool = True
    failed: bool = False
    failure: str = ""


@dataclass(frozen=True)
class ServedModel:
    """One model name the gateway answers for, and how to reach it."""

    name: str
    pool: ReplicaPool
    provider: str = "llama.cpp"  # what serves it: llama.cpp, vllm, remote, or a provider's name
    upstream_model: str = ""  # the name the upstream knows it by; "" → `name`
    api: Literal["openai", "anthropic"] = "openai"  # the shape the upstream speaks
    images: bool = True  # the upstream takes image parts (llama-server needs a projector)
    context_window: int | None = None  # tokens per sequence, where known (local engines)
    card: ModelCard = ModelCard()

    @property
    def upstream_name(self) -> str:
        return self.upstream_model or self.name
