"""Linear classifiers over a text's features: the form every shipped classifier takes.

`LinearClassifier`: two blocks of features, one weight matrix each: hashed character n-grams
(sparse: the prompt's buckets, one gather of weight rows) and, for a classifier trained with them,
the static embedding of the prompt's meaning (`routing/embeddings.py`: one small dense product).
Then a softmax (or a sigmoid for a two-way classifier). `Cascade`: a short prompt goes instead to
a `Head` over the sentence encoder's vector of it (`routing/encoder.py`), which reads words in
context where a short prompt has too few of them for n-grams. Serving needs numpy, the tokenizer
and ONNX Runtime; training (`routing/train.py`) uses scikit-learn, and the weights it finds are
stored in `.npz` files inside the package, so nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from sovra.errors import SovraError
from sovra.routing.embeddings import StaticEmbeddings
from sovra.routing.encoder import SentenceEncoder
from sovra.routing.features import DIMENSION, hashed_ngrams, normalised

__all__ = [
    "EMBEDDINGS", "MODELS", "SENTENCE_ENCODER", "TOKENIZER",
    "Cascade", "Classifier", "Features", "Head", "LinearClassifier",
]  # fmt: skip

MODELS = Path(__file__).parent / "models"  # the shipped classifiers (routing/models/README.md)
EMBEDDINGS, TOKENIZER = "embeddings.npz", "tokenizer.json"  # in MODELS: the static embeddings
SENTENCE_ENCODER = "encoder.onnx"  # in MODELS: the sentence encoder, int8 (routing/export.py)


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
        """The sentence encoder's vector of the text's first tokens."""
        if self._encoder is None:
            raise SovraError("this classifier reads the sentence encoder, and none was given")
        return self._encoder.embed(self.tokens)


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
        scores = values @ self.weights[index] + self.bias
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
class Cascade:
    """Prompts of at most `max_tokens` to `short` (over the sentence encoder), the rest to `long`;
    but a short prompt whose answer `long` is sure of (at least `trust_long`: code, a maths word
    problem) keeps it, and pays nothing for the encoder."""

    long: LinearClassifier
    short: Head
    max_tokens: int
    encoder: SentenceEncoder
    trust_long: float = 0.99  # chosen on validation (models/README.md)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.long.labels

    def probabilities(self, text: str) -> dict[str, float]:
        return self.classify(Features(text, self.long.embeddings, self.encoder))

    def classify(self, features: Features) -> dict[str, float]:
        return self.read(features)[1]

    def read(self, features: Features) -> tuple[str, dict[str, float]]:
        """Which part reads these features, and its probabilities."""
        scores = self.long.classify(features)
        if len(features.tokens) > self.max_tokens or max(scores.values()) >= self.trust_long:
            return self.long.representation, scores
        return "sentence encoder", self.short.classify(features.sentence)

    def save_short(self, path: Path) -> None:
        np.savez_compressed(path, labels=np.array(self.short.labels), weights=self.short.weights,
                            bias=self.short.bias, max_tokens=np.int64(self.max_tokens),
                            trust_long=np.float32(self.trust_long))  # fmt: skip

    @classmethod
    def load(cls, long: LinearClassifier, short: Path, encoder: SentenceEncoder) -> Cascade:
        with np.load(short) as stored:
            head = Head(tuple(str(label) for label in stored["labels"]), stored["weights"].astype(np.float32),
                        stored["bias"].astype(np.float32))  # fmt: skip
            max_tokens, trust_long = int(stored["max_tokens"]), float(stored["trust_long"])
        if head.labels != long.labels:
            raise SovraError(f"{short}: labels {head.labels} differ from the long classifier's {long.labels}")
        return cls(long, head, max_tokens, encoder, trust_long)


def _probabilities(labels: tuple[str, ...], scores: npt.NDArray[np.float32]) -> dict[str, float]:
    """A softmax over the scores (a sigmoid of the one logit, for two labels)."""
    if len(labels) == 2:  # one logit: the second label's
        second = float(1.0 / (1.0 + np.exp(-scores[0])))
        return {labels[0]: 1.0 - second, labels[1]: second}
    exp = np.exp(scores - scores.max())
    return dict(zip(labels, (exp / exp.sum()).tolist(), strict=True))
