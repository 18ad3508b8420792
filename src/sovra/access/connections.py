"""Connections that never finish a request are closed; a client cannot hold them all.

uvicorn closes an idle keep-alive connection after a while, but nothing else: a connection that
never sends a request (or sends its head a byte at a time — slowloris) is kept forever, until the
process runs out of file descriptors and honest clients get resets. So, on top of uvicorn's HTTP
protocol (httptools):

- a request's head must be complete within `header_seconds` of the connection being made, or of
  its first byte on a reused connection; its body within `body_seconds` after the head;
- an idle keep-alive connection is closed after `idle_seconds` (uvicorn's `timeout_keep_alive`);
- at most `max_connections` are open at once, and at most `max_per_client` from one address; one
  more is closed at once.

Answers are never cut: no deadline runs while the gateway is answering (a long stream included).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import resource
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["ConnectionLimits", "guarded_protocol", "raise_open_file_limit", "uvicorn_options"]

log = logging.getLogger("sovra.connections")


@dataclass(frozen=True)
class ConnectionLimits:
    header_seconds: float = 10.0
    body_seconds: float = 60.0
    idle_seconds: float = 5.0
    max_connections: int = 4096
    max_per_client: int = 1024


class _Census:
    """Open connections, in all and by client address (one event loop: no locking needed)."""

    def __init__(self) -> None:
        self.total = 0
        self.by_client: collections.Counter[str] = collections.Counter()
        self.refused = 0


def guarded_protocol(limits: ConnectionLimits) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with deadlines and caps (pass it as `uvicorn.Config(http=…)`)."""
    census = _Census()

    class GuardedProtocol(HttpToolsProtocol):
        _deadline: asyncio.TimerHandle | None = None
        _counted: str | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            peer = self.client[0] if self.client else ""
            if census.total >= limits.max_connections or census.by_client[peer] >= limits.max_per_client:
                census.refused += 1
                if census.refused % 1000 == 1:  # a flood: say so, not once per connection
                    log.warning("connection refused: too many open", extra={"refused_total": census.refused})
                transport.abort()
                return
            census.total += 1
            census.by_client[peer] += 1
            self._counted = peer
            self._arm(limits.header_seconds)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._deadline is None:  # a reused connection: its next head starts now
                self._arm(limits.header_seconds)

        def on_headers_complete(self) -> None:
            self._arm(limits.body_seconds)
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._disarm()
            super().on_message_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if self._counted is not None:
                census.total -= 1
                census.by_client[self._counted] -= 1
                if census.by_client[self._counted] <= 0:
                    del census.by_client[self._counted]
                self._counted = None
            super().connection_lost(exc)

        def _arm(self, seconds: float) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(seconds, self._expire)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expire(self) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                self.transport.close()

    return GuardedProtocol


def raise_open_file_limit(reserve: int = 512) -> int:
    """Raise the soft open-file limit to the hard one; return how many connections it leaves room
    for beside the engines' pipes, the database and the journal (`reserve`)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return max(64, soft - reserve)


def uvicorn_options(limits: ConnectionLimits) -> dict[str, Any]:
    """What to give `uvicorn.Config` for these limits."""
    return {"http": guarded_protocol(limits), "timeout_keep_alive": limits.idle_seconds}
