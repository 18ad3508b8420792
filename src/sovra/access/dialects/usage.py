"""Token usage, read from and written in each API's shape — the one place that knows them.

OpenAI counts cached prompt tokens within `prompt_tokens` (`prompt_tokens_details.cached_tokens`);
Anthropic counts them apart (`input_tokens` + `cache_read_input_tokens` +
`cache_creation_input_tokens`); llama-server's /infill says `tokens_evaluated` / `tokens_predicted`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["TokenUsage"]


def _count(usage: Mapping[str, Any], *names: str) -> int:
    for name in names:
        value = usage.get(name)
        if value:
            return int(value)
    return 0


@dataclass(frozen=True)
class TokenUsage:
    """What one answer used. `input` includes `cached` (OpenAI's way of counting)."""

    input: int = 0
    output: int = 0
    cached: int = 0

    @classmethod
    def from_openai(cls, usage: Mapping[str, Any]) -> TokenUsage:
        """OpenAI's usage object (Anthropic-style names are read too, as some engines send them)."""
        details = usage.get("prompt_tokens_details")
        cached = _count(details, "cached_tokens") if isinstance(details, Mapping) else 0
        return cls(
            _count(usage, "prompt_tokens", "input_tokens"),
            _count(usage, "completion_tokens", "output_tokens"),
            cached,
        )

    @classmethod
    def from_anthropic(cls, usage: Mapping[str, Any]) -> TokenUsage:
        cached = _count(usage, "cache_read_input_tokens")
        written = _count(usage, "cache_creation_input_tokens")
        return cls(_count(usage, "input_tokens") + cached + written, _count(usage, "output_tokens"), cached)

    @classmethod
    def from_infill(cls, result: Mapping[str, Any]) -> TokenUsage:
        return cls(_count(result, "tokens_evaluated"), _count(result, "tokens_predicted"))

    def openai(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.input,
            "completion_tokens": self.output,
            "total_tokens": self.input + self.output,
            "prompt_tokens_details": {"cached_tokens": self.cached},
        }

    def anthropic(self) -> dict[str, int]:
        return {
            "input_tokens": self.input - self.cached,
            "output_tokens": self.output,
            "cache_read_input_tokens": self.cached,
        }

    def responses(self) -> dict[str, Any]:
        """The Responses API's usage: `input_tokens` includes the cached ones, as OpenAI counts."""
        return {
            "input_tokens": self.input,
            "input_tokens_details": {"cached_tokens": self.cached},
            "output_tokens": self.output,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": self.input + self.output,
        }
