"""Endpoint choice: prefix affinity with bounded load, least outstanding, passive health, leases."""

import math
from collections import Counter

from sovra.access.balancer import Balancing, Lease, ReplicaPool
from sovra.access.served import FixedEndpoint
from sovra.inference.process import Replica, ReplicaState

NOW = 1000.0


def pool(n: int = 3, **balancing: object) -> ReplicaPool:
    replicas = [Replica("svc", i, port=9000 + i, state=ReplicaState.READY) for i in range(n)]
    return ReplicaPool("svc", replicas, balancing=Balancing(**balancing))  # type: ignore[arg-type]


def lease(replicas: ReplicaPool, key: bytes | None = None, exclude: Lease | None = None) -> Lease:
    taken = replicas.lease(NOW, key, exclude)
    assert taken is not None
    return taken


def test_the_same_key_goes_to_the_same_replica_and_keys_spread() -> None:
    replicas = pool(3)
    assert len({replicas.pick(NOW, b"same prefix") for _ in range(20)}) == 1
    spread = Counter(replicas.pick(NOW, f"prefix {n}".encode()) for n in range(600))
    assert len(spread) == 3 and min(spread.values()) > 120  # roughly even (64 virtual nodes each)


def test_a_hot_key_overflows_to_others_once_its_replica_exceeds_the_bound() -> None:
    replicas = pool(3, load_factor=1.25)
    home = replicas.pick(NOW, b"hot")
    assert home is not None
    for placed in range(12):  # twelve concurrent requests with the same prefix, none finished yet
        chosen = lease(replicas, b"hot")
        bound = math.ceil(1.25 * (placed + 1) / 3)
        assert replicas.outstanding(chosen.index) - 1 < bound  # it had room under the bound
    loads = [replicas.outstanding(i) for i in range(3)]
    assert sum(loads) == 12 and max(loads) <= 5  # ceil(1.25 * 12 / 3) = 5
    assert replicas.outstanding(home) == max(loads)  # the key's own replica carries the most


def test_without_a_key_the_least_loaded_replica_is_chosen() -> None:
    replicas = pool(3)
    held = [Lease(replicas, 0) for _ in range(4)] + [Lease(replicas, 1)]
    assert [replicas.pick(NOW) for _ in range(3)] == [2, 2, 2]
    for taken in held[:4]:
        taken.release(True, NOW)
    assert {replicas.pick(NOW) for _ in range(6)} == {0, 2}  # ties taken in turn


def test_a_lease_is_released_once_and_counts_what_is_in_flight() -> None:
    replicas = pool(1)
    first, second = lease(replicas), lease(replicas)
    assert replicas.outstanding(0) == 2
    first.release(True, NOW)
    first.release(True, NOW)  # a second release changes nothing
    assert replicas.outstanding(0) == 1
    second.release(False, NOW)
    assert replicas.outstanding(0) == 0


def test_failing_replicas_are_left_out_for_a_while() -> None:
    replicas = pool(2, eject_after=3, eject_seconds=5.0)
    for _ in range(2):
        Lease(replicas, 0).release(False, NOW)
    assert replicas.usable(0, NOW)  # two failures: still in
    Lease(replicas, 0).release(False, NOW)
    assert not replicas.usable(0, NOW) and replicas.ready_count(NOW) == 1
    assert all(replicas.pick(NOW, f"k{n}".encode()) == 1 for n in range(10))
    assert replicas.usable(0, NOW + 5.0)  # back after the ejection time
    Lease(replicas, 1).release(False, NOW, unreachable=True)  # unreachable: out at once
    assert not replicas.usable(1, NOW)
    assert replicas.lease(NOW) is None  # nothing usable: no lease


def test_a_good_answer_forgives_earlier_failures_and_is_remembered() -> None:
    replicas = pool(1, eject_after=3)
    for _ in range(2):
        Lease(replicas, 0).release(False, NOW)
    Lease(replicas, 0).release(True, NOW + 1)
    assert replicas.last_answer(0) == NOW + 1
    for _ in range(2):
        Lease(replicas, 0).release(False, NOW + 2)
    assert replicas.usable(0, NOW + 2)  # the count started again after the good answer
    Lease(replicas, 0).answered(NOW + 3)
    assert replicas.last_answer(0) == NOW + 3


def test_replicas_that_are_not_ready_are_never_picked() -> None:
    replicas = pool(2)
    replicas.endpoints[0].state = ReplicaState.STARTING  # type: ignore[attr-defined]
    assert {replicas.pick(NOW, f"k{n}".encode()) for n in range(20)} == {1}
    replicas.endpoints[1].state = ReplicaState.UNHEALTHY  # type: ignore[attr-defined]
    assert replicas.pick(NOW, b"k") is None


def test_a_retry_never_gets_the_endpoint_it_left() -> None:
    replicas = pool(2)
    first = lease(replicas, b"k")
    assert all(lease(replicas, b"k", exclude=first).index != first.index for _ in range(10))


def test_fixed_endpoints_are_balanced_like_replicas() -> None:
    providers = ReplicaPool("p", [FixedEndpoint("http://a"), FixedEndpoint("http://b")])
    assert {providers.pick(NOW, f"k{n}".encode()) for n in range(50)} == {0, 1}
    assert providers.failures() == [] and providers.ready_count(NOW) == 2
