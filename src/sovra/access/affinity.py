"""The key that prefix affinity hashes: the start of the prompt, whatever the request's shape.

Requests that begin alike — the same system prompt and first turn of an agent's conversation, the
same file for IDE autocomplete — get the same key, and so the replica whose KV cache holds it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PREFIX_CHARS", "prompt_prefix"]

PREFIX_CHARS = 512


def prompt_prefix(payload: dict[str, Any]) -> bytes | None:
    text = _leading_text(payload)
    return text[:PREFIX_CHARS].encode() if text else None


def _leading_text(payload: dict[str, Any]) -> str:
    parts: list[str] = []
    system = payload.get("system")  # Anthropic puts it beside the messages
    if system:
        parts.append(str(system))
    messages = payload.get("messages")
    if isinstance(messages, list):
        for message in messages:
            parts.append(str(message.get("content")) if isinstance(message, dict) else "")
            if sum(map(len, parts)) >= PREFIX_CHARS:
                break
    prompt = payload.get("prompt")
    if isinstance(prompt, str):
        parts.append(prompt)
    return "".join(parts)
