"""Replicas of one service, and the choice of one per request (round-robin over routable ones)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from sovra.inference.process import Replica

__all__ = ["ReplicaPool"]


class ReplicaPool:
    def __init__(self, service: str, replicas: Sequence[Replica], engine: str = "llama.cpp") -> None:
        self.service = service
        self.replicas = tuple(replicas)
        self.engine = engine  # what serves it: "llama.cpp" or "vllm" (gen_ai_provider_name)
        self._turn = itertools.count()

    def pick(self, exclude: Replica | None = None) -> Replica | None:
        """The next routable replica in turn, or None when none is."""
        candidates = [r for r in self.replicas if r.routable and r is not exclude]
        if not candidates:
            return None
        return candidates[next(self._turn) % len(candidates)]

    @property
    def ready_count(self) -> int:
        return sum(r.routable for r in self.replicas)
