"""Server-sent events: encoding one, and the `data:` payloads of a stream however it is chunked."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

__all__ = ["data_event", "data_payloads"]


def data_event(payload: dict[str, Any]) -> bytes:
    """One server-sent event carrying `payload` as compact JSON."""
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


async def data_payloads(stream: AsyncIterator[bytes]) -> AsyncIterator[str]:
    buffer = b""
    async for chunk in stream:
        buffer += chunk.replace(b"\r\n", b"\n")
        while b"\n\n" in buffer:
            event, buffer = buffer.split(b"\n\n", 1)
            for line in event.split(b"\n"):
                if line.startswith(b"data:"):
                    yield line[5:].strip().decode()
