"""Linear classifiers over a text's features: the form every shipped classifier takes.

`LinearClassifier`: two blocks of features, one weight matrix each: hashed character n-grams
(sparse: the prompt's buckets, one gather of weight rows) and, for a classifier trained with them,
the static embedding of the prompt's meaning (`routing/embeddings.py`: one small dense product).
Then a softmax (or a sigmoid for a two-way classifier). `Cascade`: a short prompt goes instead to
a `Head` over the sentence encoder's vector of it (`routing/encoder.py`), which reads words in
context where a short prompt has too few of them for n-grams. `SecondOpinion`: a short prompt is
also read by such a head, and the higher of the two scores for the label it watches (an attack)
stands. Both heads read one vector per prompt: the encoder's of its first SENTENCE_TOKENS tokens,
computed once, however many classifiers ask. Serving needs numpy, the tokenizer
and ONNX Runtime; training (`routing/train.py`) uses scikit-learn, and the weights it finds are
stored in `.npz` files inside the package, so nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from sovra.errors import SovraError
from sovra.routing.embeddings import StaticEmbeddings
from sovra.routing.encoder import SentenceEncoder
from sovra.routing.features import DIMENSION, hashed_ngrams, normalised

__all__ = [
    "EMBEDDINGS", "MODELS", "SENTENCE_ENCODER", "SENTENCE_TOKENS", "TOKENIZER",
    "Cascade", "Classifier", "Features", "Head", "LinearClassifier", "SecondOpinion",
]  # fmt: skip

MODELS = Path(__file__).parent / "models"  # the shipped classifiers (routing/models/README.md)
EMBEDDINGS, TOKENIZER = "embeddings.npz", "tokenizer.json"  # in MODELS: the static embeddings
SENTENCE_ENCODER = "encoder.onnx"  # in MODELS: the sentence encoder, int8 (routing/export.py)
# How many of a prompt's tokens the sentence encoder reads: its cost grows with them (~0.2 ms a
# token on one core), and a head asks for it only for prompts not much longer than this.
SENTENCE_TOKENS = 32


class Features:
    """One text's features, each computed the first time a classifier reads it (and only once)."""

    def __init__(
        self, text: str, embeddings: StaticEmbeddings | None = None, encoder: SentenceEncoder | None = None
    ) -> None:
        self._text = text
        self._embeddings = embeddings
        self._encoder = encoder

    @cached_property
    def ngrams(self) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.float32]]:
        return normalised(hashed_ngrams(self._text))

    @cached_property
    def tokens(self) -> npt.NDArray[np.int64]:
        """The text's WordPiece ids (the static embeddings' tokenizer, which is the encoder's)."""
        if self._embeddings is None:
            raise SovraError("this classifier reads tokens, and no tokenizer was given")
        return self._embeddings.pieces.ids(self._text)

    @cached_property
    def meaning(self) -> npt.NDArray[np.float32]:
        if self._embeddings is None:
            raise SovraError("this classifier reads static embeddings, and none were given")
        return self._embeddings.embed_ids(self.tokens)

    @cached_property
    def sentence(self) -> npt.NDArray[np.float32]:
        """The sentence encoder's vector of the text's first SENTENCE_TOKENS tokens."""
        if self._encoder is None:
            raise SovraError("this classifier reads the sentence encoder, and none was given")
        return self._encoder.embed(self.tokens[:SENTENCE_TOKENS])


class Classifier(Protocol):
    """What the router asks of a classifier: its labels, and their probabilities for a text."""

    @property
    def labels(self) -> tuple[str, ...]: ...

    def classify(self, features: Features) -> dict[str, float]: ...

    def probabilities(self, text: str) -> dict[str, float]: ...

    def read(self, features: Features) -> tuple[str, dict[str, float]]:
        """Which representation read these features (`POST /v1/route` says), and the probabilities."""
        ...


