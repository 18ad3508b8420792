"""The gateway's connection to engines: a two-method seam, and its HTTP/1.1 implementation.

Relaying is the hot path, and at concurrency 1 what the gateway adds is mostly Python per request.
So the client is small: an asyncio protocol per connection, httptools (llhttp, the C parser uvicorn
uses) for the answer, keep-alive connections pooled per host, the request written in one call. A
general client (aiohttp before this) spent about a fifth of the gateway's time per request on
machinery this one does not need: cookies, redirects, proxies, multipart, tracing.

What it keeps from a full client: TLS for providers, chunked and length-delimited and read-to-close
bodies, gzip/deflate if a server sends them unasked, back-pressure (a slow client pauses reading from
the engine), a connect deadline and a per-read deadline, and one retry when a kept-alive connection
is closed before any answer (llama-server sometimes closes an idle one just as it is reused). Its
errors become ApiErrors here, once.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import zlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Protocol, cast
from urllib.parse import urlsplit

import httptools

from sovra.access.errors import ApiError

__all__ = ["HttpUpstream", "Upstream", "UpstreamResponse"]


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


CONNECT_SECONDS = 5.0
# Idle connections are dropped before llama-server's own 5 s keep-alive timeout would drop them.
KEEPALIVE_SECONDS = 4.0
# Body bytes held for a reader that has not taken them yet before reading from the engine pauses.
BUFFER_HIGH = 256 * 1024
_NO_BODY = frozenset({204, 304})


class _Dropped(Exception):
    """The connection ended before the answer did (`answered`: whether any of it had arrived)."""

    def __init__(self, answered: bool) -> None:
        self.answered = answered


class _ReadTimeout(Exception):
    pass


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: one request at a time, the answer parsed as it arrives."""

    def __init__(self, pool: _Pool, read_timeout: float) -> None:
        self._pool = pool
        self._read_timeout = read_timeout
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[None] | None = None
        self._reset()
        self.closed = False
        self.idle_since = 0.0

    def _reset(self) -> None:
        self.status = 0
        self.content_type = "application/json"
        self.encoding = b""
        self._delimited = False  # content-length or chunked: else the body ends when the connection does
        self._received = False
        self._headers_done = False
        self._complete = False
        self._keep_alive = False
        self._body: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._error: BaseException | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio subclass

    def data_received(self, data: bytes) -> None:
        self._received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._pool.forget(self)
        if self._headers_done and not self._delimited and not self._complete and exc is None:
            self._complete = True  # a body read to the end of the connection: it is whole
        elif not self._complete:
            self._fail(_Dropped(self._received))
        self._wake()

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-type":
            self.content_type = value.decode("latin-1")
        elif name == b"content-length" or (name == b"transfer-encoding" and b"chunked" in value.lower()):
            self._delimited = True
        elif name == b"content-encoding":
            self.encoding = value.strip().lower()

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self._headers_done = True
        if self.status in _NO_BODY:
            self._delimited = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self._body.append(body)
        self._buffered += len(body)
        if self._buffered > BUFFER_HIGH and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self._complete = True
        self._keep_alive = self._parser.should_keep_alive()
        self._wake()

    # used by the pool and the response
    async def ask(self, head: bytes, body: bytes) -> None:
        """Send the request (one write: one segment for a small one) and wait for the status line
        and headers of the answer."""
        assert self._transport is not None
        self._reset()
        self._transport.write(head + body)
        while not self._headers_done:
            await self._wait()

    async def next_chunk(self) -> bytes | None:
        """The next piece of the body, or None at its end."""
        while not self._body:
            if self._complete:
                return None
            await self._wait()
        chunk = self._body.popleft()
        self._buffered -= len(chunk)
        if self._paused and self._buffered <= BUFFER_HIGH // 2 and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()
        return chunk

    def reusable(self) -> bool:
        return self._complete and self._keep_alive and not self.closed and not self._body

    def abort(self) -> None:
        if self._transport is not None and not self.closed:
            self._transport.abort()

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def _wait(self) -> None:
        if self._error is not None:
            raise self._error
        self._waiter = self._loop.create_future()
        timer = self._loop.call_later(self._read_timeout, self._timed_out, self._waiter)
        try:
            await self._waiter
        finally:
            timer.cancel()
            self._waiter = None
        if self._error is not None and not self._body and not self._complete:
            raise self._error

    def _timed_out(self, waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            waiter.set_exception(_ReadTimeout())


class _Pool:
    """Idle keep-alive connections to one host, the most recently used first."""

    def __init__(self, host: str, port: int, tls: ssl.SSLContext | None) -> None:
        self.host, self.port, self.tls = host, port, tls
        self._idle: list[_Connection] = []
        self._open: set[_Connection] = set()

    def take_idle(self, now: float) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed and now - connection.idle_since < KEEPALIVE_SECONDS:
                return connection
            connection.abort()
        return None

    async def connect(self, read_timeout: float) -> _Connection:
        loop = asyncio.get_running_loop()
        hostname = self.host if self.tls is not None else None
        async with asyncio.timeout(CONNECT_SECONDS):
            _, connection = await loop.create_connection(
                lambda: _Connection(self, read_timeout),
                self.host,
                self.port,
                ssl=self.tls,
                server_hostname=hostname,
            )
        self._open.add(connection)
        return connection

    def put_back(self, connection: _Connection) -> None:
        if connection.reusable():
            connection.idle_since = time.monotonic()
            self._idle.append(connection)
        else:
            connection.abort()

    def forget(self, connection: _Connection) -> None:
        self._open.discard(connection)
        if connection in self._idle:
            self._idle.remove(connection)

    def close(self) -> None:
        for connection in list(self._open):
            connection.abort()


class _Response:
    def __init__(self, connection: _Connection, pool: _Pool, model: str) -> None:
        self._connection = connection
        self._pool = pool
        self._model = model
        self._done = False
        self.status = connection.status
        self.content_type = connection.content_type
        encoding = connection.encoding
        self._inflate = zlib.decompressobj(47 if encoding == b"gzip" else 15) if encoding else None

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            try:
                chunk = await self._connection.next_chunk()
            except (_Dropped, _ReadTimeout, httptools.HttpParserError) as exc:
                self.close()
                raise ApiError(
                    502, f"the engine for {self._model!r} broke off its answer", "upstream_error"
                ) from exc
            if chunk is None:
                break
            if self._inflate is not None:
                chunk = self._inflate.decompress(chunk)
            if chunk:
                yield chunk
        if self._inflate is not None and (rest := self._inflate.flush()):
            yield rest
        self._release()  # complete: the connection may be reused

    async def read(self) -> bytes:
        try:
            return b"".join([chunk async for chunk in self.chunks()])
        finally:
            self.close()

    def _release(self) -> None:
        if not self._done:
            self._done = True
            self._pool.put_back(self._connection)

    def close(self) -> None:
        if not self._done:
            self._done = True
            self._connection.abort()


class HttpUpstream:
    def __init__(self, timeout: float, on_retry: Callable[[], object] | None = None) -> None:
        # Generation can be slow to start under load: `timeout` bounds each wait for the engine;
        # only connecting must be quick.
        self._timeout = timeout
        self._on_retry = on_retry
        self._pools: dict[tuple[str, str, int], _Pool] = {}
        self._targets: dict[str, tuple[_Pool, bytes]] = {}  # url → (pool, request line and host)
        self._tls: ssl.SSLContext | None = None

    async def post(
        self, url: str, body: bytes, model: str, headers: Mapping[str, str] | None = None
    ) -> UpstreamResponse:
        pool, start = self._target(url, model)
        head = _head(start, len(body), headers)
        connection: _Connection | None = None
        try:
            connection = pool.take_idle(time.monotonic()) or await pool.connect(self._timeout)
            try:
                await connection.ask(head, body)
            except _Dropped as dropped:
                if dropped.answered:
                    raise
                # Closed before answering anything (a kept-alive connection the engine dropped just
                # as it was reused): the same request on a fresh connection is the remedy.
                if self._on_retry is not None:
                    self._on_retry()
                connection = await pool.connect(self._timeout)
                await connection.ask(head, body)
        except BaseException as exc:
            if connection is not None:
                connection.abort()  # timed out, broken, or the client left: the engine must stop
            translated = _translated(exc, model)
            if translated is exc:
                raise
            raise translated from exc
        return _Response(connection, pool, model)

    def _target(self, url: str, model: str) -> tuple[_Pool, bytes]:
        target = self._targets.get(url)
        if target is None:
            target = self._targets[url] = self._parse(url, model)
        return target

    def _parse(self, url: str, model: str) -> tuple[_Pool, bytes]:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ApiError(502, f"the engine for {model!r} has an unusable URL", "upstream_unreachable")
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        key = (parts.scheme, parts.hostname, port)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = _Pool(parts.hostname, port, self._context() if tls else None)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        default_port = port == (443 if tls else 80)
        host = parts.hostname if default_port else f"{parts.hostname}:{port}"
        if ":" in parts.hostname:  # an IPv6 literal keeps its brackets in the Host header
            host = f"[{parts.hostname}]" if default_port else f"[{parts.hostname}]:{port}"
        return pool, f"POST {path} HTTP/1.1\r\nhost: {host}\r\n".encode("latin-1")

    def _context(self) -> ssl.SSLContext:
        if self._tls is None:  # building it reads the system's certificates: only when needed
            self._tls = ssl.create_default_context()
        return self._tls

    async def aclose(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        self._targets.clear()


def _translated(error: BaseException, model: str) -> BaseException:
    """A foreign error as the ApiError it means (others, cancellation included, as they are)."""
    if isinstance(error, (TimeoutError, _ReadTimeout)):
        return ApiError(504, f"the engine for {model!r} timed out", "upstream_timeout")
    if isinstance(error, (OSError, _Dropped, httptools.HttpParserError)):
        return ApiError(502, f"the engine for {model!r} is unreachable", "upstream_unreachable")
    return error  # cancellation, or an ApiError already


_OURS = frozenset({"host", "content-length"})


def _head(start: bytes, length: int, headers: Mapping[str, str] | None) -> bytes:
    lines = {"content-type": "application/json"}
    for name, value in (headers or {}).items():
        if any(c in name or c in value for c in "\r\n"):
            raise ApiError(500, f"the header {name!r} for the engine holds a line break", "internal_error")
        if name.lower() not in _OURS:
            lines[name.lower()] = value
    text = "".join(f"{name}: {value}\r\n" for name, value in lines.items())
    try:
        extra = text.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise ApiError(500, "a header for the engine is not Latin-1 text", "internal_error") from exc
    return b"%scontent-length: %d\r\n%s\r\n" % (start, length, extra)
