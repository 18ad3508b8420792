"""Memory predicted from a GGUF header, and the budget the supervisor keeps: eviction of the least
recently used idle replica, refusal of what cannot fit (engines faked; the real one at the end)."""

import asyncio
import struct
import time
from pathlib import Path

import pytest

from sovra.errors import EngineError
from sovra.inference.drivers import Launch
from sovra.inference.memory import machine_memory, predict, read_gguf, resident_bytes
from sovra.inference.supervisor import Activity, ServicePlan, Supervisor
from tests.inference.fakes import FakeLauncher, FakeProber

pytestmark = pytest.mark.anyio


def gguf(path: Path, meta: dict[str, object]) -> Path:
    """A GGUF v3 file with this metadata and no tensors (strings, u32, f32 and arrays)."""

    def string(text: str) -> bytes:
        data = text.encode()
        return struct.pack("<Q", len(data)) + data

    def value(v: object) -> bytes:
        if isinstance(v, str):
            return struct.pack("<I", 8) + string(v)
        if isinstance(v, float):
            return struct.pack("<If", 6, v)
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            return struct.pack("<IIQ", 9, 8, len(v)) + b"".join(string(x) for x in v)
        if isinstance(v, list):
            return struct.pack("<IIQ", 9, 4, len(v)) + struct.pack(f"<{len(v)}I", *v)
        assert isinstance(v, int)
        return struct.pack("<II", 4, v)

    body = b"".join(string(k) + value(v) for k, v in meta.items())
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, len(meta)) + body + b"\0" * 1000)
    return path


SMALL = {
    "general.architecture": "llama", "llama.block_count": 30, "llama.embedding_length": 576,
    "llama.attention.head_count": 9, "llama.attention.head_count_kv": 3, "llama.feed_forward_length": 1536,
    "llama.rope.freq_base": 100000.0, "tokenizer.ggml.tokens": ["a", "b", "c"],
}  # fmt: skip


def test_the_header_gives_the_shape_and_the_kv_cache_follows_it(tmp_path: Path) -> None:
    facts = read_gguf(gguf(tmp_path / "m.gguf", SMALL))
    assert (facts.layers, facts.embedding, facts.heads, facts.heads_kv, facts.vocabulary) == (
        30,
        576,
        9,
        3,
        3,
    )
    small, large = predict(facts, 2048), predict(facts, 16384)
    # K and V, 30 layers, 3 KV heads of 64, f16: 23,040 bytes a token.
    assert small.kv_cache == 2048 * 23_040 and large.kv_cache == 8 * small.kv_cache
    assert small.weights == facts.file_bytes and small.compute == large.compute  # not the context's
    assert predict(facts, 2048, "q8_0").kv_cache < small.kv_cache * 0.6
    per_layer = read_gguf(gguf(tmp_path / "p.gguf", {**SMALL, "llama.attention.head_count_kv": [3, 1, 3]}))
    assert per_layer.heads_kv == 3  # a count per layer: the largest bounds memory


def test_what_is_not_a_model_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.gguf").write_bytes(b"not a model")
    with pytest.raises(EngineError, match="not a GGUF file"):
        read_gguf(tmp_path / "x.gguf")
    with pytest.raises(EngineError, match=r"lacks llama\.attention\.head_count"):
        read_gguf(gguf(tmp_path / "y.gguf", {"general.architecture": "llama"}))


def test_this_machine_and_this_process() -> None:
    assert machine_memory() > 2**28
    own = resident_bytes(__import__("os").getpid())
    assert own is not None and own > 2**20
    assert resident_bytes(2**22 + 12345) is None


def launch(port: int) -> Launch:
    return Launch(("llama-server", "--port", str(port)))


class Traffic:
    def __init__(self) -> None:
        self.last: dict[str, float] = {}
        self.busy: set[str] = set()

    def activity(self, service: str) -> Activity:
        return Activity(int(service in self.busy), self.last.get(service, 0.0))