@dataclass(frozen=True)
class LinearClassifier:
    labels: tuple[str, ...]
    weights: npt.NDArray[np.float32]  # (DIMENSION, classes), or (DIMENSION, 1) for two labels
    bias: npt.NDArray[np.float32]
    dense: npt.NDArray[np.float32]  # (embedding dimensions, classes); no rows: n-grams only
    embeddings: StaticEmbeddings | None = None  # what `dense` reads; needed when it has rows

    @property
    def reads_meaning(self) -> bool:
        return bool(self.dense.shape[0] > 0)

    def probabilities(self, text: str) -> dict[str, float]:
        return self.classify(Features(text, self.embeddings))

    @property
    def representation(self) -> str:
        return "n-grams + static embeddings" if self.reads_meaning else "n-grams"

    def read(self, features: Features) -> tuple[str, dict[str, float]]:
        return self.representation, self.classify(features)

    def classify(self, features: Features) -> dict[str, float]:
        """Probabilities for a text's features (shared by every classifier)."""
        index, values = features.ngrams
        # np.take gathers rows about three times faster than fancy indexing (2,000 tokens: 0.46 -> 0.15 ms).
        scores = values @ np.take(self.weights, index, axis=0) + self.bias
        if self.reads_meaning:
            scores = scores + features.meaning @ self.dense
        return _probabilities(self.labels, scores)

    def save(self, path: Path) -> None:
        # Only the rows training touched are stored: most buckets never see an n-gram.
        rows = np.flatnonzero(np.any(self.weights != 0, axis=1)).astype(np.uint32)
        np.savez_compressed(
            path, labels=np.array(self.labels), rows=rows, weights=self.weights[rows].astype(np.float16),
            bias=self.bias, dense=self.dense.astype(np.float32),
        )  # fmt: skip

    @classmethod
    def load(cls, path: Path, embeddings: StaticEmbeddings | None = None) -> LinearClassifier:
        with np.load(path) as stored:
            weights = np.zeros((DIMENSION, stored["weights"].shape[1]), dtype=np.float32)
            weights[stored["rows"]] = stored["weights"]
            labels = tuple(str(label) for label in stored["labels"])
            dense = stored["dense"] if "dense" in stored else np.zeros((0, weights.shape[1]), np.float32)
            classifier = cls(labels, weights, stored["bias"].astype(np.float32), dense, embeddings)
        if classifier.reads_meaning and (embeddings is None or embeddings.dimensions != dense.shape[0]):
            raise SovraError(
                f"{path}: reads {dense.shape[0]}-dimensional embeddings, and none such were given"
            )
        return classifier


@dataclass(frozen=True)
class Head:
    """A softmax over one dense vector: the sentence encoder's, for `Cascade`."""

    labels: tuple[str, ...]
    weights: npt.NDArray[np.float32]  # (vector dimensions, classes)
    bias: npt.NDArray[np.float32]

    def classify(self, vector: npt.NDArray[np.float32]) -> dict[str, float]:
        return _probabilities(self.labels, vector @ self.weights + self.bias)


@dataclass(frozen=True)
class _WithHead:
    """A linear classifier and a head over the sentence encoder for prompts of at most `max_tokens`
    tokens: what `Cascade` and `SecondOpinion` share; they differ in how the two are combined."""

    long: LinearClassifier
    short: Head
    max_tokens: int
    encoder: SentenceEncoder

    @property
    def labels(self) -> tuple[str, ...]:
        return self.long.labels

    def probabilities(self, text: str) -> dict[str, float]:
        return self.classify(Features(text, self.long.embeddings, self.encoder))

    def classify(self, features: Features) -> dict[str, float]:
        return self.read(features)[1]

    def read(self, features: Features) -> tuple[str, dict[str, float]]:
        raise NotImplementedError


@dataclass(frozen=True)
class Cascade(_WithHead):
    """Prompts of at most `max_tokens` to `short` (over the sentence encoder), the rest to `long`;
    but a short prompt whose answer `long` is sure of (at least `trust_long`: code, a maths word
    problem) keeps it, and pays nothing for the encoder. `long_weight`: how much of `long`'s
    log-probabilities a short prompt's answer takes beside the head's (a geometric blend)."""

    trust_long: float = 0.99  # chosen on validation (models/README.md), as long_weight
    long_weight: float = 0.0

    def read(self, features: Features) -> tuple[str, dict[str, float]]:
        """Which part reads these features, and its probabilities."""
        scores = self.long.classify(features)
        if len(features.tokens) > self.max_tokens or max(scores.values()) >= self.trust_long:
            return self.long.representation, scores
        head = self.short.classify(features.sentence)
        if not self.long_weight:
            return "sentence encoder", head
        return f"sentence encoder + {self.long.representation}", _blend(head, scores, self.long_weight)

    def save_short(self, path: Path) -> None:
        _save_head(path, self.short, self.max_tokens, trust_long=np.float32(self.trust_long),
                   long_weight=np.float32(self.long_weight))  # fmt: skip

    @classmethod
    def load(cls, long: LinearClassifier, short: Path, encoder: SentenceEncoder) -> Cascade:
        head, max_tokens, stored = _load_head(short, long.labels)
        return cls(long, head, max_tokens, encoder, float(stored["trust_long"]), float(stored["long_weight"]))


