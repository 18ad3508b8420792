"""Where the text of a request is, in the OpenAI and Anthropic shapes: read it, or rewrite it.

The router classifies what this request brings in: the last user turn with the tool results that
came back since the assistant last spoke (an OpenAI `tool` message, an Anthropic `tool_result`
block — where an instruction planted in a web page or a file arrives), and the user turn before
when the last is short ("and in Python?"). Personal data is looked for, and redacted, in every
message, since clients send the whole conversation again on each turn.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["all_text", "leading_text", "rewrite", "user_text"]

SHORT_TURN = 200  # characters: a last turn shorter than this is read with the user turn before it


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    if not isinstance(content, list):
        return []
    texts = []
    for part in content:
        if isinstance(part, dict) and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif isinstance(part, dict) and part.get("type") == "tool_result":  # Anthropic: a tool's output
            texts += _texts(part.get("content"))
    return texts


def user_text(payload: dict[str, Any]) -> str:
    """The user's content, as the router classifies it."""
    if isinstance(payload.get("prompt"), str):  # /v1/completions
        return str(payload["prompt"])
    messages = payload.get("messages")
    if not isinstance(messages, list):
        return ""
    turns = [
        "\n".join(_texts(m.get("content")))
        for m in messages
        if isinstance(m, dict) and m.get("role") == "user"
    ]
    arrived = _since_the_assistant(messages)
    if not turns:
        return arrived
    last = turns[-1]
    if len(last) < SHORT_TURN and len(turns) > 1:
        last = turns[-2] + "\n" + last
    return f"{last}\n{arrived}" if arrived else last


def _since_the_assistant(messages: list[Any]) -> str:
    """OpenAI `tool` messages sent after the assistant's last message: what the tools it called
    returned, for the model to read now (Anthropic's come inside the user turn)."""
    arrived: list[str] = []
    for message in reversed(messages):
        if not isinstance(message, dict) or message.get("role") == "assistant":
            break
        if message.get("role") == "tool":
            arrived[:0] = _texts(message.get("content"))
    return "\n".join(arrived)


def leading_text(payload: dict[str, Any], enough: int) -> str:
    """The start of what the model reads — the system prompt, the messages in order, a completion's
    prompt — walked only until `enough` characters are found."""
    parts: list[str] = []
    size = 0
    contents = [payload.get("system")]  # Anthropic puts it beside the messages
    messages = payload.get("messages")
    if isinstance(messages, list):
        contents += [m.get("content") for m in messages if isinstance(m, dict)]
    contents.append(payload.get("prompt"))
    for content in contents:
        for text in _texts(content):
            parts.append(text)
            size += len(text)
        if size >= enough:
            break
    return "".join(parts)


def all_text(payload: dict[str, Any]) -> str:
    """Every piece of text the request would send the model."""
    pieces: list[str] = []

    def collect(text: str) -> str:
        pieces.append(text)
        return text

    rewrite(payload, collect)
    return "\n".join(pieces)


def rewrite(payload: dict[str, Any], change: Callable[[str], str]) -> dict[str, Any]:
    """A copy of `payload` with `change` applied to every text the model would read."""
    copy = dict(payload)
    if isinstance(copy.get("prompt"), str):
        copy["prompt"] = change(copy["prompt"])
    if "system" in copy:  # Anthropic
        copy["system"] = _rewrite_content(copy["system"], change)
    if isinstance(copy.get("messages"), list):
        copy["messages"] = [
            {**m, "content": _rewrite_content(m.get("content"), change)} if isinstance(m, dict) else m
            for m in copy["messages"]
        ]
    return copy


def _rewrite_content(content: Any, change: Callable[[str], str]) -> Any:
    if isinstance(content, str):
        return change(content)
    if isinstance(content, list):
        return [_rewrite_part(part, change) for part in content]
    return content


def _rewrite_part(part: Any, change: Callable[[str], str]) -> Any:
    if not isinstance(part, dict):
        return part
    if isinstance(part.get("text"), str):
        return {**part, "text": change(part["text"])}
    if part.get("type") == "tool_result" and "content" in part:  # Anthropic tool results
        return {**part, "content": _rewrite_content(part["content"], change)}
    return part
