"""The seam: what a client dialect and an upstream dialect each do, and the call between them.

client's request ──ClientDialect.request──▶ Call (OpenAI shape) ──UpstreamDialect.request──▶ Call
client's answer ◀──ClientDialect.answer/stream── OpenAI shape ◀──UpstreamDialect.answer/stream──
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.responses import Response

from sovra.access.errors import ApiError
from sovra.access.keys import ApiKey

__all__ = ["Call", "ClientApi", "ClientDialect", "UpstreamDialect"]


@dataclass(frozen=True)
class Call:
    """What to send upstream: `body` is `payload` serialised (kept apart so no dialect re-parses)."""

    path: str
    payload: Mapping[str, Any]
    body: bytes
    model: str  # the name the client used: answers carry it
    stream: bool
    wants_usage: bool = False  # the client asked for the usage event (stream_options.include_usage)
    headers: Mapping[str, str] = field(default_factory=dict)  # forwarded from the client, over the endpoint's


class ClientDialect(Protocol):
    """An API a client speaks, translated to and from OpenAI's shapes."""

    # The client's stream carries usage whether or not it asked (its translation needs it).
    reports_usage: bool

    def request(
        self,
        path: str,
        payload: dict[str, Any],
        raw: bytes,
        model: str,
        upstream_model: str,
        stream_fields: Mapping[str, Any],
    ) -> Call:
        """The OpenAI-shaped call for the client's request (`model`: the name the client used,
        `upstream_model`: the upstream's); `stream_fields` go into a streamed one
        (what the engine needs for accounting). Bad input is an ApiError naming the field."""
        ...

    async def answer(self, body: bytes, status: int, content_type: str, model: str) -> Response:
        """The client's answer for a whole OpenAI-shaped one (a stateful API keeps it first)."""
        ...

    def stream(self, chunks: AsyncIterator[bytes], model: str) -> AsyncIterator[bytes]: ...

    def error(self, error: ApiError) -> Response:
        """The client's error envelope."""
        ...


class ClientApi(Protocol):
    """An endpoint's API: where each of its requests gets its dialect."""

    async def begin(self, payload: dict[str, Any], key: ApiKey) -> tuple[ClientDialect, dict[str, Any]]:
        """The dialect for this one request and the payload the gateway goes on with. Stateless
        APIs are their own dialect and leave the payload as it is; a stateful one (Responses)
        loads what the request refers to, under the key's tenant, and gives its chat request."""
        ...

    def error(self, error: ApiError) -> Response:
        """The API's error envelope (for errors before and after `begin`)."""
        ...


class UpstreamDialect(Protocol):
    """An API an upstream speaks, translated to and from OpenAI's shapes."""

    def request(self, call: Call, upstream_model: str) -> Call: ...

    def answer(self, body: bytes, status: int, model: str) -> bytes:
        """A whole answer (or error) in OpenAI's shape."""
        ...

    def stream(self, chunks: AsyncIterator[bytes], model: str) -> AsyncIterator[bytes]:
        """Its events as OpenAI chunks, the usage event included."""
        ...
