"""The shared vocabulary of usage: one request's ledger row, and what a tenant's name may be.

At the bottom of the package graph: the gateway fills records, the ledger stores them, metrics
observe them, and none of those need import another to agree on their shape.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

__all__ = ["TENANT", "UNKNOWN_MODEL", "UsageRecord"]

TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")  # also bounds the metrics label
# The requested model of a record when the catalog does not know the name: the client's free text is
# neither stored nor a metrics label (unbounded cardinality).
UNKNOWN_MODEL = "unknown"


@dataclass(frozen=True)
class UsageRecord:
    request_id: str
    at: float  # wall-clock time the request arrived (Unix seconds)
    tenant: str
    key_id: str
    endpoint: str
    requested_model: str
    served_model: str
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    ttft_ms: float | None
    duration_ms: float
    status: int

    def values(self) -> tuple[object, ...]:
        """The row in column order (`dataclasses.astuple` deep-copies: 6 % of a request's CPU)."""
        return _VALUES(self)

    def cleaned(self) -> UsageRecord:
        """The row as it may be stored: every text field printable, valid UTF-8 and bounded."""
        changes: dict[str, Any] = {name: _text(getattr(self, name), n) for name, n in _TEXT_LIMITS.items()}
        if all(changes[name] is getattr(self, name) for name in changes):
            return self
        return replace(self, **changes)

    @classmethod
    def from_values(cls, values: Sequence[object]) -> UsageRecord:
        """A row read back (a journal line), checked and cleaned; ValueError if it is not a row."""
        if not isinstance(values, Sequence) or len(values) != len(_FIELDS):
            raise ValueError(f"expected {len(_FIELDS)} fields")
        data = dict(zip(_FIELDS, values, strict=True))
        try:
            record = cls(
                **{name: str(data[name]) for name in _TEXT_LIMITS},
                at=float(data["at"]),  # type: ignore[arg-type]
                input_tokens=_count(data["input_tokens"]),
                output_tokens=_count(data["output_tokens"]),
                cached_tokens=_count(data["cached_tokens"]),
                ttft_ms=None if data["ttft_ms"] is None else float(data["ttft_ms"]),  # type: ignore[arg-type]
                duration_ms=float(data["duration_ms"]),  # type: ignore[arg-type]
                status=_count(data["status"]),
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not a usage row: {exc}") from exc
        return record.cleaned()


_FIELDS = tuple(f.name for f in fields(UsageRecord))
_VALUES = operator.attrgetter(*_FIELDS)
# Longest text stored per field: what is longer is a client's invention, not worth a database's space.
_TEXT_LIMITS = {
    "request_id": 64, "tenant": 128, "key_id": 64, "endpoint": 64,
    "requested_model": 256, "served_model": 256,
}  # fmt: skip
_UNSTORABLE = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")  # control characters, NUL, lone surrogates


def _text(value: str, limit: int) -> str:
    bounded = value[:limit]
    return _UNSTORABLE.sub("?", bounded) if _UNSTORABLE.search(bounded) else bounded


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{value!r} is not a count")
    return value
