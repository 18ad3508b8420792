"""What the router reads from a prompt: domain, jailbreak score, injection cues, personal data,
keywords, length.

`Signals` computes each one the first time a rule asks for it, so a policy that never looks at the
domain never runs the domain classifier.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from sovra.routing import content
from sovra.routing.classifier import Classifier, Features
from sovra.routing.embeddings import StaticEmbeddings
from sovra.routing.encoder import SentenceEncoder
from sovra.routing.features import DIMENSION, hashed_ngrams, normalised
from sovra.routing.signals.injection import find_injection
from sovra.routing.signals.pii import ENTITY_TYPES, Entity, find_entities

__all__ = ["Classifiers", "ExampleDomain", "Signals"]


@dataclass(frozen=True)
class ExampleDomain:
    """An operator's domain, given by example utterances (compared as hashed n-gram vectors)."""

    name: str
    vectors: tuple[tuple[npt.NDArray[np.uint32], npt.NDArray[np.float32]], ...]
    threshold: float

    @classmethod
    def of(cls, name: str, examples: tuple[str, ...], threshold: float) -> ExampleDomain:
        return cls(name, tuple(normalised(hashed_ngrams(e)) for e in examples), threshold)

    def similarity(self, dense: npt.NDArray[np.float32]) -> float:
        return max(float(values @ dense[index]) for index, values in self.vectors)


@dataclass(frozen=True)
class Classifiers:
    domain: Classifier
    jailbreak: Classifier
    embeddings: StaticEmbeddings | None = None  # what the classifiers that read meaning read
    encoder: SentenceEncoder | None = None  # what a cascade reads of a short prompt
    attack_label: str = "attack"


class Signals:
    def __init__(
        self,
        payload: dict[str, Any],
        classifiers: Classifiers,
        keywords: dict[str, re.Pattern[str]],
        domains: tuple[ExampleDomain, ...] = (),
        domain_threshold: float = 0.0,
        pii_types: tuple[str, ...] = ENTITY_TYPES,
    ) -> None:
        self._payload = payload
        self._pii_types = pii_types
        self._classifiers = classifiers
        self._keywords = keywords
        self._domains = domains
        self._domain_threshold = domain_threshold

    @cached_property
    def text(self) -> str:
        """The user's content: what the classifiers, keywords and length read."""
        return content.user_text(self._payload)

    @cached_property
    def full_text(self) -> str:
        """Every message: where personal data is looked for (read only if a rule asks)."""
        return content.all_text(self._payload)

    @cached_property
    def features(self) -> Features:
        """The user content's features, computed once for every classifier."""
        return Features(self.text, self._classifiers.embeddings, self._classifiers.encoder)

    @cached_property
    def domain_scores(self) -> dict[str, float]:
        """The classifier's probability per domain, then every example domain's similarity."""
        scores = dict(self._domain_read[1])
        if self._domains:
            index, values = self.features.ngrams
            dense = np.zeros(DIMENSION, dtype=np.float32)
            dense[index] = values
            scores |= {d.name: d.similarity(dense) for d in self._domains}
        return scores

    @cached_property
    def _domain_read(self) -> tuple[str, dict[str, float]]:
        return self._classifiers.domain.read(self.features)

    @property
    def domain_reader(self) -> str:
        """What the domain classifier read of this prompt (the sentence encoder for a short one)."""
        return self._domain_read[0]

    @cached_property
    def domain(self) -> str:
        """An example domain whose threshold is met wins; else the classifier's top domain."""
        scores = self.domain_scores
        custom = [(scores[d.name], d.name) for d in self._domains if scores[d.name] >= d.threshold]
        if custom:
            return max(custom)[1]
        classified = {k: v for k, v in scores.items() if k in self._classifiers.domain.labels}
        best = max(classified, key=classified.__getitem__)
        return best if classified[best] >= self._domain_threshold else "other"

    @cached_property
    def _jailbreak_read(self) -> tuple[str, dict[str, float]]:
        return self._classifiers.jailbreak.read(self.features)

    @cached_property
    def jailbreak(self) -> float:
        return self._jailbreak_read[1][self._classifiers.attack_label]

    @property
    def jailbreak_reader(self) -> str:
        """What the jailbreak classifier read (n-grams; for a short prompt, the sentence encoder too)."""
        return self._jailbreak_read[0]

    @cached_property
    def injection(self) -> str | None:
        """The instruction-override cue found in the user's content, by name; None when none is."""
        return find_injection(self.text)

    @cached_property
    def pii(self) -> list[Entity]:
        return find_entities(self.full_text, self._pii_types)

    @cached_property
    def keywords(self) -> frozenset[str]:
        return frozenset(name for name, pattern in self._keywords.items() if pattern.search(self.text))

    @cached_property
    def tokens(self) -> int:
        return len(self.text) // 4 + 1  # the usual estimate; a tokenizer would cost more than routing
