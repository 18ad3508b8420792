"""Text → hashed character n-grams, computed with numpy in a few vectorised passes.

The one feature function of every classifier, at training and at serving time alike (so the two
can never disagree). Character n-grams of the lower-cased UTF-8 bytes, 2 to 5 long, hashed
(FNV-1a, one seed per length) into 2^BITS buckets: robust to typos, code, and any language, and
about 0.1 ms for a 500-token prompt — no tokenizer, no vocabulary file.
"""

from __future__ import annotations

import re

import numpy as np
import numpy.typing as npt

__all__ = ["BITS", "DIMENSION", "NGRAMS", "clipped", "hashed_ngrams", "normalised"]

BITS = 17
DIMENSION = 1 << BITS
NGRAMS = (2, 3, 4, 5)
HEAD_CHARS = 6000  # long prompts are read at both ends: what they ask is at the start or the end
TAIL_CHARS = 2000
_FNV_PRIME = np.uint32(16777619)
_SEEDS = {n: np.uint32(2166136261 ^ (n * 0x9E3779B1 & 0xFFFFFFFF)) for n in NGRAMS}
_SPACES = re.compile(r"\s+")


def clipped(text: str) -> str:
    """What every feature reads of a text: all of it, or its start and end when it is long."""
    if len(text) > HEAD_CHARS + TAIL_CHARS:
        return text[:HEAD_CHARS] + " " + text[-TAIL_CHARS:]
    return text


def _clip(text: str) -> str:
    return " " + _SPACES.sub(" ", clipped(text).lower()).strip() + " "


def hashed_ngrams(text: str) -> npt.NDArray[np.uint32]:
    """The bucket of every n-gram occurrence in `text` (with repeats)."""
    data = np.frombuffer(_clip(text).encode("utf-8", "replace"), dtype=np.uint8).astype(np.uint32)
    parts = []
    with np.errstate(over="ignore"):  # multiplication modulo 2^32 is the point
        for n in NGRAMS:
            count = len(data) - n + 1
            if count <= 0:
                continue
            hashed = np.full(count, _SEEDS[n], dtype=np.uint32)
            for offset in range(n):
                hashed = (hashed ^ data[offset : offset + count]) * _FNV_PRIME
            parts.append(hashed >> np.uint32(32 - BITS))  # the high bits mix best
    if not parts:
        return np.zeros(0, dtype=np.uint32)
    return np.concatenate(parts)


def normalised(buckets: npt.NDArray[np.uint32]) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.float32]]:
    """Distinct buckets and their counts scaled to unit length: a sparse TF vector."""
    if buckets.size == 0:
        return buckets, np.zeros(0, dtype=np.float32)
    index, counts = np.unique(buckets, return_counts=True)
    values = counts.astype(np.float32)
    values /= np.float32(np.sqrt(np.dot(values, values)))
    return index, values
