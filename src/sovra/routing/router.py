"""The router: a request's signals, read once, run through the policy's rules → one decision.

Rules are tried from the highest priority down. `redact` notes which personal data to replace and
goes on; the first `route`, `guard` or `block` whose condition holds decides. Guardrails on
explicit-model requests run the same rules, minus the routing ones.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

from sovra.errors import ConfigError, Problem
from sovra.routing import content
from sovra.routing.classifier import (
    EMBEDDINGS,
    MODELS,
    SENTENCE_ENCODER,
    TOKENIZER,
    Cascade,
    Classifier,
    LinearClassifier,
    SecondOpinion,
)
from sovra.routing.embeddings import StaticEmbeddings
from sovra.routing.encoder import SentenceEncoder
from sovra.routing.policy import Condition, Policy, Rule, Target
from sovra.routing.signals import Classifiers, ExampleDomain, Signals
from sovra.routing.signals.pii import ENTITY_TYPES, STRUCTURED, find_entities, redact
from sovra.spec import Routing, Specialty

__all__ = [
    "SPECIALIST_DOMAINS",
    "Decision",
    "Router",
    "default_policy",
    "sentence_encoder",
    "shipped_classifiers",
]

log = logging.getLogger("sovra.router")


@cache
def shipped_classifiers() -> Classifiers:
    """The classifiers inside the package (trained by `sovra router train`); loaded once."""
    embeddings = StaticEmbeddings.load(MODELS / EMBEDDINGS, MODELS / TOKENIZER)
    long = LinearClassifier.load(MODELS / "domain.npz", embeddings)
    encoder = sentence_encoder(lambda: SentenceEncoder.load(MODELS / SENTENCE_ENCODER, embeddings.tokenizer))
    domain: Classifier = long if encoder is None else Cascade.load(long, MODELS / "domain-short.npz", encoder)
    ngrams = LinearClassifier.load(MODELS / "jailbreak.npz", embeddings)
    jailbreak: Classifier = (
        ngrams if encoder is None else SecondOpinion.load(ngrams, MODELS / "jailbreak-short.npz", encoder)
    )
    return Classifiers(domain, jailbreak, embeddings, encoder)


def sentence_encoder(load: Callable[[], SentenceEncoder]) -> SentenceEncoder | None:
    """The encoder, or None where ONNX Runtime cannot run it (no wheel for this platform, a CPU it
    does not support): the router then reads short prompts as it reads long ones, and says so once."""
    try:
        return load()
    except (ImportError, OSError, RuntimeError) as exc:  # onnxruntime's own errors are RuntimeErrors
        log.warning("sentence encoder unavailable; short prompts are read by n-grams",
                    extra={"reason": str(exc)[:200]})  # fmt: skip
        return None


@dataclass(frozen=True)
class Decision:
    action: Literal["route", "guard", "block", "pass"]  # pass: guardrails found nothing to do
    model: str  # where the request goes ("" when blocked)
    rule: str  # the rule that decided: the route reason
    message: str = ""  # the refusal, when blocked
    redact: frozenset[str] = frozenset()  # PII types to replace before forwarding
    signals: Signals | None = field(default=None, compare=False)
    seconds: float = 0.0

    def apply(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The payload to forward: personal data replaced, if the decision says so."""
        if not self.redact:
            return payload
        return content.rewrite(payload, lambda text: redact(text, find_entities(text, self.redact)))


class Router:
    def __init__(
        self,
        policy: Policy,
        catalog: Mapping[str, Routing | None],
        classifiers: Classifiers | None = None,
        fallback: str | None = None,
    ) -> None:
        """`catalog`: every model the gateway serves, with its routing metadata (None for external
        providers, which only a rule naming them reaches)."""
        self._rules = policy.ordered()
        self._targets = {r.name: _resolve(r, catalog) for r in self._rules if r.target is not None}
        self._fallback = fallback or _default_model(catalog)
        self._classifiers = classifiers or shipped_classifiers()
        self._keywords = {k.name: _keyword_pattern(k.words) for k in policy.keywords}
        self._domains = tuple(ExampleDomain.of(d.name, d.examples, d.threshold) for d in policy.domains)
        self.thresholds = policy.thresholds  # what each signal is compared with (explained by /v1/route)
        self._pii_types = _pii_types(self._rules)

    def signals(self, payload: dict[str, Any]) -> Signals:
        return Signals(
            payload,
            self._classifiers,
            self._keywords,
            self._domains,
            self.thresholds.domain,
            self._pii_types,
        )

    def decide(self, payload: dict[str, Any], explicit_model: str | None = None) -> Decision:
        """Route a request for the virtual model; or, with `explicit_model`, apply guardrails only."""
        started = time.perf_counter()
        signals = self.signals(payload)
        redacting: set[str] = set()
        decision = None
        for rule in self._rules:
            if explicit_model is not None and rule.action in ("route", "guard"):
                continue
            if rule.when is not None and not self._holds(rule.when, signals):
                continue
            if rule.action == "redact":
                redacting |= {e.type for e in signals.pii if e.type in rule.entities}
                continue
            if rule.action == "block":
                decision = Decision("block", "", rule.name, rule.message)
            else:
                decision = Decision(rule.action, self._targets[rule.name], rule.name)
            break
        if decision is None:
            decision = Decision(
                "pass" if explicit_model else "route", explicit_model or self._fallback, "fallback"
            )
        return Decision(
            decision.action, decision.model, decision.rule, decision.message, frozenset(redacting),
            signals, time.perf_counter() - started,
        )  # fmt: skip

    def _holds(self, condition: Condition, signals: Signals) -> bool:
        if condition.all is not None:
            return all(self._holds(c, signals) for c in condition.all)
        if condition.any is not None:
            return any(self._holds(c, signals) for c in condition.any)
        if condition.not_ is not None:
            return not self._holds(condition.not_, signals)
        if condition.domain is not None:
            names = (condition.domain,) if isinstance(condition.domain, str) else condition.domain
            return signals.domain in names
        if condition.jailbreak is not None:
            return signals.jailbreak >= self.thresholds.jailbreak
        if condition.injection is not None:
            return signals.injection is not None
        if condition.pii is not None:
            return any(condition.pii is True or e.type in condition.pii for e in signals.pii)
        if condition.keyword is not None:
            return condition.keyword in signals.keywords
        if condition.tokens_above is not None:
            return signals.tokens > condition.tokens_above
        assert condition.tokens_below is not None
        return signals.tokens < condition.tokens_below


