"""AiohttpUpstream against a scripted HTTP server on loopback that misbehaves on purpose."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from sovra.access.errors import ApiError
from sovra.access.upstream import AiohttpUpstream
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

    upstream = AiohttpUpstream(timeout=5)
    async with scripted_server(drop_first) as (url, connections):
        response = await upstream.post(url, b"{}", "m")
        assert (response.status, await response.read()) == (200, b'{"ok": true}')
        assert len(connections) == 2
    await upstream.aclose()


async def test_two_drops_in_a_row_are_an_unreachable_engine() -> None:
    async def drop_all(n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)

    upstream = AiohttpUpstream(timeout=5)
    async with scripted_server(drop_all) as (url, connections):
        with pytest.raises(ApiError) as caught:
            await upstream.post(url, b"{}", "m")
        assert (caught.value.status, caught.value.code) == (502, "upstream_unreachable")
        assert len(connections) == 2
    await upstream.aclose()


async def test_nothing_listening_is_502_and_silence_is_504() -> None:
    upstream = AiohttpUpstream(timeout=0.3)
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

    upstream = AiohttpUpstream(timeout=5)
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
