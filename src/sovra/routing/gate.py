"""The router as the gateway uses it: which requests it sees, and what it tells the gateway.

A request for a virtual model (`MoM`) is routed; an explicit-model request from a tenant with
guardrails passes the policy's block and redact rules; every other request pays nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sovra.routing.policy import Thresholds
from sovra.routing.router import Decision, Router

__all__ = ["RoutingGate"]


@dataclass(frozen=True)
class RoutingGate:
    router: Router
    virtual_models: frozenset[str]
    guarded_tenants: frozenset[str] = frozenset()  # "*": every tenant

    def is_virtual(self, model: str) -> bool:
        return model in self.virtual_models

    def decide(self, model: str, tenant: str, payload: dict[str, Any]) -> Decision | None:
        """The decision for this request, or None when the router has nothing to do with it."""
        if model in self.virtual_models:
            return self.router.decide(payload)
        if "*" in self.guarded_tenants or tenant in self.guarded_tenants:
            return self.router.decide(payload, explicit_model=model)
        return None


def explain(decision: Decision, thresholds: Thresholds) -> dict[str, Any]:
    """`POST /v1/route`'s answer: the decision, the rule that made it, and each signal with the
    threshold it is compared with (no prompt text), so an operator can see why a prompt was
    blocked and move `router.policy.thresholds` without retraining."""
    signals = decision.signals
    assert signals is not None
    scores: Mapping[str, float] = signals.domain_scores
    top = sorted(scores.items(), key=lambda item: -item[1])[:3]
    return {
        "action": decision.action,
        "model": decision.model or None,
        "rule": decision.rule,
        "redact": sorted(decision.redact),
        "signals": {
            "domain": signals.domain,
            "domain_scores": {name: round(score, 4) for name, score in top},
            "domain_read_by": signals.domain_reader,
            "jailbreak": round(signals.jailbreak, 4),
            "jailbreak_on": signals.jailbreak >= thresholds.jailbreak,
            "jailbreak_read_by": signals.jailbreak_reader,
            "injection": signals.injection,  # the cue's name (signals/injection.py), or None
            "pii": [{"type": e.type, "start": e.start, "end": e.end} for e in signals.pii],
            "keywords": sorted(signals.keywords),
            "tokens": signals.tokens,
        },
        "thresholds": {"jailbreak": thresholds.jailbreak, "domain": thresholds.domain},
        "ms": round(decision.seconds * 1000, 3),
    }