def _keyword_pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + "|".join(re.escape(w) for w in words) + r")\b", re.IGNORECASE)


def _matches(target: Target, routing: Routing | None, name: str) -> bool:
    if target.model is not None:
        return name == target.model
    if routing is None:
        return False
    return (target.tier is None or routing.tier == target.tier) and (
        target.specialty is None or routing.specialty == target.specialty
    )


def _resolve(rule: Rule, catalog: Mapping[str, Routing | None]) -> str:
    assert rule.target is not None
    for name, routing in catalog.items():
        if _matches(rule.target, routing, name):
            return name
    wanted = rule.target.model_dump(exclude_none=True, mode="json")
    raise ConfigError(
        [Problem("router policy", f"rules.{rule.name}.target", f"no model in the catalog matches {wanted}")]
    )


def _default_model(catalog: Mapping[str, Routing | None]) -> str:
    general = [n for n, r in catalog.items() if r is not None and r.specialty == Specialty.GENERAL]
    if general:
        return general[0]
    if not catalog:
        raise ConfigError([Problem("router", "", "there is no model to route to")])
    return next(iter(catalog))


def _pii_types(rules: Sequence[Rule]) -> tuple[str, ...]:
    """The PII types the policy's rules look for (names and addresses cost more than the rest)."""
    wanted: set[str] = set()
    for rule in rules:
        if rule.action == "redact":
            wanted |= set(rule.entities)
        for condition in _conditions(rule.when):
            if condition.pii is True:
                wanted |= set(ENTITY_TYPES)
            elif condition.pii is not None:
                wanted |= set(condition.pii)
    return tuple(t for t in ENTITY_TYPES if t in wanted)


def _conditions(condition: Condition | None) -> Iterator[Condition]:
    if condition is None:
        return
    yield condition
    for inner in (
        *(condition.all or ()),
        *(condition.any or ()),
        *((condition.not_,) if condition.not_ else ()),
    ):
        yield from _conditions(inner)


# The domains the default policy sends to each specialist the catalog has.
SPECIALIST_DOMAINS = {Specialty.CODE: ("code", "computer science"), Specialty.MATH: ("math", "physics")}


def default_policy(catalog: Mapping[str, Routing | None]) -> Policy:
    """What `MoM` does with no policy file: refuse jailbreaks and injections, redact personal data,
    send code and maths to the catalog's specialists where it has them, everything else to a
    generalist."""
    specialties = {r.specialty for r in catalog.values() if r is not None}
    rules: list[dict[str, Any]] = [
        {"name": "block-jailbreak", "priority": 100, "when": {"jailbreak": True}, "action": "block"},
        # An instruction planted in a pasted document or a tool result, which the classifier's score
        # of the whole turn dilutes; its own rule, so the route reason says which one fired.
        {"name": "block-injection", "priority": 100, "when": {"injection": True}, "action": "block"},
        # The structured kinds only: names and addresses are for policies that ask (a question about
        # Ada Lovelace needs her name).
        {
            "name": "redact-pii",
            "priority": 90,
            "when": {"pii": list(STRUCTURED)},
            "action": "redact",
            "entities": list(STRUCTURED),
        },
    ]
    for specialty in (Specialty.CODE, Specialty.MATH):
        if specialty in specialties:
            domains = list(SPECIALIST_DOMAINS[specialty])
            rules.append({"name": specialty.value, "priority": 50, "when": {"domain": domains},
                          "action": "route", "target": {"specialty": specialty.value}})  # fmt: skip
    rules.append(
        {"name": "general", "priority": 0, "action": "route", "target": {"model": _default_model(catalog)}}
    )
    return Policy.model_validate({"rules": rules})
