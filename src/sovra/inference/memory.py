"""How much memory a llama.cpp replica will take, predicted from the model file's own header, and
how much it took, measured.

A replica holds its weights (the GGUF's tensors, memory-mapped: about the file's size), its KV cache
(K and V for every layer, for `contextWindow * slots` tokens, f16 unless `--cache-type-k/v` says
otherwise) and compute buffers (sized by the micro-batch, not the context). The budget is a share of
this machine's memory (`engines.memoryBudgetBytes`); the supervisor admits a load only within it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sovra.errors import EngineError

__all__ = ["ModelFacts", "Prediction", "gib", "machine_memory", "predict", "read_gguf", "resident_bytes"]

_MAGIC = b"GGUF"
# GGUF value types → struct format (8: string, 9: array are read apart).
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_CACHE_BYTES = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32, "q5_1": 24 / 32, "q5_0": 22 / 32,
                "q4_1": 20 / 32, "q4_0": 18 / 32, "iq4_nl": 18 / 32}  # fmt: skip
MICRO_BATCH = 512  # llama-server's default --ubatch-size
RUNTIME_BASE = 16 * 1024 * 1024  # the process itself, its threads and HTTP server


@dataclass(frozen=True)
class ModelFacts:
    """What the header says about the model's shape."""

    architecture: str
    layers: int
    embedding: int
    heads: int
    heads_kv: int
    feed_forward: int
    vocabulary: int
    file_bytes: int
    key_length: int | None = None  # per head, where the model says (else embedding / heads)
    value_length: int | None = None


@dataclass(frozen=True)
class Prediction:
    weights: int
    kv_cache: int
    compute: int

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.compute


def read_gguf(path: Path) -> ModelFacts:
    """The model's shape from its GGUF header (the metadata only: tensors are not read)."""
    with path.open("rb") as file:
        if file.read(4) != _MAGIC:
            raise EngineError(f"{path}: not a GGUF file")
        version, _tensors, count = struct.unpack("<IQQ", file.read(20))
        if version < 2:
            raise EngineError(f"{path}: GGUF version {version} is too old")
        meta = {_string(file): _value(file, struct.unpack("<I", file.read(4))[0]) for _ in range(count)}
    arch = str(meta.get("general.architecture", ""))

    def number(key: str, default: int | None = None) -> int:
        value = meta.get(f"{arch}.{key}", default)
        if isinstance(value, list):  # some models give a count per layer: the largest bounds memory
            value = max(value)
        if not isinstance(value, int | float):
            raise EngineError(f"{path}: the header lacks {arch}.{key}")
        return int(value)

    tokens = meta.get("tokenizer.ggml.tokens")
    heads = number("attention.head_count")
    return ModelFacts(
        architecture=arch,
        layers=number("block_count"),
        embedding=number("embedding_length"),
        heads=heads,
        heads_kv=number("attention.head_count_kv", heads),
        feed_forward=number("feed_forward_length", 0),
        vocabulary=number("vocab_size", len(tokens) if isinstance(tokens, list) else 0),
        file_bytes=path.stat().st_size,
        key_length=meta.get(f"{arch}.attention.key_length"),  # type: ignore[arg-type]
        value_length=meta.get(f"{arch}.attention.value_length"),  # type: ignore[arg-type]
    )


def _string(file: BinaryIO) -> str:
    (length,) = struct.unpack("<Q", file.read(8))
    return file.read(length).decode("utf-8", "replace")


def _value(file: BinaryIO, kind: int) -> object:
    if kind == 8:
        return _string(file)
    if kind == 9:
        item, length = struct.unpack("<IQ", file.read(12))
        if item in _SCALARS:  # read at once: vocabularies have ~10^5 entries
            size = struct.calcsize(_SCALARS[item])
            return list(struct.unpack(f"<{length}{_SCALARS[item]}", file.read(size * length)))
        return [_value(file, item) for _ in range(length)]
    if kind not in _SCALARS:
        raise EngineError(f"unknown GGUF value type {kind}")
    fmt = "<" + _SCALARS[kind]
    return struct.unpack(fmt, file.read(struct.calcsize(fmt)))[0]


def predict(facts: ModelFacts, context_tokens: int, cache_type: str = "f16") -> Prediction:
    """A llama-server replica holding `context_tokens` of KV cache in all (contextWindow * slots)."""
    per_head = facts.embedding // max(facts.heads, 1)
    key = (facts.key_length or per_head) * facts.heads_kv
    value = (facts.value_length or per_head) * facts.heads_kv
    element = _CACHE_BYTES.get(cache_type, 2.0)
    kv_cache = int(facts.layers * context_tokens * (key + value) * element)
    # Activations of one micro-batch (residual stream, attention and feed-forward intermediates),
    # and the logits of the slots decoding at once.
    compute = MICRO_BATCH * (12 * facts.embedding + 2 * facts.feed_forward) * 4 + RUNTIME_BASE
    return Prediction(weights=facts.file_bytes, kv_cache=kv_cache, compute=compute)


def resident_bytes(pid: int) -> int | None:
    """A process's resident memory (VmRSS), or None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def machine_memory() -> int:
    """This machine's memory (MemTotal), or that of its cgroup where one limits it."""
    total = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            total = int(line.split()[1]) * 1024
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            total = min(total, int(limit))
    except OSError:
        pass
    return total


def gib(size: float) -> str:
    """A size as people read memory: GiB, two decimals."""
    return f"{size / 2**30:.2f} GiB"
