"""Text → one dense vector of what it is about: static token embeddings, summed.

Character n-grams see wording; these see meaning ("statute" and "tort" near "law" though they share
no letters). Each WordPiece token has one vector, distilled once at training time from a sentence
encoder (all-MiniLM-L6-v2: each token run through the encoder alone, `routing/distil.py`, the
model2vec approach), reduced by PCA and weighted by how rare the token is (frequent words say
little). A prompt's vector is the sum of its tokens' vectors, scaled to unit length: one tokenizer
pass and one gather, ~0.1 ms for 500 tokens, no encoder at serving time and nothing downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

from sovra.routing.features import clipped

__all__ = ["StaticEmbeddings", "load_tokenizer", "token_ids"]


@dataclass(frozen=True)
class StaticEmbeddings:
    tokenizer: Tokenizer  # the encoder's own WordPiece tokenizer (lower-cases, splits punctuation)
    vectors: npt.NDArray[np.int8]  # (vocabulary, dimensions), each row scaled to ±127
    scales: npt.NDArray[np.float32]  # (vocabulary,): a row's int8 values times its scale

    @property
    def dimensions(self) -> int:
        return int(self.vectors.shape[1])

    def embed(self, text: str) -> npt.NDArray[np.float32]:
        """The text's unit vector (zeros for a text without tokens)."""
        return self.embed_ids(token_ids(self.tokenizer, text))

    def embed_ids(self, ids: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """The unit vector of a text's token ids (`token_ids`)."""
        if ids.size == 0:
            return np.zeros(self.dimensions, dtype=np.float32)
        summed = self.scales[ids] @ self.vectors[ids].astype(np.float32)
        norm = float(np.sqrt(np.dot(summed, summed)))
        return summed / np.float32(norm) if norm > 0 else summed

    @classmethod
    def quantised(cls, tokenizer: Tokenizer, vectors: npt.NDArray[np.float32]) -> StaticEmbeddings:
        """From float vectors: each row stored as int8 with its own scale (a quarter of float32)."""
        scales = np.abs(vectors).max(axis=1) / 127.0
        scales[scales == 0] = 1.0
        rows = np.round(vectors / scales[:, None]).astype(np.int8)
        return cls(tokenizer, rows, scales.astype(np.float32))

    def save(self, vectors: Path, tokenizer: Path) -> None:
        np.savez_compressed(vectors, vectors=self.vectors, scales=self.scales)
        self.tokenizer.save(str(tokenizer))

    @classmethod
    def load(cls, vectors: Path, tokenizer: Path) -> StaticEmbeddings:
        with np.load(vectors) as stored:
            rows, scales = stored["vectors"], stored["scales"]
        return cls(load_tokenizer(tokenizer), rows, scales)


def load_tokenizer(path: Path) -> Tokenizer:
    """The encoder's tokenizer, without the padding and truncation to 128 it has for batches."""
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def token_ids(tokenizer: Tokenizer, text: str) -> npt.NDArray[np.int64]:
    """The tokens of what the features read of `text` (`features.clipped`), without [CLS]/[SEP]."""
    return np.asarray(tokenizer.encode(clipped(text), add_special_tokens=False).ids, dtype=np.int64)
