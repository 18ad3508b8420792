"""The routing policy: signals → decisions, as an operator writes them in YAML.

    thresholds: {jailbreak: 0.75}
    keywords:  [{name: legal-hold, words: [subpoena, litigation hold]}]
    domains:   [{name: hr, examples: ["How many days of leave do I have left?"], threshold: 0.35}]
    rules:                              # highest priority first; ties keep file order
      - name: no-jailbreaks
        priority: 100
        when: {any: [{jailbreak: true}, {injection: true}]}
        action: block
      - name: scrub-personal-data
        priority: 90
        when: {pii: [EMAIL_ADDRESS, CREDIT_CARD]}
        action: redact                  # not final: the rules below still choose a model
      - name: coding
        when: {any: [{domain: code}, {all: [{domain: computer science}, {not: {tokensBelow: 20}}]}]}
        action: route
        target: {specialty: code}
      - name: everything-else
        action: route
        target: {tier: small}

A condition is one of: `all` / `any` (lists), `not`, `domain` (a name or a list), `jailbreak: true`
(the classifier's score at or above its threshold), `injection: true` (an instruction-override cue in
the user's content: `signals/injection.py`), `pii: true` or a list of entity types, `keyword` (a
keyword list's name), `tokensAbove`, `tokensBelow`. Actions: `route` and `guard` send the request
to `target` (a model by name, or by catalog `routing.tier` / `routing.specialty`); `block` refuses
it; `redact` replaces personal data and goes on to the next rule.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from sovra.errors import ConfigError, Problem
from sovra.routing.signals.pii import ENTITY_TYPES
from sovra.spec import Specialty, Tier, validation_problems

__all__ = ["Condition", "Policy", "Rule", "Target", "load_policy"]

Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class _Policy(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class Condition(_Policy):
    all: tuple[Condition, ...] | None = None
    any: tuple[Condition, ...] | None = None
    not_: Condition | None = Field(default=None, alias="not")
    domain: str | tuple[str, ...] | None = None
    jailbreak: Literal[True] | None = None
    injection: Literal[True] | None = None
    pii: Literal[True] | tuple[str, ...] | None = None
    keyword: str | None = None
    tokens_above: Annotated[int, Field(ge=0)] | None = None
    tokens_below: Annotated[int, Field(ge=1)] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Condition:
        given = [name for name in type(self).model_fields if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"a condition has exactly one key, this one has {len(given)}")
        if isinstance(self.pii, tuple) and (unknown := set(self.pii) - set(ENTITY_TYPES)):
            raise ValueError(f"unknown PII types {sorted(unknown)}; known: {', '.join(ENTITY_TYPES)}")
        return self


class Target(_Policy):
    """A model by name, or the catalog's models with this tier and/or specialty (the first)."""

    model: str | None = None
    tier: Tier | None = None
    specialty: Specialty | None = None

    @model_validator(mode="after")
    def _something(self) -> Target:
        if self.model is None and self.tier is None and self.specialty is None:
            raise ValueError("a target names a model, a tier or a specialty")
        return self


class Rule(_Policy):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")  # also the route reason and a metrics label
    priority: int = 0
    when: Condition | None = None  # none: always
    action: Literal["route", "guard", "block", "redact"]
    target: Target | None = None
    message: str = "This request was refused by the platform's usage policy."  # for block
    entities: tuple[str, ...] = ENTITY_TYPES  # for redact: which PII types

    @model_validator(mode="after")
    def _target_when_routing(self) -> Rule:
        if self.action in ("route", "guard") and self.target is None:
            raise ValueError(f"action {self.action!r} needs a target")
        if self.action in ("block", "redact") and self.target is not None:
            raise ValueError(f"action {self.action!r} takes no target")
        return self


class Keywords(_Policy):
    name: str
    words: tuple[str, ...] = Field(min_length=1)  # whole words or phrases, any case


class CustomDomain(_Policy):
    """A domain defined by example utterances: matched when a prompt is close enough to them."""

    name: str
    examples: tuple[str, ...] = Field(min_length=1)
    threshold: Probability = 0.35  # cosine similarity of hashed n-gram vectors to the closest example


class Thresholds(_Policy):
    # Score at or above which the jailbreak signal is on: the lowest at which, on the held-out rows of
    # the trained sources, ordinary assistant prompts (personas, role-play, writing tasks) are flagged
    # at most 1 % and security requests at most 3 % (0.5 flagged 8.7 % of those; models/README.md).
    jailbreak: Probability = 0.75
    domain: Probability = 0.0  # below this, the domain classifier's answer is "other"


class Policy(_Policy):
    thresholds: Thresholds = Thresholds()
    keywords: tuple[Keywords, ...] = ()
    domains: tuple[CustomDomain, ...] = ()
    rules: tuple[Rule, ...]

    @model_validator(mode="after")
    def _names_resolve(self) -> Policy:
        if not self.rules:  # checked here: a length bound would repeat every bad rule's error
            raise ValueError("a policy needs at least 1 rule")
        keyword_names = {k.name for k in self.keywords}
        for rule in self.rules:
            for condition in _walk(rule.when):
                if condition.keyword is not None and condition.keyword not in keyword_names:
                    raise ValueError(f"rule {rule.name!r} uses undeclared keyword list {condition.keyword!r}")
        names = [r.name for r in self.rules]
        if duplicates := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"rule names must be unique: {duplicates}")
        return self

    def ordered(self) -> tuple[Rule, ...]:
        return tuple(sorted(self.rules, key=lambda r: -r.priority))  # stable: ties keep file order


def _walk(condition: Condition | None) -> list[Condition]:
    if condition is None:
        return []
    children = [*(condition.all or ()), *(condition.any or ())]
    if condition.not_ is not None:
        children.append(condition.not_)
    return [condition, *(c for child in children for c in _walk(child))]


def load_policy(path: Path) -> Policy:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError([Problem(str(path), "", f"cannot read the policy: {exc}")]) from exc
    try:
        return Policy.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(validation_problems(str(path), exc)) from exc
