"""The trace replay of `bench/autoscaling.py` keeps running, and what it shows stays true of the
scaling arithmetic: on the mixed workload the KV-cache trigger scales out before the running ratio
alone (the article's trigger with the metric vLLM 0.11 removed), and every request completes."""

import random

from bench.autoscaling import EngineModel, arrivals, replay, trace_named, trigger_sets

from sovra.spec import Scaling


def test_the_kv_cache_trigger_anticipates_what_the_running_ratio_misses() -> None:
    scaling, engine = Scaling(min_replicas=1, max_replicas=4), EngineModel()
    trace = trace_named("ramp", quick=True)
    requests = arrivals(trace, random.Random(0))
    outcomes = {
        chosen.name: replay(trace, requests, chosen, scaling, engine) for chosen in trigger_sets(scaling)
    }
    assert all(o.completed == len(requests) for o in outcomes.values())
    as_written, current = outcomes["article, as written"], outcomes["article, current names"]
    assert current.scale_out_decided is not None
    assert as_written.scale_out_decided is None or current.scale_out_decided < as_written.scale_out_decided
    assert current.ttft_p95 < as_written.ttft_p95
    # Holding more replicas is what buys it.
    assert current.replica_hours > as_written.replica_hours
