"""A linear classifier over hashed character n-grams: the form every shipped classifier takes.

Serving needs numpy alone: the prompt's n-gram buckets, one gather of weight rows, a sum, a softmax
(or a sigmoid for a two-way classifier). Training (`routing/train.py`) uses scikit-learn; the
weights it finds are stored in an `.npz` file inside the package, so nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from sovra.routing.features import DIMENSION, hashed_ngrams, normalised

__all__ = ["MODELS", "LinearClassifier"]

MODELS = Path(__file__).parent / "models"  # the shipped classifiers (routing/models/README.md)


@dataclass(frozen=True)
class LinearClassifier:
    labels: tuple[str, ...]
    weights: npt.NDArray[np.float32]  # (DIMENSION, classes), or (DIMENSION, 1) for two labels
    bias: npt.NDArray[np.float32]

    def probabilities(self, text: str) -> dict[str, float]:
        return self.classify(*normalised(hashed_ngrams(text)))

    def classify(self, index: npt.NDArray[np.uint32], values: npt.NDArray[np.float32]) -> dict[str, float]:
        """Probabilities for a text's `normalised` features (shared by every classifier)."""
        scores = values @ self.weights[index] + self.bias
        if len(self.labels) == 2:  # one logit: the second label's
            second = float(1.0 / (1.0 + np.exp(-scores[0])))
            return {self.labels[0]: 1.0 - second, self.labels[1]: second}
        exp = np.exp(scores - scores.max())
        return dict(zip(self.labels, (exp / exp.sum()).tolist(), strict=True))

    def save(self, path: Path) -> None:
        # Only the rows training touched are stored: most buckets never see an n-gram.
        rows = np.flatnonzero(np.any(self.weights != 0, axis=1)).astype(np.uint32)
        np.savez_compressed(
            path, labels=np.array(self.labels), rows=rows,
            weights=self.weights[rows].astype(np.float16), bias=self.bias,
        )  # fmt: skip

    @classmethod
    def load(cls, path: Path) -> LinearClassifier:
        with np.load(path) as stored:
            weights = np.zeros((DIMENSION, stored["weights"].shape[1]), dtype=np.float32)
            weights[stored["rows"]] = stored["weights"]
            labels = tuple(str(label) for label in stored["labels"])
            return cls(labels, weights, stored["bias"].astype(np.float32))
