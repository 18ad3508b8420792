"""HttpUpstream against a scripted HTTP server on loopback that misbehaves on purpose."""

import asyncio
import contextlib
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from sovra.access.errors import ApiError
from sovra.access.upstream import HttpUpstream
from sovra.inference.launcher import free_port

pytestmark = pytest.mark.anyio
Script = Callable[[int, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    return await reader.readexactly(length)


@contextlib.asynccontextmanager
async def scripted_server(script: Script) -> AsyncIterator[tuple[str, list[int]]]:
    """Runs `script(connection_number, reader, writer)` for every connection."""
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(len(connections))
        try:
            await script(connections[-1], reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}/v1/chat/completions", connections


async def answer(writer: asyncio.StreamWriter, body: bytes = b'{"ok": true}') -> None:
    writer.write(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
        % (len(body), body)
    )
    await writer.drain()


async def test_a_connection_closed_before_any_answer_is_retried_once() -> None:
    async def drop_first(n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        if n > 0:
            await answer(writer)

    upstream = HttpUpstream(timeout=5)
    async with scripted_server(drop_first) as (url, connections):
        response = await upstream.post(url, b"{}", "m")
        assert (response.status, await response.read()) == (200, b'{"ok": true}')
        assert len(connections) == 2
    await upstream.aclose()


async def test_two_drops_in_a_row_are_an_unreachable_engine() -> None:
    async def drop_all(n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)

    upstream = HttpUpstream(timeout=5)
    async with scripted_server(drop_all) as (url, connections):
        with pytest.raises(ApiError) as caught:
            await upstream.post(url, b"{}", "m")
        assert (caught.value.status, caught.value.code) == (502, "upstream_unreachable")
        assert len(connections) == 2
    await upstream.aclose()


async def test_nothing_listening_is_502_and_silence_is_504() -> None:
    upstream = HttpUpstream(timeout=0.3)
    with pytest.raises(ApiError) as refused:
        await upstream.post(f"http://127.0.0.1:{free_port()}/x", b"{}", "m")
    assert (refused.value.status, refused.value.code) == (502, "upstream_unreachable")

    async def silent(n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(2)

    async with scripted_server(silent) as (url, _):
        with pytest.raises(ApiError) as timed_out:
            await upstream.post(url, b"{}", "m")
        assert (timed_out.value.status, timed_out.value.code) == (504, "upstream_timeout")
    await upstream.aclose()


async def test_chunks_arrive_as_sent_and_close_hangs_up() -> None:
    second_sent = asyncio.Event()
    hung_up = asyncio.Event()

    async def stream(n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        writer.write(b"7\r\ndata: 1\r\n")
        await writer.drain()
        await asyncio.sleep(0.2)
        second_sent.set()
        writer.write(b"7\r\ndata: 2\r\n")
        await writer.drain()
        if await reader.read() == b"":  # the client closed its end
            hung_up.set()

    upstream = HttpUpstream(timeout=5)
    async with scripted_server(stream) as (url, _):
        response = await upstream.post(url, b"{}", "m")
        assert response.content_type == "text/event-stream"
        chunks = response.chunks()
        assert await anext(chunks) == b"data: 1"
        assert not second_sent.is_set()  # relayed before the engine wrote more: nothing buffered
        assert await anext(chunks) == b"data: 2"
        response.close()
        await chunks.aclose()
        await asyncio.wait_for(hung_up.wait(), 2)
    await upstream.aclose()


async def test_a_connection_is_kept_alive_and_reused() -> None:
    async def two_answers(n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(2):
            await read_request(reader)
            await answer(writer)

    upstream = HttpUpstream(timeout=5)
    async with scripted_server(two_answers) as (url, connections):
        for _ in range(2):
            response = await upstream.post(url, b"{}", "m")
            assert await response.read() == b'{"ok": true}'
        assert len(connections) == 1
    await upstream.aclose()


async def test_the_request_carries_its_headers_and_body() -> None:
    seen: list[bytes] = []

    async def record(n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        seen.append(head + await reader.readexactly(7))
        await answer(writer)

    upstream = HttpUpstream(timeout=5)
    async with scripted_server(record) as (url, _):
        response = await upstream.post(url, b'{"a":1}', "m", {"Authorization": "Bearer k", "Host": "evil"})
        await response.read()
    await upstream.aclose()
    head, body = seen[0].split(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v1/chat/completions HTTP/1.1"
    assert sorted(lines[1:]) == sorted(
        [b"host: " + url.split("/")[2].encode(), b"content-type: application/json",
         b"authorization: Bearer k", b"content-length: 7"]
    )  # fmt: skip
    assert body == b'{"a":1}'


async def test_a_header_with_a_line_break_is_refused_before_sending() -> None:
    upstream = HttpUpstream(timeout=5)
    with pytest.raises(ApiError) as caught:
        await upstream.post("http://127.0.0.1:1/x", b"{}", "m", {"x-key": "a\r\nx-evil: 1"})
    assert caught.value.status == 500
    await upstream.aclose()


async def test_gzip_and_a_body_read_to_the_end_of_the_connection() -> None:
    text = b'{"content": "' + b"hello " * 1000 + b'"}'

    async def gzip_until_close(n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\n\r\n")
        writer.write(gzip.compress(text))
        await writer.drain()  # and close: the body ends with the connection

    upstream = HttpUpstream(timeout=5)
    async with scripted_server(gzip_until_close) as (url, connections):
        response = await upstream.post(url, b"{}", "m")
        assert await response.read() == text
        response = await upstream.post(url, b"{}", "m")  # the closed one was not pooled
        assert await response.read() == text
        assert len(connections) == 2
    await upstream.aclose()


async def test_a_body_cut_short_is_an_upstream_error() -> None:
    async def short(n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{")
        await writer.drain()

    upstream = HttpUpstream(timeout=5)
    async with scripted_server(short) as (url, _):
        response = await upstream.post(url, b"{}", "m")
        with pytest.raises(ApiError) as caught:
            await response.read()
        assert (caught.value.status, caught.value.code) == (502, "upstream_error")
    await upstream.aclose()


async def test_a_slow_reader_pauses_the_engine_instead_of_buffering_it_all() -> None:
    written: list[int] = []
    total = 64 * 1024 * 1024

    async def flood(n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: %d\r\n\r\n" % total
        )
        block = b"x" * 65536
        for _ in range(total // len(block)):
            writer.write(block)
            await writer.drain()  # blocks once the client stops reading
            written.append(len(block))

    upstream = HttpUpstream(timeout=5)
    async with scripted_server(flood) as (url, _):
        response = await upstream.post(url, b"{}", "m")
        chunks = response.chunks()
        await anext(chunks)
        await asyncio.sleep(0.5)  # not reading: the engine must be held back
        assert sum(written) < total // 4
        response.close()
        await chunks.aclose()
    await upstream.aclose()
