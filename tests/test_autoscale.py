"""The autoscaling arithmetic both machines share: the HPA's rules on KEDA's triggers, on recorded
series of engine signals."""

from sovra.autoscale import Load, Stabiliser, proposal, triggers
from sovra.spec import Scaling

SCALING = Scaling(
    minReplicas=1, maxReplicas=4, cooldownSeconds=120, runningRatioThreshold=0.5, queueLengthThreshold=4
)


def test_the_triggers_and_their_metric_types() -> None:
    assert [(t.name, t.metric_type, t.threshold) for t in triggers(SCALING, kv_cache=True)] == [
        ("running-ratio", "Value", 0.5), ("kv-cache", "Value", 0.6), ("queue", "AverageValue", 4.0),
    ]  # fmt: skip
    assert [t.name for t in triggers(SCALING, kv_cache=False)] == ["running-ratio", "queue"]


def test_an_average_scales_with_the_replicas_a_total_per_threshold() -> None:
    assert proposal(SCALING, 1, Load(running_ratio=1.0, waiting=0)) == 2  # every slot busy, target half
    assert proposal(SCALING, 2, Load(running_ratio=1.0, waiting=0)) == 4  # twice as many needed again
    assert proposal(SCALING, 3, Load(running_ratio=0.25, waiting=0)) == 2  # ceil(3 * 0.5)
    assert proposal(SCALING, 1, Load(running_ratio=0.5, waiting=10)) == 3  # ceil(10 / 4) waiting wins
    assert proposal(SCALING, 2, Load(running_ratio=0.0, waiting=0)) == 1  # never below minReplicas (≥ 1)
    assert proposal(SCALING, 4, Load(running_ratio=1.0, waiting=100)) == 4  # never above maxReplicas


def test_within_the_tolerance_nothing_changes() -> None:
    assert proposal(SCALING, 2, Load(running_ratio=0.54, waiting=0)) == 2  # 8 % over target
    assert proposal(SCALING, 2, Load(running_ratio=0.56, waiting=0)) == 3  # 12 % over target


def test_kv_cache_counts_only_where_the_engine_reports_it() -> None:
    busy_cache = Load(running_ratio=0.1, waiting=0, cache=0.9)
    assert proposal(SCALING, 1, busy_cache, kv_cache=True) == 2  # ceil(0.9 / 0.6)
    assert proposal(SCALING, 1, busy_cache, kv_cache=False) == 1


def test_up_at_once_down_only_after_the_cooldown() -> None:
    """A recorded series (seconds, running ratio): a burst, then quiet."""
    series = [
        (0, 0.2),
        (15, 1.0),
        (30, 1.0),
        (45, 0.3),
        (60, 0.1),
        (90, 0.0),
        (150, 0.0),
        (160, 0.0),
        (170, 0.0),
        (200, 0.0),
    ]
    stabiliser, current, counts = Stabiliser(SCALING), 1, []
    for second, ratio in series:
        current = stabiliser.decide(second, current, proposal(SCALING, current, Load(ratio, 0)))
        counts.append(current)
    # Up to 2 at the burst, 4 while it holds; down to the highest proposal of the last 120 s: 4
    # until the one made at 30 s is older than that, then 3 (proposed at 45 s), then 1.
    assert counts == [1, 2, 4, 4, 4, 4, 4, 3, 1, 1]
