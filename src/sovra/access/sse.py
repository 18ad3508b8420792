"""Server-sent events: the `data:` payloads of an event stream, however its bytes are chunked."""

from __future__ import annotations

from collections.abc import AsyncIterator

__all__ = ["data_payloads"]


async def data_payloads(stream: AsyncIterator[bytes]) -> AsyncIterator[str]:
    buffer = b""
    async for chunk in stream:
        buffer += chunk.replace(b"\r\n", b"\n")
        while b"\n\n" in buffer:
            event, buffer = buffer.split(b"\n\n", 1)
            for line in event.split(b"\n"):
                if line.startswith(b"data:"):
                    yield line[5:].strip().decode()
