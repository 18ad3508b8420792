"""Which upstream dialect a call needs: chosen once per request, from the upstream's API and the call."""

from __future__ import annotations

from typing import Literal

from sovra.access.dialects.anthropic_provider import ANTHROPIC_UPSTREAM
from sovra.access.dialects.base import Call, UpstreamDialect
from sovra.access.dialects.infill import INFILL_UPSTREAM, wants_infill
from sovra.access.dialects.openai import OPENAI_UPSTREAM

__all__ = ["upstream_dialect"]


def upstream_dialect(api: Literal["openai", "anthropic"], call: Call) -> UpstreamDialect:
    if api == "anthropic":
        return ANTHROPIC_UPSTREAM
    if call.path == "/v1/completions" and wants_infill(call.payload):
        return INFILL_UPSTREAM  # llama-server's OpenAI endpoint would drop `suffix`
    return OPENAI_UPSTREAM
