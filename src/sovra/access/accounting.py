"""Accounting for one request: tokens, timings and status, gathered while the answer passes through.

Streams: the gateway asks the engine for `stream_options.include_usage`, reads the usage event, and
strips it again when the client did not ask for it. Every other event passes through byte for byte.
The final `data: [DONE]` is held back until the ledger row is committed, so a client that saw the
end of its answer is in the ledger.
"""

from __future__ import annotations

import itertools
import json
import re
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

from sovra.access.balancer import Lease
from sovra.access.dialects.usage import TokenUsage
from sovra.access.keys import ApiKey
from sovra.access.sse import data_event
from sovra.usage import UsageRecord

__all__ = ["CLIENT_CLOSED", "Exchange", "account_stream", "usage_from_body"]

CLIENT_CLOSED = 499  # nginx's convention: the client went away before the answer was complete
_DONE = b"data: [DONE]"
# Request ids unique across gateway processes without a urandom call per request.
_PROCESS = uuid.uuid4().hex[:16]
_SEQUENCE = itertools.count()


@dataclass
class Exchange:
    """What the ledger will say about one request, filled in as the request goes."""

    key: ApiKey
    endpoint: str
    request_id: str = field(default_factory=lambda: f"{_PROCESS}{next(_SEQUENCE):016x}")
    at: float = field(default_factory=time.time)
    started: float = field(default_factory=time.perf_counter)
    requested_model: str = ""
    served_model: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    first_byte: float | None = None
    status: int = 0
    reserved: int = 0  # tokens reserved against the key's limits, settled when the request ends
    reserved_locally: bool = False  # in this process's memory, Redis being down
    prompt_estimate: int = 0  # bounds.estimate_prompt: reserved for, and charged to a stream cut early
    prompt_seen: int = 0  # prompt tokens the engine said it processed (llama-server's timings)
    cache_seen: int = 0  # of which were read from its KV cache
    error_type: str = ""  # the error code Sovra answered with, or the engine's HTTP status
    tenant_label: str = ""  # the tenant as metrics label it (from a header, else the key)
    lease: Lease | None = None  # its hold on the endpoint serving it, until the request ends

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def note_usage(self, usage: Mapping[str, Any]) -> None:
        """An OpenAI-shaped usage object, as every answer is by the time accounting reads it."""
        tokens = TokenUsage.from_openai(usage)
        self.input_tokens, self.output_tokens, self.cached_tokens = tokens.input, tokens.output, tokens.cached

    def record(self) -> UsageRecord:
        now = time.perf_counter()
        ttft = (self.first_byte - self.started) * 1000 if self.first_byte is not None else None
        return UsageRecord(
            request_id=self.request_id,
            at=self.at,
            tenant=self.key.tenant,
            key_id=self.key.id,
            endpoint=self.endpoint,
            requested_model=self.requested_model,
            served_model=self.served_model,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cached_tokens=self.cached_tokens,
            ttft_ms=round(ttft, 2) if ttft is not None else None,
            duration_ms=round((now - self.started) * 1000, 2),
            status=self.status,
        )


def usage_from_body(body: bytes, exchange: Exchange) -> None:
    """Note the usage of a complete (non-streamed) JSON answer, if it has one. Only the `usage`
    object is parsed — engines put it last — not the whole body (logprobs can make that huge)."""
    at = body.rfind(b'"usage"')
    if at < 0:
        return
    colon = body.find(b":", at + 7)
    try:
        usage, _ = _DECODER.raw_decode(body[colon + 1 :].decode().lstrip())
    except (ValueError, UnicodeDecodeError):
        return
    if isinstance(usage, Mapping):
        exchange.note_usage(usage)


_DECODER = json.JSONDecoder()


async def account_stream(
    chunks: AsyncIterator[bytes],
    exchange: Exchange,
    keep_usage: bool,
    finish: Callable[[], Coroutine[Any, Any, None]],
    spawn: Callable[[Coroutine[Any, Any, None]], object],
) -> AsyncGenerator[bytes]:
    """Relay an SSE stream while noting its usage; `finish` (the ledger commit) runs before [DONE].
    If the stream ends early, `finish` is handed to `spawn`: nothing may be awaited once cancelled."""
    pending = b""
    held_done = False
    events_seen = 0
    finished = False
    try:
        async for chunk in chunks:
            if exchange.first_byte is None:
                exchange.first_byte = time.perf_counter()
            if not exchange.prompt_seen and b'"prompt_n"' in chunk:
                _note_timings(chunk, exchange)
            if not pending and chunk.endswith(b"\n\n") and b'"usage"' not in chunk and _DONE not in chunk:
                events_seen += 1
                yield chunk  # the common case: one whole ordinary event, passed on untouched
                continue
            *events, pending = (pending + chunk).split(b"\n\n")
            out = []
            for event in events:
                events_seen += 1
                if event == _DONE:
                    held_done = True
                elif b'"usage"' in event:
                    out.append(_take_usage(event, exchange, keep_usage))
                elif event:
                    out.append(event + b"\n\n")
            if joined := b"".join(out):
                yield joined
        exchange.status = exchange.status or 200
        await finish()
        finished = True
        if held_done:
            yield _DONE + b"\n\n"
        if pending:
            yield pending
    finally:
        if not finished:  # the client went away (or the stream broke): charge what the engine did
            exchange.status = exchange.status or CLIENT_CLOSED
            if not exchange.input_tokens:
                exchange.input_tokens = exchange.prompt_seen or exchange.prompt_estimate
                exchange.cached_tokens = exchange.cache_seen
            exchange.output_tokens = exchange.output_tokens or events_seen
            spawn(finish())


_PROMPT_N = re.compile(rb'"prompt_n":\s*(\d+)')
_CACHE_N = re.compile(rb'"cache_n":\s*(\d+)')


def _note_timings(chunk: bytes, exchange: Exchange) -> None:
    """llama-server's per-event timings: the prompt it evaluated (prompt_n) beside what its cache
    held (cache_n). Read from the bytes, not parsed: this runs on the stream's hot path."""
    prompt, cache = _PROMPT_N.search(chunk), _CACHE_N.search(chunk)
    if prompt is not None:
        cached = int(cache.group(1)) if cache is not None else 0
        exchange.prompt_seen, exchange.cache_seen = int(prompt.group(1)) + cached, cached


def _take_usage(event: bytes, exchange: Exchange, keep_usage: bool) -> bytes:
    """Read the usage from an event; return what the client should see of it (maybe nothing)."""
    try:
        payload = json.loads(event.removeprefix(b"data:").strip())
    except ValueError:
        return event + b"\n\n"
    usage = payload.get("usage") if isinstance(payload, dict) else None
    if not isinstance(usage, Mapping):
        return event + b"\n\n"
    exchange.note_usage(usage)
    if keep_usage:
        return event + b"\n\n"
    if not payload.get("choices"):
        return b""  # the extra usage-only event the client did not ask for
    del payload["usage"]
    return data_event(payload)
