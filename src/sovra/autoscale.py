"""The autoscaling arithmetic, one copy for both machines.

On a cluster, `sovra render` writes a KEDA ScaledObject (`deploy/scaling.py`) whose triggers come
from `triggers()`, and the HorizontalPodAutoscaler KEDA drives does the arithmetic below. On one
machine, `sovra up` samples the same signals from its engines every `pollingIntervalSeconds` and
calls the same functions (`inference/autoscaler.py`), so one declaration means the same thing on both.

The HPA's rules, as Kubernetes documents them: for a `Value` target (an average across replicas,
such as running requests per slot) the proposal is ceil(current * value / threshold); for an
`AverageValue` target (a total, such as requests waiting) it is ceil(value / threshold); nothing
changes while value / target is within 10 % of 1; the highest proposal of all triggers wins; scaling
up is immediate, scaling down takes the highest proposal of the last `cooldownSeconds` (the
scale-down stabilisation window, which the ScaledObject sets to the same value).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from sovra.spec import Scaling

__all__ = ["TOLERANCE", "Load", "Stabiliser", "Trigger", "proposal", "triggers"]

TOLERANCE = 0.1  # the HPA's default: |value / target - 1| within this changes nothing


@dataclass(frozen=True)
class Trigger:
    name: str  # "running-ratio", "kv-cache", "queue"
    metric_type: Literal["Value", "AverageValue"]
    threshold: float


@dataclass(frozen=True)
class Load:
    """What the triggers' queries return for a service now."""

    running_ratio: float  # requests being decoded / slots, averaged over the ready replicas
    waiting: float  # requests queued inside the engines, in total
    cache: float | None = None  # KV-cache use, averaged (vLLM only)

    def value(self, trigger: str) -> float | None:
        return {"running-ratio": self.running_ratio, "queue": self.waiting, "kv-cache": self.cache}[trigger]


def triggers(scaling: Scaling, kv_cache: bool) -> list[Trigger]:
    """The triggers of a service: running requests per slot and requests waiting, and KV-cache use
    where the engine reports it (vLLM)."""
    chosen = [Trigger("running-ratio", "Value", scaling.running_ratio_threshold)]
    if kv_cache:
        chosen.append(Trigger("kv-cache", "Value", scaling.cache_utilization_threshold))
    chosen.append(Trigger("queue", "AverageValue", float(scaling.queue_length_threshold)))
    return chosen


def proposal(
    scaling: Scaling,
    current: int,
    load: Load,
    kv_cache: bool = False,
    chosen: Sequence[Trigger] | None = None,
) -> int:
    """How many replicas the triggers ask for now, within [minReplicas (at least 1), maxReplicas];
    `chosen` replaces the service's triggers (to compare other trigger sets on the same load)."""
    current = max(current, 1)
    wanted = []
    for trigger in triggers(scaling, kv_cache) if chosen is None else chosen:
        value = load.value(trigger.name)
        if value is None:
            continue
        if trigger.metric_type == "Value":  # an average: the replicas it would take to bring it to target
            ratio = value / trigger.threshold
            count = math.ceil(current * ratio - 1e-9)
        else:  # a total: one replica per `threshold` of it
            ratio = value / (trigger.threshold * current)
            count = math.ceil(value / trigger.threshold - 1e-9)
        wanted.append(current if abs(ratio - 1.0) <= TOLERANCE else count)
    largest = max(wanted) if wanted else current  # the largest proposal wins
    return min(max(largest, scaling.min_replicas, 1), scaling.max_replicas)


class Stabiliser:
    """Scale up at once; scale down only to the highest proposal of the last `cooldownSeconds`.
    Pure: the caller passes the clock."""

    def __init__(self, scaling: Scaling) -> None:
        self._window = float(scaling.cooldown_seconds)
        self._recent: deque[tuple[float, int]] = deque()

    def decide(self, now: float, current: int, proposed: int) -> int:
        if not self._recent:  # the count it starts from holds for a window, as a recommendation would
            self._recent.append((now, current))
        self._recent.append((now, proposed))
        while self._recent and self._recent[0][0] < now - self._window:
            self._recent.popleft()
        if proposed >= current:
            return proposed
        return min(current, max(count for _, count in self._recent))
