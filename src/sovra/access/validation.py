"""Checks of OpenAI request bodies: a 400 that names the field, before anything reaches an engine.

Only the fields the gateway or the engines rely on are checked; unknown fields pass through
untouched, as the engine may support them. Written out by hand because it runs on every request.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from sovra.access.errors import ApiError

__all__ = ["check_no_images", "check_request", "parse_body"]

MAX_DEPTH = 64  # of nested arrays and objects: real requests use under 10
# A \uD800-\uDFFF escape: a surrogate, which is only valid as half of a pair.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def parse_body(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 that says what is wrong with it: not UTF-8 (the
    JSON RFC's only interchange encoding; engines choke on UTF-16), not JSON, nested absurdly deep,
    or holding a lone surrogate that no engine, database or log can encode."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(
            400, f"request body is not UTF-8: {exc.reason} at byte {exc.start}", "invalid_json"
        ) from exc
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}", "invalid_json") from exc
    except RecursionError as exc:
        raise ApiError(
            400, f"request body is nested more than {MAX_DEPTH} levels deep", "invalid_json"
        ) from exc
    if not isinstance(payload, dict):
        raise ApiError(400, "request body must be a JSON object", "invalid_json")
    _check_depth_and_text(payload, needs_text_check=_SURROGATE_ESCAPE.search(raw) is not None)
    return payload


def _check_depth_and_text(payload: dict[str, Any], needs_text_check: bool) -> None:
    """Walk the containers (not recursively: that is what a deep body attacks) and, when the body
    has surrogate escapes, every string."""
    stack: list[tuple[Any, str, int]] = [(payload, "", 1)]
    while stack:
        value, where, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ApiError(400, f"request body is nested more than {MAX_DEPTH} levels deep", "invalid_json")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(item, dict | list):
                stack.append((item, f"{where}.{key}" if where else str(key), depth + 1))
            elif needs_text_check and isinstance(item, str) and not _encodable(item):
                raise _fail(
                    f"{where}.{key}" if where else str(key), "contains a lone surrogate (not valid Unicode)"
                )
        if needs_text_check and isinstance(value, dict) and not all(_encodable(k) for k in value):
            raise _fail(where or "body", "a key contains a lone surrogate (not valid Unicode)")


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_ROLES = ("system", "developer", "user", "assistant", "tool")
_TEXT_INPUT = {"/v1/completions": "prompt", "/v1/embeddings": "input"}


def _fail(field: str, reason: str) -> ApiError:
    return ApiError(400, f"{field}: {reason}", "invalid_request")


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _number_in(low: float, high: float) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high

    return check


def _string_or_strings(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))


_COMMON: dict[str, tuple[Callable[[Any], bool], str]] = {
    "stream": (lambda v: isinstance(v, bool), "must be true or false"),
    "max_tokens": (_positive_int, "must be a positive integer"),
    "max_completion_tokens": (_positive_int, "must be a positive integer"),
    "n": (_positive_int, "must be a positive integer"),
    "temperature": (_number_in(0, 2), "must be a number from 0 to 2"),
    "top_p": (_number_in(0, 1), "must be a number from 0 to 1"),
    "stop": (lambda v: v is None or _string_or_strings(v), "must be a string or a list of strings"),
    "stream_options": (lambda v: v is None or isinstance(v, dict), "must be an object"),
}


def check_request(endpoint: str, payload: dict[str, Any]) -> None:
    for name, (valid, reason) in _COMMON.items():
        if name in payload and not valid(payload[name]):
            raise _fail(name, reason)
    if endpoint == "/v1/chat/completions":
        _check_messages(payload.get("messages"))
        _check_tools(payload.get("tools"))
    elif endpoint == "/v1/rerank":
        _check_rerank(payload)
    elif endpoint in _TEXT_INPUT:
        field = _TEXT_INPUT[endpoint]
        if not (_string_or_strings(payload.get(field)) or _token_lists(payload.get(field))):
            raise _fail(field, "required: a string, a list of strings, or token ids")


def _check_rerank(payload: dict[str, Any]) -> None:
    """Cohere's and Jina's shape, as llama-server and vLLM take it."""
    if not isinstance(payload.get("query"), str) or not payload["query"]:
        raise _fail("query", "required: a non-empty string")
    documents = payload.get("documents")
    if not isinstance(documents, list) or not documents:
        raise _fail("documents", "required: a non-empty list")
    for index, document in enumerate(documents):
        text = document.get("text") if isinstance(document, dict) else document
        if not isinstance(text, str):
            raise _fail(f"documents.{index}", "a string, or an object with a text")
    top_n = payload.get("top_n")
    if top_n is not None and (not isinstance(top_n, int) or isinstance(top_n, bool) or top_n < 1):
        raise _fail("top_n", "a positive integer")


def _token_lists(value: Any) -> bool:
    if not isinstance(value, list) or not value:
        return False
    if all(isinstance(v, int) for v in value):
        return True
    return all(isinstance(v, list) and all(isinstance(t, int) for t in v) for v in value)


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise _fail("messages", "required: a non-empty list")
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _fail(f"messages.{index}", "must be an object")
        if message.get("role") not in _ROLES:
            raise _fail(f"messages.{index}.role", f"must be one of {', '.join(_ROLES)}")
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise _fail(f"messages.{index}.content", "must be a string, a list of parts, or null")


def _check_tools(tools: Any) -> None:
    if tools is None:
        return
    if not isinstance(tools, list):
        raise _fail("tools", "must be a list")
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise _fail(f"tools.{index}.function.name", "required")


def check_no_images(payload: dict[str, Any], model: str) -> None:
    """A 400 naming the first image part, for a model whose engine cannot take images."""
    messages = payload.get("messages")
    for i, message in enumerate(messages if isinstance(messages, list) else ()):
        content = message.get("content") if isinstance(message, dict) else None
        for j, part in enumerate(content if isinstance(content, list) else ()):
            if isinstance(part, dict) and part.get("type") in ("image_url", "image", "input_image"):
                raise _fail(f"messages.{i}.content.{j}", f"the model {model!r} does not accept images")
