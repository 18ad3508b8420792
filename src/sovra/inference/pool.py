"""Replicas of one service, and the choice of one per request.

Prefix affinity with bounded load: requests that share the start of their prompt (an IDE's
autocomplete in one file, an agent's growing conversation) hash to the same point of a ring of
virtual nodes and go to the replica that holds their KV cache — unless that replica already has
more than `load_factor` times its fair share of outstanding requests, in which case the walk goes on
round the ring (consistent hashing with bounded loads, Mirrokni et al. 2018). Requests without a key
go to the replica with the fewest outstanding requests.

Passive health: a replica that fails `eject_after` times in a row (or cannot be reached at all) is
left out for `eject_seconds`; the supervisor's active checks decide READY/UNHEALTHY separately.
Pure code: the caller passes the clock, and nothing here does I/O.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from sovra.inference.process import Replica

__all__ = ["Balancing", "ReplicaPool"]

_VIRTUAL_NODES = 64


@dataclass(frozen=True)
class Balancing:
    affinity: bool = True
    load_factor: float = 1.25
    eject_after: int = 3
    eject_seconds: float = 5.0


def _point(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


class ReplicaPool:
    def __init__(
        self,
        service: str,
        replicas: Sequence[Replica],
        engine: str = "llama.cpp",
        balancing: Balancing | None = None,
        upstream_model: str | None = None,
        headers: Mapping[str, str] | None = None,
        api: Literal["openai", "anthropic"] = "openai",
        images: bool = True,
        context_window: int | None = None,
    ) -> None:
        self.service = service
        self.replicas = tuple(replicas)
        self.engine = engine  # what serves it: llama.cpp, vllm, or a provider (gen_ai_provider_name)
        self.upstream_model = upstream_model or service  # the name the upstream knows the model by
        self.headers = dict(headers or {})  # sent with every request (an external provider's key)
        self.api = api  # the shape the upstream speaks: every engine speaks OpenAI's
        self.images = images  # whether the upstream takes image parts (llama-server needs a projector)
        self.context_window = context_window  # tokens per sequence, where known (local engines)
        self.balancing = balancing or Balancing()
        ring = sorted(
            (_point(f"{service}/{position}/{node}".encode()), position)
            for position in range(len(self.replicas))
            for node in range(_VIRTUAL_NODES)
        )
        self._ring_points = [point for point, _ in ring]
        self._ring_owners = [position for _, position in ring]
        self._turn = itertools.count()

    def usable(self, replica: Replica, now: float) -> bool:
        return replica.routable and now >= replica.ejected_until

    def pick(
        self, now: float, affinity: bytes | None = None, exclude: Replica | None = None
    ) -> Replica | None:
        candidates = [r for r in self.replicas if r is not exclude and self.usable(r, now)]
        if not candidates:
            return None
        if affinity and self.balancing.affinity and len(candidates) > 1:
            return self._by_affinity(affinity, candidates)
        return self._least_outstanding(candidates)

    def _by_affinity(self, key: bytes, candidates: list[Replica]) -> Replica:
        total = sum(r.outstanding for r in candidates)
        bound = math.ceil(self.balancing.load_factor * (total + 1) / len(candidates))
        allowed = {id(r) for r in candidates}
        start = bisect.bisect(self._ring_points, _point(key))
        for step in range(len(self._ring_owners)):
            replica = self.replicas[self._ring_owners[(start + step) % len(self._ring_owners)]]
            if id(replica) in allowed and replica.outstanding < bound:
                return replica
        return self._least_outstanding(candidates)  # unreachable: some candidate is under the bound

    def _least_outstanding(self, candidates: list[Replica]) -> Replica:
        offset = next(self._turn) % len(candidates)  # ties are taken in turn
        rotated = candidates[offset:] + candidates[:offset]
        return min(rotated, key=lambda r: r.outstanding)

    def report(self, replica: Replica, ok: bool, now: float, unreachable: bool = False) -> None:
        """Passive health: what the last request to `replica` showed."""
        if ok:
            replica.consecutive_failures = 0
            replica.last_answer = now
            return
        replica.consecutive_failures += 1
        if unreachable or replica.consecutive_failures >= self.balancing.eject_after:
            replica.ejected_until = now + self.balancing.eject_seconds
            replica.consecutive_failures = 0

    def ready_count(self, now: float) -> int:
        return sum(self.usable(r, now) for r in self.replicas)
