"""The models a suite asks: OpenAI-compatible chat and completion endpoints (the Sovra gateway by
default), over aiohttp. Transport failures are `TransportError`s, which the runner retries;
a model's answer, however wrong, is never retried."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from sovra.evals.errors import EvalError, TransportError
from sovra.evals.suite import ProviderSpec

__all__ = ["ProviderResponse", "call", "embed"]

# Options that go to the API as they are (promptfoo's config names are the API's).
_PASS_THROUGH = (
    "temperature",
    "max_tokens",
    "top_p",
    "stop",
    "seed",
    "tools",
    "tool_choice",
    "response_format",
    "presence_penalty",
    "frequency_penalty",
)
_RETRYABLE = {408, 429, 500, 502, 503, 504}


@dataclass
class ProviderResponse:
    output: str
    latency_ms: float
    finish_reason: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    token_usage: dict[str, int] = field(default_factory=dict)
    model: str = ""
    error: str | None = None  # the API refused the request (4xx): a result, not a retry


def _headers(provider: ProviderSpec) -> dict[str, str]:
    key = provider.config.get("apiKey")
    return {"authorization": f"Bearer {key}"} if key else {}


async def _post(
    session: aiohttp.ClientSession, provider: ProviderSpec, path: str, body: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    url = str(provider.config["apiBaseUrl"]).rstrip("/") + path
    try:
        async with session.post(url, json=body, headers=_headers(provider)) as response:
            status = response.status
            try:
                answer = await response.json(content_type=None)
            except ValueError:
                answer = {}
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise TransportError(f"{url}: {exc.__class__.__name__}: {exc}") from exc
    if status in _RETRYABLE:
        raise TransportError(f"{url}: HTTP {status}")
    return status, answer if isinstance(answer, dict) else {}


async def call(
    session: aiohttp.ClientSession, provider: ProviderSpec, messages: list[dict[str, Any]], prompt_text: str
) -> ProviderResponse:
    body: dict[str, Any] = {"model": provider.model}
    body |= {name: provider.config[name] for name in _PASS_THROUGH if name in provider.config}
    if provider.kind == "chat":
        path, body["messages"] = "/chat/completions", messages
    else:
        path, body["prompt"] = "/completions", prompt_text
    started = time.perf_counter()
    status, answer = await _post(session, provider, path, body)
    latency = (time.perf_counter() - started) * 1000
    if status >= 400:
        message = (
            (answer.get("error") or {}).get("message") if isinstance(answer.get("error"), dict) else None
        )
        return ProviderResponse("", latency, error=f"HTTP {status}: {message or 'error'}")
    choice = (answer.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    output = message.get("content") if provider.kind == "chat" else choice.get("text")
    usage = answer.get("usage") or {}
    return ProviderResponse(
        output=output or "",
        latency_ms=latency,
        finish_reason=choice.get("finish_reason"),
        tool_calls=list(message.get("tool_calls") or []),
        model=str(answer.get("model") or provider.model),
        token_usage={
            "prompt": int(usage.get("prompt_tokens") or 0),
            "completion": int(usage.get("completion_tokens") or 0),
            "total": int(usage.get("total_tokens") or 0),
        },
    )


async def embed(
    session: aiohttp.ClientSession, provider: ProviderSpec, texts: list[str]
) -> list[list[float]]:
    status, answer = await _post(session, provider, "/embeddings", {"model": provider.model, "input": texts})
    if status >= 400:
        raise EvalError(f"embeddings: HTTP {status} from {provider.model}")
    return [item["embedding"] for item in sorted(answer.get("data") or [], key=lambda d: d.get("index", 0))]
