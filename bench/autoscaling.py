"""Autoscaling, measured rather than asserted: bursty request traces replayed through the scaling
arithmetic `sovra render` writes into the KEDA ScaledObject and `sovra up` runs locally
(`sovra.autoscale`: the HPA's proposal per trigger, 10 % tolerance, highest proposal wins, scale
down only to the highest proposal of the cooldown window), on a simple engine model, once per
trigger set, side by side.

Trigger sets:
- `article, as written`: running/maxNumSeqs > 0.7 and `vllm:gpu_cache_usage_perc` > 0.6. vLLM 0.11
  (the pinned image) no longer exports that gauge by default, so its trigger reads nothing and only
  the running ratio scales.
- `article, current names`: the same two with `vllm:kv_cache_usage_perc`.
- `queue only`: `vllm:num_requests_waiting` > 8 (an AverageValue target).
- `sovra default`: all three, as `sovra render` writes them.

The engine model (stated, not measured — an L4-class GPU serving a 7-8B fp8 model; change it with
the flags): `maxNumSeqs` slots and a KV cache of `--kv-tokens` per replica; a request is admitted when
a slot is free and its prompt fits in the free KV cache, else it waits in that replica's queue; its
prefill takes prompt / `--prefill-rate` s, then each output token takes 20 ms + 0.9 ms per request in
the batch; the KV it holds grows with every token. A new replica serves `--startup` s after the
decision. Metrics are scraped every 15 s and KEDA polls every `pollingIntervalSeconds` (15 s), so a
decision sees the load of up to 30 s ago. The balancer sends each request to the ready replica with
the least work (as the gateway and the Endpoint Picker do). Replicas removed by a scale-down stop
taking requests and leave when empty.

Traces: Poisson arrivals; 85 % chat (prompt log-normal, median 800 tokens; output median 250) and
15 % long-context agent turns (prompt 12-28 k tokens; output median 400). A ramp (0.5 → 4.5 rps over
30 min), a spike (1 → 5 rps for 4 min), a compressed day (0.3 → 4.5 → 0.3 rps over 2 h). One replica
sustains about 1.5 rps of this mix (its KV cache binds before its slots), so the peaks need three of
the four allowed.

    python bench/autoscaling.py [--seeds 3] [--quick]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sovra.autoscale import Load, Stabiliser, Trigger, proposal
from sovra.spec import Scaling

DT = 0.25  # simulation step, seconds
SCRAPE = 15.0  # the metrics' scrape interval (render.scrapeInterval)


@dataclass(frozen=True)
class EngineModel:
    slots: int = 32  # maxNumSeqs, as the reference claims declare
    kv_tokens: int = 98_304  # KV-cache capacity of one replica, in tokens
    prefill_rate: float = 4_000.0  # prompt tokens per second, per request in prefill
    decode_base: float = 0.020  # seconds per output token with one request in the batch
    decode_per_request: float = 0.0009  # ... plus this per request decoding beside it
    startup: float = 90.0  # decision → serving (pod start, weights from the shared volume, CUDA graphs)


@dataclass
class Request:
    arrival: float
    prompt: int
    output: int
    prefill_left: float = 0.0
    generated: float = 0.0
    first_token: float | None = None

    @property
    def kv(self) -> float:
        return self.prompt + self.generated


@dataclass
class Replica:
    ready_at: float
    started: float
    running: list[Request] = field(default_factory=list)
    waiting: deque[Request] = field(default_factory=deque)
    draining: bool = False
    stopped: float | None = None

    def kv_used(self) -> float:
        return sum(r.kv for r in self.running)

    def work(self) -> int:
        return len(self.running) + len(self.waiting)


@dataclass(frozen=True)
class TriggerSet:
    name: str
    chosen: tuple[Trigger, ...]
    cache_exported: bool  # whether the engine exports the KV metric this set's trigger queries


def trigger_sets(scaling: Scaling) -> list[TriggerSet]:
    running = Trigger("running-ratio", "Value", scaling.running_ratio_threshold)
    cache = Trigger("kv-cache", "Value", scaling.cache_utilization_threshold)
    queue = Trigger("queue", "AverageValue", float(scaling.queue_length_threshold))
    return [
        TriggerSet("article, as written", (running, cache), cache_exported=False),
        TriggerSet("article, current names", (running, cache), cache_exported=True),
        TriggerSet("queue only", (queue,), cache_exported=True),
        TriggerSet("sovra default", (running, cache, queue), cache_exported=True),
    ]


# ---- traces --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trace:
    name: str
    duration: float
    rate: Callable[[float], float]  # requests per second at time t
    burst: float  # when the load that needs more replicas begins
    long_share: float = 0.15  # share of long-context agent turns


def traces(quick: bool) -> list[Trace]:
    scale = 0.25 if quick else 1.0

    def ramp(t: float) -> float:
        return 0.5 + 4.0 * min(t / (1800 * scale), 1.0)

    def spike(t: float) -> float:
        return 5.0 if 600 * scale <= t < 840 * scale else 1.0

    def day(t: float) -> float:
        return 0.3 + 4.2 * (1 - math.cos(2 * math.pi * t / (7200 * scale))) / 2

    def chat(t: float) -> float:  # short prompts only: slots bind before the KV cache; 2x the rate
        return 2 * ramp(t)

    return [
        Trace("ramp", 2400 * scale, ramp, 0.0),
        Trace("spike", 1800 * scale, spike, 600 * scale),
        Trace("diurnal", 7200 * scale, day, 0.0),
        Trace("ramp, chat only", 2400 * scale, chat, 0.0, long_share=0.0),
    ]


def trace_named(name: str, quick: bool = False) -> Trace:
    return next(t for t in traces(quick) if t.name == name)


def arrivals(trace: Trace, rng: random.Random) -> list[Request]:
    """Poisson arrivals (thinning against the peak rate) with the prompt / output mix above."""
    peak = max(trace.rate(t) for t in range(int(trace.duration)))
    found: list[Request] = []
    t = 0.0
    while True:
        t += rng.expovariate(peak)
        if t >= trace.duration:
            return found
        if rng.random() * peak > trace.rate(t):
            continue
        if rng.random() < trace.long_share:
            prompt, output = rng.randint(12_000, 28_000), rng.lognormvariate(math.log(400), 0.6)
        else:
            prompt, output = (
                min(int(rng.lognormvariate(math.log(800), 0.8)), 8_000),
                rng.lognormvariate(math.log(250), 0.6),
            )
        found.append(Request(t, max(prompt, 16), max(int(min(output, 2_000)), 1)))


# ---- the replay ----------------------------------------------------------------------------------


@dataclass
class Outcome:
    at_burst: int  # replicas serving or starting when the burst began
    scale_out_decided: float | None  # seconds after the burst began
    added_ready: float | None  # seconds after the burst began until one more replica serves
    queued_seconds: float  # time with at least one request waiting somewhere
    ttft_p50: float
    ttft_p95: float
    replica_hours: float
    completed: int
    starts: int  # replicas started over the trace (churn)


def _admit(replica: Replica, engine: EngineModel) -> None:
    while replica.waiting and len(replica.running) < engine.slots:
        head = replica.waiting[0]
        if replica.running and replica.kv_used() + head.prompt > engine.kv_tokens:
            return  # the prompt does not fit in the free KV cache yet
        replica.waiting.popleft()
        head.prefill_left = head.prompt / engine.prefill_rate
        replica.running.append(head)


def _step(replica: Replica, engine: EngineModel, now: float, done: list[Request]) -> None:
    per_token = engine.decode_base + engine.decode_per_request * len(replica.running)
    still = []
    for request in replica.running:
        if request.prefill_left > 0:
            request.prefill_left -= DT
            if request.prefill_left <= 0:
                request.first_token = now
            still.append(request)
            continue
        request.generated += DT / per_token
        if request.generated >= request.output:
            done.append(request)
        else:
            still.append(request)
    replica.running = still
    _admit(replica, engine)


def replay(
    trace: Trace, requests: Sequence[Request], triggers: TriggerSet, scaling: Scaling, engine: EngineModel
) -> Outcome:
    pending = deque(Request(r.arrival, r.prompt, r.output) for r in requests)
    replicas = [Replica(ready_at=0.0, started=0.0)]
    stabiliser, done = Stabiliser(scaling), list[Request]()
    sampled = Load(0.0, 0.0, 0.0)
    decided = ready_second = at_burst = None
    queued = 0.0
    next_scrape = next_poll = 0.0
    steps = int(trace.duration / DT) + int(600 / DT)  # and ten minutes to drain
    for step in range(steps):
        now = step * DT
        serving = [r for r in replicas if r.stopped is None and r.ready_at <= now and not r.draining]
        while pending and pending[0].arrival <= now:
            target = min(serving, key=Replica.work)
            target.waiting.append(pending.popleft())
            _admit(target, engine)
        for replica in replicas:
            if replica.stopped is None and replica.ready_at <= now:
                _step(replica, engine, now, done)
                if replica.draining and not replica.work():
                    replica.stopped = now
        if any(r.waiting for r in replicas if r.stopped is None):
            queued += DT
        if now >= next_scrape:  # what Prometheus holds until the next scrape
            ready = [r for r in replicas if r.stopped is None and r.ready_at <= now]
            running = sum(len(r.running) for r in ready) / (engine.slots * len(ready))
            cache = statistics.fmean(r.kv_used() / engine.kv_tokens for r in ready)
            sampled = Load(running, float(sum(len(r.waiting) for r in ready)), cache)
            next_scrape += SCRAPE
        if now >= next_poll:
            next_poll += scaling.polling_interval_seconds
            live = [r for r in replicas if r.stopped is None and not r.draining]
            load = sampled if triggers.cache_exported else Load(sampled.running_ratio, sampled.waiting, None)
            desired = stabiliser.decide(
                now, len(live), proposal(scaling, len(live), load, chosen=triggers.chosen)
            )
            if desired > len(live):
                if decided is None and now >= trace.burst:
                    decided = now - trace.burst
                replicas += [
                    Replica(ready_at=now + engine.startup, started=now) for _ in range(desired - len(live))
                ]
            for replica in sorted(live, key=lambda r: -r.started)[: max(len(live) - desired, 0)]:
                replica.draining = True
        if at_burst is None and now >= trace.burst:
            at_burst = sum(1 for r in replicas if r.stopped is None and not r.draining)
        serving_now = sum(1 for r in replicas if r.stopped is None and r.ready_at <= now)
        if ready_second is None and at_burst is not None and serving_now > at_burst:
            ready_second = now - trace.burst
    end = steps * DT
    ttfts = sorted(r.first_token - r.arrival for r in done if r.first_token is not None)
    hours = sum(((r.stopped or end) - r.started) for r in replicas) / 3600
    return Outcome(
        at_burst=at_burst or 1,
        scale_out_decided=decided,
        added_ready=ready_second,
        queued_seconds=queued,
        ttft_p50=ttfts[len(ttfts) // 2],
        ttft_p95=ttfts[int(len(ttfts) * 0.95)],
        replica_hours=hours,
        completed=len(done),
        starts=len(replicas) - 1,
    )


# ---- the report ----------------------------------------------------------------------------------


def _median(values: list[float | None]) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return "never"
    return f"{statistics.median(known):.0f}" + (
        "" if len(known) == len(values) else f" ({len(known)}/{len(values)})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="traces a quarter as long")
    parser.add_argument("--startup", type=float, default=EngineModel.startup)
    parser.add_argument("--kv-tokens", type=int, default=EngineModel.kv_tokens)
    parser.add_argument("--prefill-rate", type=float, default=EngineModel.prefill_rate)
    args = parser.parse_args()
    engine = EngineModel(startup=args.startup, kv_tokens=args.kv_tokens, prefill_rate=args.prefill_rate)
    scaling = Scaling(min_replicas=1, max_replicas=4)  # cooldown 300 s, polling 15 s: the defaults
    print(f"engine: {engine}\nscaling: min 1, max 4, cooldown {scaling.cooldown_seconds} s, "
          f"polling {scaling.polling_interval_seconds} s, scrape {SCRAPE:.0f} s; {args.seeds} seeds, medians")  # fmt: skip
    header = (f"{'trace':<16} {'trigger set':<24} {'at burst':>8} {'decided (s)':>11} {'serving (s)':>11} "
              f"{'queued (s)':>10} {'TTFT p50':>9} {'TTFT p95':>9} {'replica-h':>9} {'starts':>6}")  # fmt: skip
    print(header)
    print("-" * len(header))
    for trace in traces(args.quick):
        loads = [arrivals(trace, random.Random(seed)) for seed in range(args.seeds)]
        for chosen in trigger_sets(scaling):
            runs = [replay(trace, requests, chosen, scaling, engine) for requests in loads]
            print(
                f"{trace.name:<16} {chosen.name:<24} {statistics.median(r.at_burst for r in runs):>8.0f} "
                f"{_median([r.scale_out_decided for r in runs]):>11} {_median([r.added_ready for r in runs]):>11} "
                f"{statistics.median(r.queued_seconds for r in runs):>10.0f} "
                f"{statistics.median(r.ttft_p50 for r in runs):>8.2f}s "
                f"{statistics.median(r.ttft_p95 for r in runs):>8.2f}s "
                f"{statistics.median(r.replica_hours for r in runs):>9.2f} "
                f"{statistics.median(r.starts for r in runs):>6.0f}"
            )
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
