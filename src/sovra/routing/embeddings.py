"""Text → one dense vector of what it is about: static token embeddings, summed.

Character n-grams see wording; these see meaning ("statute" and "tort" near "law" though they share
no letters). Each WordPiece token has one vector, distilled once at training time from a sentence
encoder (all-MiniLM-L6-v2: each token run through the encoder alone, `routing/distil.py`, the
model2vec approach), reduced by PCA and weighted by how rare the token is (frequent words say
little). A prompt's vector is the sum of its tokens' vectors, scaled to unit length: one tokenizer
pass and one gather, ~0.1 ms for 500 tokens, no encoder at serving time and nothing downloaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

from sovra.routing.features import clipped

__all__ = ["StaticEmbeddings", "WordPieces", "load_tokenizer"]


@dataclass(frozen=True)
class StaticEmbeddings:
    tokenizer: Tokenizer  # the encoder's own WordPiece tokenizer (lower-cases, splits punctuation)
    vectors: npt.NDArray[np.int8]  # (vocabulary, dimensions), each row scaled to ±127
    scales: npt.NDArray[np.float32]  # (vocabulary,): a row's int8 values times its scale
    pieces: WordPieces = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pieces", WordPieces(self.tokenizer))

    @property
    def dimensions(self) -> int:
        return int(self.vectors.shape[1])

    def embed(self, text: str) -> npt.NDArray[np.float32]:
        """The text's unit vector (zeros for a text without tokens)."""
        return self.embed_ids(self.pieces.ids(text))

    def embed_ids(self, ids: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """The unit vector of a text's token ids (`WordPieces.ids`)."""
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


# Characters Python splits words at and the BERT normaliser deletes instead (control characters
# that str.split() counts as white space): deleted first, so the words are the ones BERT sees.
_JOINED = re.compile(r"[\x0b\x0c\x1c-\x1f\x85]")


class WordPieces:
    """The tokenizer's ids for what the features read of a text (`features.clipped`), without
    [CLS]/[SEP], one white-space-separated word at a time, each word's ids remembered.

    BERT's normaliser and pre-tokenizer never join two words across white space, so a text's ids
    are its words' ids in order: the tokenizer's own output, which `tests/routing/test_embeddings.py`
    checks on odd characters and on the project's own prompts (and all 56,140 training texts gave the
    same ids when it was written). Why: the tokenizer costs about 1 µs a character, 7 to 9 ms for
    2,000 tokens on a slow core (a third of a decision), and the words of real prompts repeat. Words
    not seen before are tokenized in one call; the memory is emptied when it holds `remembered`
    words (about 11 MB, measured), so it stays bounded."""

    def __init__(self, tokenizer: Tokenizer, remembered: int = 50_000) -> None:
        self._tokenizer = tokenizer
        self._remembered = remembered
        self._known: dict[str, tuple[int, ...]] = {}

    def ids(self, text: str) -> npt.NDArray[np.int64]:
        words = _JOINED.sub("", clipped(text)).split()
        known = self._known  # another thread may start a new memory meanwhile; this one stays valid
        pieces = list(map(known.get, words))
        if None in pieces:
            learned = self._split([w for w, p in zip(words, pieces, strict=True) if p is None])
            if len(known) + len(learned) > self._remembered:
                known = self._known = {}
            known.update(learned)
            pieces = [learned[w] if p is None else p for w, p in zip(words, pieces, strict=True)]
        return np.fromiter(chain.from_iterable(pieces), dtype=np.int64)  # type: ignore[arg-type]

    def _split(self, words: list[str]) -> dict[str, tuple[int, ...]]:
        """Each distinct word's ids, from one call to the tokenizer: the words joined by spaces, each
        token given to the word its first character falls in."""
        distinct = list(dict.fromkeys(words))
        encoding = self._tokenizer.encode(" ".join(distinct), add_special_tokens=False)
        starts = np.cumsum([0] + [len(word) + 1 for word in distinct[:-1]])
        owners = np.searchsorted(starts, [start for start, _ in encoding.offsets], side="right") - 1
        split: dict[str, list[int]] = {word: [] for word in distinct}
        for owner, token in zip(owners.tolist(), encoding.ids, strict=True):
            split[distinct[owner]].append(token)
        return {word: tuple(ids) for word, ids in split.items()}
