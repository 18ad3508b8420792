"""The gateway's balancer: which endpoint of a model serves a request, and what it has in flight.

Prefix affinity with bounded load: requests that share the start of their prompt (an IDE's
autocomplete in one file, an agent's growing conversation) hash to the same point of a ring of
virtual nodes and go to the replica that holds their KV cache — unless that replica already has
more than `load_factor` times its fair share of outstanding requests, in which case the walk goes on
round the ring (consistent hashing with bounded loads, Mirrokni et al. 2018). Requests without a key
go to the replica with the fewest outstanding requests.

Passive health: a replica that fails `eject_after` times in a row (or cannot be reached at all) is
left out for `eject_seconds`; the supervisor's active checks decide READY/UNHEALTHY separately.

The pool alone owns this load state. The gateway borrows an endpoint with `pool.lease(now, key)`
and hands the lease back once with `release(ok, now)`; nothing else counts requests in flight.
Pure code: the caller passes the clock, and nothing here does I/O.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Balancing", "Endpoint", "Lease", "ReplicaPool"]

_VIRTUAL_NODES = 64


class Endpoint(Protocol):
    """What the balancer needs of a thing that answers requests: a local engine replica
    (`inference.process.Replica`) or a fixed address (an external provider, a remote engine)."""

    @property
    def base_url(self) -> str: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def routable(self) -> bool: ...
    @property
    def failed(self) -> bool: ...
    @property
    def failure(self) -> str: ...


@dataclass(frozen=True)
class Balancing:
    affinity: bool = True
    load_factor: float = 1.25
    eject_after: int = 3
    eject_seconds: float = 5.0


@dataclass
class _Load:
    outstanding: int = 0
    consecutive_failures: int = 0
    ejected_until: float = 0.0
    last_answer: float = 0.0  # monotonic time of its last good answer


class Lease:
    """One request's hold on one endpoint, from the pick until `release` (once)."""

    __slots__ = ("_load", "_pool", "endpoint", "index")

    def __init__(self, pool: ReplicaPool, index: int) -> None:
        self._pool = pool
        self._load: _Load | None = pool._loads[index]
        self.index = index
        self.endpoint = pool.endpoints[index]
        self._load.outstanding += 1

    def answered(self, now: float) -> None:
        """The endpoint gave an answer (not a 5xx): it is alive, whatever the probes say."""
        self._pool._loads[self.index].last_answer = now

    def release(self, ok: bool, now: float, unreachable: bool = False) -> None:
        """The request is done with the endpoint: one fewer in flight, and what it showed of its
        health. Later calls do nothing."""
        load, self._load = self._load, None
        if load is None:
            return
        load.outstanding -= 1
        self._pool._report(load, ok, now, unreachable)


def _point(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


class ReplicaPool:
    def __init__(
        self, service: str, endpoints: Sequence[Endpoint], balancing: Balancing | None = None
    ) -> None:
        self.service = service
        self.endpoints = tuple(endpoints)
        self.balancing = balancing or Balancing()
        self._loads = [_Load() for _ in self.endpoints]
        ring = sorted(
            (_point(f"{service}/{position}/{node}".encode()), position)
            for position in range(len(self.endpoints))
            for node in range(_VIRTUAL_NODES)
        )
        self._ring_points = [point for point, _ in ring]
        self._ring_owners = [position for _, position in ring]
        self._turn = itertools.count()
        self.last_leased = 0.0  # monotonic time of the last request given an endpoint

    def usable(self, index: int, now: float) -> bool:
        return self.endpoints[index].routable and now >= self._loads[index].ejected_until

    def lease(self, now: float, affinity: bytes | None = None, exclude: Lease | None = None) -> Lease | None:
        """Borrow the endpoint the balancer picks (never `exclude`'s); None if none is usable."""
        index = self.pick(now, affinity, None if exclude is None else exclude.index)
        if index is None:
            return None
        self.last_leased = now
        return Lease(self, index)

    def pick(self, now: float, affinity: bytes | None = None, exclude: int | None = None) -> int | None:
        """The index of the endpoint that would serve a request now (nothing is taken)."""
        candidates = [i for i in range(len(self.endpoints)) if i != exclude and self.usable(i, now)]
        if not candidates:
            return None
        if affinity and self.balancing.affinity and len(candidates) > 1:
            return self._by_affinity(affinity, candidates)
        return self._least_outstanding(candidates)

    def outstanding(self, index: int) -> int:
        return self._loads[index].outstanding

    def in_flight(self) -> int:
        """Requests holding an endpoint of this pool now."""
        return sum(load.outstanding for load in self._loads)

    def last_answer(self, index: int) -> float:
        return self._loads[index].last_answer

    def _by_affinity(self, key: bytes, candidates: list[int]) -> int:
        total = sum(self._loads[i].outstanding for i in candidates)
        bound = math.ceil(self.balancing.load_factor * (total + 1) / len(candidates))
        allowed = set(candidates)
        start = bisect.bisect(self._ring_points, _point(key))
        for step in range(len(self._ring_owners)):
            index = self._ring_owners[(start + step) % len(self._ring_owners)]
            if index in allowed and self._loads[index].outstanding < bound:
                return index
        return self._least_outstanding(candidates)  # unreachable: some candidate is under the bound

    def _least_outstanding(self, candidates: list[int]) -> int:
        offset = next(self._turn) % len(candidates)  # ties are taken in turn
        rotated = candidates[offset:] + candidates[:offset]
        return min(rotated, key=lambda i: self._loads[i].outstanding)

    def _report(self, load: _Load, ok: bool, now: float, unreachable: bool) -> None:
        """Passive health: what the last request to an endpoint showed."""
        if ok:
            load.consecutive_failures = 0
            load.last_answer = now
            return
        load.consecutive_failures += 1
        if unreachable or load.consecutive_failures >= self.balancing.eject_after:
            load.ejected_until = now + self.balancing.eject_seconds
            load.consecutive_failures = 0

    def ready_count(self, now: float) -> int:
        return sum(self.usable(i, now) for i in range(len(self.endpoints)))

    def failures(self) -> list[str]:
        """Why each endpoint that gave up did so (local engines after repeated failed starts)."""
        return [e.failure for e in self.endpoints if e.failed]
