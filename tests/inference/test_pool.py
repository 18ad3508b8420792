"""Replica choice: prefix affinity with bounded load, least outstanding, passive health."""

import math
from collections import Counter

from sovra.inference.pool import Balancing, ReplicaPool
from sovra.inference.process import Replica, ReplicaState

NOW = 1000.0


def pool(n: int = 3, **balancing: object) -> ReplicaPool:
    replicas = [Replica("svc", i, port=9000 + i, state=ReplicaState.READY) for i in range(n)]
    return ReplicaPool("svc", replicas, balancing=Balancing(**balancing))  # type: ignore[arg-type]


def test_the_same_key_goes_to_the_same_replica_and_keys_spread() -> None:
    replicas = pool(3)
    assert len({replicas.pick(NOW, b"same prefix").index for _ in range(20)}) == 1  # type: ignore[union-attr]
    spread = Counter(replicas.pick(NOW, f"prefix {n}".encode()).index for n in range(600))  # type: ignore[union-attr]
    assert len(spread) == 3 and min(spread.values()) > 120  # roughly even (64 virtual nodes each)


def test_a_hot_key_overflows_to_others_once_its_replica_exceeds_the_bound() -> None:
    replicas = pool(3, load_factor=1.25)
    home = replicas.pick(NOW, b"hot")
    assert home is not None
    for placed in range(12):  # twelve concurrent requests with the same prefix, none finished yet
        chosen = replicas.pick(NOW, b"hot")
        assert chosen is not None
        bound = math.ceil(1.25 * (placed + 1) / 3)
        assert chosen.outstanding < bound  # it had room under the bound when it was chosen
        chosen.outstanding += 1
    loads = [r.outstanding for r in replicas.replicas]
    assert sum(loads) == 12 and max(loads) <= 5  # ceil(1.25 * 12 / 3) = 5
    assert home.outstanding == max(loads)  # the key's own replica carries the most


def test_without_a_key_the_least_loaded_replica_is_chosen() -> None:
    replicas = pool(3)
    replicas.replicas[0].outstanding, replicas.replicas[1].outstanding = 4, 1
    assert [replicas.pick(NOW).index for _ in range(3)] == [2, 2, 2]  # type: ignore[union-attr]


def test_failing_replicas_are_left_out_for_a_while() -> None:
    replicas = pool(2, eject_after=3, eject_seconds=5.0)
    flaky = replicas.replicas[0]
    replicas.report(flaky, ok=False, now=NOW)
    replicas.report(flaky, ok=False, now=NOW)
    assert replicas.usable(flaky, NOW)  # two failures: still in
    replicas.report(flaky, ok=False, now=NOW)
    assert not replicas.usable(flaky, NOW) and replicas.ready_count(NOW) == 1
    assert all(replicas.pick(NOW, f"k{n}".encode()) is replicas.replicas[1] for n in range(10))
    assert replicas.usable(flaky, NOW + 5.0)  # back after the ejection time
    down = replicas.replicas[1]
    replicas.report(down, ok=False, now=NOW, unreachable=True)  # unreachable: out at once
    assert not replicas.usable(down, NOW)
    replicas.report(flaky, ok=True, now=NOW)
    assert flaky.consecutive_failures == 0


def test_replicas_that_are_not_ready_are_never_picked() -> None:
    replicas = pool(2)
    replicas.replicas[0].state = ReplicaState.STARTING
    assert {replicas.pick(NOW, f"k{n}".encode()).index for n in range(20)} == {1}  # type: ignore[union-attr]
    replicas.replicas[1].state = ReplicaState.UNHEALTHY
    assert replicas.pick(NOW, b"k") is None
