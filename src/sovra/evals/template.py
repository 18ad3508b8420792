"""`{{var}}` templating, in Nunjucks' syntax as promptfoo writes it (Jinja2 reads the same subset:
variables, filters, `{% if %}`, `{% for %}`). An undefined variable renders empty, as in promptfoo."""

from __future__ import annotations

import json
from typing import Any

import jinja2

from sovra.evals.errors import EvalError

__all__ = ["chat_messages", "render"]

_ENVIRONMENT = jinja2.Environment(autoescape=False, keep_trailing_newline=True)
_ENVIRONMENT.filters["dump"] = json.dumps  # Nunjucks' `dump` filter


def render(template: str, variables: dict[str, Any]) -> str:
    try:
        return _ENVIRONMENT.from_string(template).render(**variables)
    except jinja2.TemplateError as exc:
        raise EvalError(f"template error: {exc}") from exc


def chat_messages(template: str, variables: dict[str, Any], is_chat: bool) -> list[dict[str, Any]]:
    """The messages a prompt becomes: a chat-style JSON prompt is rendered then parsed; any other
    prompt is one user message."""
    text = render(template, variables)
    if is_chat:
        try:
            messages = json.loads(text)
        except ValueError as exc:
            raise EvalError(f"a chat prompt must render to JSON: {exc}") from exc
        return messages if isinstance(messages, list) else [{"role": "user", "content": text}]
    return [{"role": "user", "content": text}]
