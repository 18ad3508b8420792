"""Exact prompt token counts, by the served model's own chat template and tokenizer, without
generating: `POST /v1/messages/count_tokens` (Anthropic) and `POST /v1/responses/input_tokens`
(OpenAI). The request is translated to a chat request exactly as it would be for an answer, so
the count is the `input_tokens` the same request then reports (cached tokens included).

llama-server renders the prompt with `/apply-template` (tools included) and counts it with
`/tokenize`; vLLM counts chat messages with its `/tokenize`. A provider is asked its own endpoint
when it speaks the same API; otherwise counting is refused with a 400 naming the model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sovra.access.errors import ApiError
from sovra.access.served import ServedModel
from sovra.access.upstream import Upstream

__all__ = ["count_chat_tokens", "counts_itself", "relay_count"]

_LOCAL = frozenset({"llama.cpp"})
_VLLM = frozenset({"vllm", "remote"})  # engines on a cluster are rendered as vLLM


async def _post_json(
    upstream: Upstream, url: str, body: Mapping[str, Any], model: str, headers: Mapping[str, str]
) -> Any:
    answer = await upstream.post(url, json.dumps(body).encode(), model, headers)
    raw = await answer.read()
    if answer.status != 200:
        raise ApiError(
            502, f"the engine for {model!r} could not count tokens ({answer.status})", "upstream_error"
        )
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ApiError(
            502, f"the engine for {model!r} answered its count in no JSON", "upstream_error"
        ) from exc


async def count_chat_tokens(
    upstream: Upstream, base_url: str, headers: Mapping[str, str], served: ServedModel, chat: dict[str, Any]
) -> int:
    """Tokens of the prompt `chat` (an OpenAI chat request) becomes on `served`'s engine, one that
    `counts_itself` (llama-server, else vLLM)."""
    model = served.name
    body = {**chat, "model": served.upstream_name, "stream": False}
    body.pop("stream_options", None)
    if served.provider in _LOCAL:
        rendered = await _post_json(upstream, f"{base_url}/apply-template", body, model, headers)
        prompt = rendered.get("prompt") if isinstance(rendered, dict) else None
        if not isinstance(prompt, str):
            raise ApiError(502, f"the engine for {model!r} rendered no prompt", "upstream_error")
        # As llama-server tokenizes a chat prompt: its special tokens (BOS where the model has one) parsed.
        tokenize = {"content": prompt, "add_special": True, "parse_special": True}
        counted = await _post_json(upstream, f"{base_url}/tokenize", tokenize, model, headers)
        tokens = counted.get("tokens") if isinstance(counted, dict) else None
        if not isinstance(tokens, list):
            raise ApiError(502, f"the engine for {model!r} returned no tokens", "upstream_error")
        return len(tokens)
    request: dict[str, Any] = {k: body[k] for k in ("model", "messages", "tools") if k in body}  # vLLM
    counted = await _post_json(upstream, f"{base_url}/tokenize", request, model, headers)
    count = counted.get("count") if isinstance(counted, dict) else None
    if not isinstance(count, int):
        raise ApiError(502, f"the engine for {model!r} returned no count", "upstream_error")
    return count


def counts_itself(served: ServedModel) -> bool:
    """Whether Sovra counts with the engine's tokenizer (else a provider is asked its own count)."""
    return served.provider in _LOCAL or served.provider in _VLLM


async def relay_count(
    upstream: Upstream, url: str, headers: Mapping[str, str], served: ServedModel, payload: dict[str, Any]
) -> int:
    """A provider's own count for a request in its own API's shape."""
    counted = await _post_json(
        upstream, url, {**payload, "model": served.upstream_name}, served.name, headers
    )
    count = counted.get("input_tokens") if isinstance(counted, dict) else None
    if not isinstance(count, int):
        raise ApiError(502, f"the provider for {served.name!r} returned no count", "upstream_error")
    return count
