"""A linear classifier over a text's features: the form every shipped classifier takes.

Two blocks of features, one weight matrix each: hashed character n-grams (sparse: the prompt's
buckets, one gather of weight rows) and, for a classifier trained with them, the static embedding
of the prompt's meaning (`routing/embeddings.py`: one small dense product). Then a softmax (or a
sigmoid for a two-way classifier). Serving needs numpy and the tokenizer alone; training
(`routing/train.py`) uses scikit-learn, and the weights it finds are stored in an `.npz` file inside
the package, so nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import numpy.typing as npt

from sovra.errors import SovraError
from sovra.routing.embeddings import StaticEmbeddings
from sovra.routing.features import DIMENSION, hashed_ngrams, normalised

__all__ = ["EMBEDDINGS", "MODELS", "TOKENIZER", "Features", "LinearClassifier"]

MODELS = Path(__file__).parent / "models"  # the shipped classifiers (routing/models/README.md)
EMBEDDINGS, TOKENIZER = "embeddings.npz", "tokenizer.json"  # in MODELS: the static embeddings


class Features:
    """One text's features, each computed the first time a classifier reads it (and only once)."""

    def __init__(self, text: str, embeddings: StaticEmbeddings | None = None) -> None:
        self._text = text
        self._embeddings = embeddings

    @cached_property
    def ngrams(self) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.float32]]:
        return normalised(hashed_ngrams(self._text))

    @cached_property
    def meaning(self) -> npt.NDArray[np.float32]:
        if self._embeddings is None:
            raise SovraError("this classifier reads static embeddings, and none were given")
        return self._embeddings.embed(self._text)


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

    def classify(self, features: Features) -> dict[str, float]:
        """Probabilities for a text's features (shared by every classifier)."""
        index, values = features.ngrams
        scores = values @ self.weights[index] + self.bias
        if self.reads_meaning:
            scores = scores + features.meaning @ self.dense
        if len(self.labels) == 2:  # one logit: the second label's
            second = float(1.0 / (1.0 + np.exp(-scores[0])))
            return {self.labels[0]: 1.0 - second, self.labels[1]: second}
        exp = np.exp(scores - scores.max())
        return dict(zip(self.labels, (exp / exp.sum()).tolist(), strict=True))

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