def budgeted(launcher: FakeLauncher, traffic: Traffic, budget: int, *plans: ServicePlan) -> Supervisor:
    return Supervisor(
        plans, startup_timeout=5.0, activity=traffic.activity,
        busy=lambda replica: int(replica.service in traffic.busy), memory_budget=budget,
        launcher=lambda: launcher, prober=lambda: FakeProber(),
    )  # fmt: skip


async def test_a_load_that_does_not_fit_unloads_the_least_recently_used_idle_replica() -> None:
    launcher, traffic = FakeLauncher(), Traffic()
    plans = [ServicePlan(name, 0, launch, idle_unload_seconds=600, memory=40) for name in ("a", "b", "c")]
    engines = budgeted(launcher, traffic, 100, *plans)
    await engines.start()
    try:
        await engines.wait_for_replica("a")
        await engines.wait_for_replica("b")
        traffic.last = {"a": time.monotonic() - 50, "b": time.monotonic() - 10}  # a: longer unused
        await engines.wait_for_replica("c")  # 120 > 100: one must go, the least recently used
        assert not engines.replicas["a"][0].routable and engines.replicas["b"][0].routable
        assert engines.replicas["c"][0].routable
        traffic.busy = {"b", "c"}  # both answering: neither may go
        with pytest.raises(EngineError, match="taken by replicas in use"):
            await engines.wait_for_replica("a")
    finally:
        await engines.stop()


async def test_what_can_never_fit_says_so_and_a_kept_service_is_not_started() -> None:
    launcher, traffic = FakeLauncher(), Traffic()
    kept = ServicePlan("kept", 1, launch, memory=80)
    huge = ServicePlan("huge", 0, launch, idle_unload_seconds=60, memory=500)
    also_kept = ServicePlan("also-kept", 1, launch, memory=40)
    engines = budgeted(launcher, traffic, 100, kept, huge, also_kept)
    await engines.start()
    try:
        assert await engines.wait_ready() == []
        assert len(launcher.started) == 1  # 80 + 40 > 100: the second kept service is not started
        assert "memory budget" in engines.replicas["also-kept"][0].failure
        with pytest.raises(EngineError, match="can never fit") as refused:
            await engines.wait_for_replica("huge")
        assert "0.00 GiB" in str(refused.value) and "engines.memoryBudgetBytes" in str(refused.value)
        described = engines.describe("kept")["memory"]
        assert described == described | {"predicted_bytes": 80, "budget_bytes": 100}  # type: ignore[operator]
    finally:
        await engines.stop()
    await asyncio.sleep(0)


@pytest.mark.engine
@pytest.mark.parametrize("context", [1024, 4096])
async def test_the_prediction_holds_for_the_real_engine(
    llama_server: Path, smollm2: Path, context: int
) -> None:
    """SmolLM2 on the real llama-server with 4 slots: resident memory once ready against the
    prediction (the KV cache is allocated, and touched, at start)."""
    from sovra.inference.drivers import llama_server_argv
    from sovra.inference.process import EngineProcess, Replica
    from sovra.runtime.engines import predicted_memory
    from sovra.spec import load_catalog
    from tests.conftest import CATALOG

    (declared,) = load_catalog(CATALOG).services
    service = declared.model_copy(
        update={"spec": declared.spec.model_copy(
            update={"model": declared.spec.model.model_copy(update={"context_window": context})})}
    )  # fmt: skip
    engine = EngineProcess(
        Replica("smollm2", 0), lambda port: llama_server_argv(service, llama_server, smollm2, port)
    )
    task = asyncio.create_task(engine.run())
    try:
        await asyncio.wait_for(engine.wait_ready(), 120)
        assert engine.pid is not None
        measured = resident_bytes(engine.pid)
    finally:
        await engine.stop()
        await task
    predicted = predicted_memory(service, smollm2).total
    assert measured is not None and abs(measured - predicted) / measured < 0.15, (predicted, measured)