@dataclass(frozen=True)
class SecondOpinion(_WithHead):
    """A two-way classifier whose `watched` label a head over the sentence encoder may also raise,
    for prompts of at most `max_tokens`: the higher of the two probabilities stands. Short attacks
    have too few words for n-grams; the encoder reads them in context. Training shifts the head's
    bias so that its own threshold falls where the policy's jailbreak threshold is: one threshold
    for both (routing/models/README.md)."""

    watched: str = "attack"

    def read(self, features: Features) -> tuple[str, dict[str, float]]:
        """Which parts read these features, and the probabilities."""
        scores = self.long.classify(features)
        if len(features.tokens) > self.max_tokens:
            return self.long.representation, scores
        second = self.short.classify(features.sentence)[self.watched]
        if second > scores[self.watched]:
            (other,) = (label for label in self.labels if label != self.watched)
            scores = {self.watched: second, other: 1.0 - second}
        return f"{self.long.representation} + sentence encoder", scores

    def save_short(self, path: Path) -> None:
        _save_head(path, self.short, self.max_tokens, watched=np.array(self.watched))

    @classmethod
    def load(cls, long: LinearClassifier, short: Path, encoder: SentenceEncoder) -> SecondOpinion:
        head, max_tokens, stored = _load_head(short, long.labels)
        watched = str(stored["watched"])
        if watched not in long.labels or len(long.labels) != 2:
            raise SovraError(f"{short}: watches {watched!r}, not one of the two labels {long.labels}")
        return cls(long, head, max_tokens, encoder, watched)


def _save_head(path: Path, head: Head, max_tokens: int, **extra: Any) -> None:
    arrays: dict[str, Any] = {"labels": np.array(head.labels), "weights": head.weights, "bias": head.bias,
                              "max_tokens": np.int64(max_tokens), **extra}  # fmt: skip
    np.savez_compressed(path, **arrays)


def _load_head(path: Path, labels: tuple[str, ...]) -> tuple[Head, int, dict[str, npt.NDArray[np.generic]]]:
    """A stored head, how long a prompt it reads, and the rest of what was stored with it."""
    with np.load(path) as stored:
        rest = dict(stored)
    head = Head(tuple(str(label) for label in rest["labels"]), rest["weights"].astype(np.float32),
                rest["bias"].astype(np.float32))  # fmt: skip
    if head.labels != labels:
        raise SovraError(f"{path}: labels {head.labels} differ from the long classifier's {labels}")
    return head, int(rest["max_tokens"]), rest


def _blend(first: dict[str, float], second: dict[str, float], weight: float) -> dict[str, float]:
    """`first` times `second` to the power `weight`, normalised: log-probabilities added."""
    labels = tuple(first)
    logs = np.log(np.array([first[k] for k in labels], np.float32) + np.float32(1e-12))
    logs += np.float32(weight) * np.log(np.array([second[k] for k in labels], np.float32) + np.float32(1e-12))
    return _softmax(labels, logs)


def _softmax(labels: tuple[str, ...], scores: npt.NDArray[np.float32]) -> dict[str, float]:
    exp = np.exp(scores - scores.max())
    return dict(zip(labels, (exp / exp.sum()).tolist(), strict=True))


def _probabilities(labels: tuple[str, ...], scores: npt.NDArray[np.float32]) -> dict[str, float]:
    """A softmax over the scores (a sigmoid of the one logit, for two labels)."""
    if len(labels) == 2:  # one logit: the second label's
        second = float(1.0 / (1.0 + np.exp(-scores[0])))
        return {labels[0]: 1.0 - second, labels[1]: second}
    return _softmax(labels, scores)
