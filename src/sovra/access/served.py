"""What the gateway serves: a model name, the endpoints that answer it, and the upstream's shape.

Local engines are `inference.process.Replica`s (their state kept by the supervisor); external
providers and engines running elsewhere are `FixedEndpoint`s — an address that is always there, its
health seen only passively (by the balancer, from the answers).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from sovra.access.balancer import ReplicaPool

__all__ = ["FixedEndpoint", "ServedModel"]


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

    @property
    def upstream_name(self) -> str:
        return self.upstream_model or self.name
