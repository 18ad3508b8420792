"""The key that prefix affinity hashes: the start of the prompt, whatever the request's shape.

Requests that begin alike — the same system prompt and first turn of an agent's conversation, the
same file for IDE autocomplete — get the same key, and so the replica whose KV cache holds it.
Where the text is in each shape is `routing.content`'s to know.
"""

from __future__ import annotations

from typing import Any

from sovra.routing.content import leading_text

__all__ = ["PREFIX_CHARS", "prompt_prefix"]

PREFIX_CHARS = 512


def prompt_prefix(payload: dict[str, Any]) -> bytes | None:
    text = leading_text(payload, PREFIX_CHARS)
    return text[:PREFIX_CHARS].encode() if text else None
