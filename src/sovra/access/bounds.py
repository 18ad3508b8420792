"""What one request may make an engine do, bounded before the engine is asked.

llama-server honours parameters of its own beside OpenAI's: `n_predict` (a second output limit,
which wins over `max_tokens`), `id_slot` (which slot — and whose KV cache — to use), `n_probs`
(probabilities of N candidates per token). A reservation that counts `max_tokens` alone can be
walked past with them, and a body can multiply the answer's size (`top_logprobs`) or the prompt's
cost (thousands of messages). So, for every request:

- `n_predict` is folded into `max_tokens` (the smaller wins) and not sent; `id_slot` and `n_probs`
  are not sent.
- A key with limits always sends an explicit `max_tokens` (its own or `limits.defaultMaxTokens`),
  so what the engine may generate is what was reserved, `ignore_eos` or not.
- `top_logprobs` above 20 and `logprobs` above 5 on completions are refused, as OpenAI does.
- More than `gateway.maxMessages` messages, or a prompt that cannot fit the model's context window
  (a lower bound: 8 bytes of text per token), is refused before any engine time is spent
  (`context_length_exceeded`).

What a request may cost, for its reservation (`estimate_tokens`), is an upper estimate: 3 bytes of
JSON per prompt token, plus 8 tokens per message and 64 for the chat template (SmolLM2's adds a
system prompt of ~30 tokens to every request), plus `max_tokens` times `n`. Measured against
SmolLM2's tokenizer it covers English, code and CJK text; scripts that take more than one token
per 3 bytes (some Greek or Cyrillic sent unescaped) can exceed it, and then only by that excess.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sovra.access.errors import ApiError

__all__ = ["Bounds", "bound_request", "estimate_prompt", "estimate_tokens"]

_NOT_SENT = ("n_predict", "id_slot", "n_probs")
_MAX_TOP_LOGPROBS = 20
_MAX_COMPLETION_LOGPROBS = 5
_BYTES_PER_TOKEN_AT_MOST = 8  # no tokenizer averages more over real text; so a safe lower bound
_BYTES_PER_TOKEN_AT_LEAST = 3  # of JSON, for an upper estimate of the prompt
_TEMPLATE_TOKENS = 64
_MESSAGE_TOKENS = 8


@dataclass(frozen=True)
class Bounds:
    default_max_tokens: int = 512
    max_messages: int = 1_000


NO_OUTPUT = frozenset({"/v1/embeddings", "/v1/rerank"})  # endpoints that generate nothing


def bound_request(
    endpoint: str,
    payload: dict[str, Any],
    bounds: Bounds,
    *,
    limited: bool,
    context_window: int | None,
) -> dict[str, Any] | None:
    """The payload to send instead (None: unchanged), or an ApiError (400) for what is refused."""
    _check_sizes(endpoint, payload, bounds, context_window)
    if endpoint in NO_OUTPUT:
        return None
    changes: dict[str, Any] = {}
    limit = _output_limit(payload)
    engine_limit = payload.get("n_predict")
    if isinstance(engine_limit, int) and not isinstance(engine_limit, bool) and engine_limit >= 1:
        limit = min(limit, engine_limit) if isinstance(limit, int) else engine_limit
        changes["max_tokens"] = limit
    if limit is None and limited:
        changes["max_tokens"] = bounds.default_max_tokens
    dropped = [name for name in _NOT_SENT if name in payload]
    if not changes and not dropped:
        return None
    bounded = {k: v for k, v in payload.items() if k not in dropped}
    if "max_tokens" in changes and "max_completion_tokens" in bounded:
        bounded["max_completion_tokens"] = changes["max_tokens"]
    return bounded | changes


def estimate_prompt(payload: dict[str, Any], raw: bytes) -> int:
    messages = payload.get("messages")
    count = len(messages) if isinstance(messages, list) else 0
    return len(raw) // _BYTES_PER_TOKEN_AT_LEAST + _TEMPLATE_TOKENS + _MESSAGE_TOKENS * count


def estimate_tokens(endpoint: str, payload: dict[str, Any], prompt: int, default_max_tokens: int) -> int:
    """What a request may cost at most (see the module's docstring), `prompt` being its
    `estimate_prompt`: the reservation."""
    if endpoint in NO_OUTPUT:
        return prompt
    limit = _output_limit(payload) or default_max_tokens
    choices = payload.get("n") or 1
    if not isinstance(limit, int) or not isinstance(choices, int) or limit < 1 or choices < 1:
        raise ApiError(400, "'max_tokens' and 'n' must be positive integers", "invalid_max_tokens")
    return prompt + limit * choices


def _output_limit(payload: dict[str, Any]) -> Any:
    """What the client said the answer may take (the newer name wins), not yet checked."""
    return payload.get("max_completion_tokens") or payload.get("max_tokens")


def _check_sizes(endpoint: str, payload: dict[str, Any], bounds: Bounds, context_window: int | None) -> None:
    top = payload.get("top_logprobs")
    if isinstance(top, int) and top > _MAX_TOP_LOGPROBS:
        raise ApiError(400, f"top_logprobs: at most {_MAX_TOP_LOGPROBS}", "invalid_request")
    logprobs = payload.get("logprobs")
    if endpoint == "/v1/completions" and isinstance(logprobs, int) and logprobs > _MAX_COMPLETION_LOGPROBS:
        raise ApiError(400, f"logprobs: at most {_MAX_COMPLETION_LOGPROBS}", "invalid_request")
    messages = payload.get("messages")
    if isinstance(messages, list) and len(messages) > bounds.max_messages:
        raise ApiError(
            400,
            f"messages: at most {bounds.max_messages} (this request has {len(messages)})",
            "invalid_request",
        )
    if context_window is not None and endpoint not in NO_OUTPUT:
        at_least = _text_chars(payload) // _BYTES_PER_TOKEN_AT_MOST
        if at_least > context_window:
            raise ApiError(
                400,
                f"the prompt is at least {at_least} tokens; the model's context window is {context_window}",
                "context_length_exceeded",
            )


def _text_chars(payload: dict[str, Any]) -> int:
    """Characters of prompt text (not images) in one sequence — messages' text, or a completion's
    prompt: at most its UTF-8 bytes, so the token count it implies stays a lower bound."""
    prompt = payload.get("prompt")  # a list is several prompts, each its own sequence
    total = max(map(_strings, prompt), default=0) if isinstance(prompt, list) else _strings(prompt)
    total += _strings(payload.get("suffix"))
    messages = payload.get("messages")
    for message in messages if isinstance(messages, list) else ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            total += len(content)
        elif isinstance(content, list):
            total += sum(
                _strings(part.get("text"))
                for part in content
                if isinstance(part, dict) and part.get("type") == "text"
            )
    return total


def _strings(value: Any) -> int:
    """Characters: a lower bound on UTF-8 bytes, without encoding anything."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(len(v) for v in value if isinstance(v, str))
    return 0
