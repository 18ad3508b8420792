"""The gateway's connection to engines: a two-method seam, and its aiohttp implementation.

aiohttp is used because relaying is the hot path: with its C HTTP parser it spends about a third
of the CPU httpx does per streamed chunk (bench/serve.py), and on a small machine that CPU is taken
from the engine. Its errors are translated here, once, into ApiErrors.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import Protocol

import aiohttp

from sovra.access.errors import ApiError

__all__ = ["AiohttpUpstream", "Upstream", "UpstreamResponse"]


class UpstreamResponse(Protocol):
    status: int
    content_type: str

    def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; raises ApiError if the engine breaks off."""
        ...

    async def read(self) -> bytes: ...

    def close(self) -> None:
        """Drop the connection (the engine stops generating); safe to call twice."""
        ...


class Upstream(Protocol):
    async def post(
        self, url: str, body: bytes, model: str, headers: Mapping[str, str] | None = None
    ) -> UpstreamResponse:
        """Send a JSON body; return once the engine has answered with a status line."""
        ...

    async def aclose(self) -> None: ...


class _AiohttpResponse:
    def __init__(self, response: aiohttp.ClientResponse, model: str) -> None:
        self._response = response
        self._model = model
        self.status = response.status
        self.content_type = response.headers.get("content-type", "application/json")

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except aiohttp.ClientError as exc:
            raise ApiError(
                502, f"the engine for {self._model!r} broke off its answer", "upstream_error"
            ) from exc
        self._response.release()  # complete: the connection may be reused

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except aiohttp.ClientError as exc:
            raise ApiError(
                502, f"the engine for {self._model!r} broke off its answer", "upstream_error"
            ) from exc
        finally:
            self._response.release()

    def close(self) -> None:
        if not self._response.closed:
            self._response.close()


class AiohttpUpstream:
    def __init__(self, timeout: float, on_retry: Callable[[], object] | None = None) -> None:
        # Generation can be slow to start under load; only connecting must be quick.
        self._timeout = aiohttp.ClientTimeout(total=None, connect=5.0, sock_read=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._on_retry = on_retry

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:  # created on first use: a session belongs to a running loop
            # Idle connections are dropped before llama-server's own 5 s keep-alive timeout would.
            connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=4.0)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, auto_decompress=True
            )
        return self._session

    async def post(
        self, url: str, body: bytes, model: str, headers: Mapping[str, str] | None = None
    ) -> UpstreamResponse:
        headers = {"content-type": "application/json", **(headers or {})}
        try:
            try:
                response = await self._client().post(url, data=body, headers=headers)
            except aiohttp.ClientConnectorError:
                raise  # nothing listens there: a second try would not help
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
                # llama-server sometimes closes a pooled keep-alive connection just as we reuse it,
                # before answering anything; the same request on a fresh connection is the remedy.
                if self._on_retry is not None:
                    self._on_retry()
                response = await self._client().post(url, data=body, headers=headers)
        except TimeoutError as exc:
            raise ApiError(504, f"the engine for {model!r} timed out", "upstream_timeout") from exc
        except aiohttp.ClientError as exc:
            raise ApiError(502, f"the engine for {model!r} is unreachable", "upstream_unreachable") from exc
        return _AiohttpResponse(response, model)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
