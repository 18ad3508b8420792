"""The ASGI application: routes, error handlers, and the upstream HTTP client's lifetime."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sovra.access.auth import TokenVerifier
from sovra.access.dialects.anthropic import ANTHROPIC_CLIENT
from sovra.access.dialects.openai import OPENAI_CLIENT
from sovra.access.errors import ApiError, error_response
from sovra.access.gateway import Gateway, GatewaySettings, UsageSink
from sovra.access.keys import KeyStore
from sovra.access.ledger import UsageLedger
from sovra.access.limits import Limits
from sovra.access.served import ServedModel
from sovra.access.upstream import HttpUpstream, Upstream
from sovra.database import Database
from sovra.observe.metrics import GatewayMetrics
from sovra.routing.gate import RoutingGate

__all__ = ["create_app"]

log = logging.getLogger("sovra.access")


def create_app(
    served: Mapping[str, ServedModel],
    verifier: TokenVerifier,
    settings: GatewaySettings | None = None,
    upstream_timeout: float = 600.0,
    upstream: Upstream | None = None,
    database: Database | None = None,
    usage: UsageSink | None = None,
    limits: Limits | None = None,
    journal_dir: Path | None = None,
    gate: RoutingGate | None = None,
) -> Starlette:
    """The gateway app. `upstream` reaches the engines and `usage` receives finished requests (tests
    pass in-memory fakes); `database` holds API keys (refreshed every few seconds, so `sovra keys
    revoke` takes effect quickly) and, unless `usage` is given, the usage ledger, with its write-ahead
    journal in `journal_dir` if given."""
    metrics = GatewayMetrics()
    stale_retries = metrics.retries.labels("stale_connection")
    engines = upstream or HttpUpstream(upstream_timeout, on_retry=stale_retries.inc)
    ledger = (
        UsageLedger(database, journal_dir=journal_dir) if database is not None and usage is None else None
    )
    gateway = Gateway(served, verifier, engines, settings, usage or ledger, limits, metrics, gate)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        refresher = None
        if database is not None:
            await asyncio.to_thread(_load_keys, database, verifier)
            refresher = asyncio.create_task(_refresh_keys(database, verifier))
        if ledger is not None:
            await asyncio.to_thread(ledger.start)
        yield
        if refresher is not None:
            refresher.cancel()
        await engines.aclose()
        if ledger is not None:
            await asyncio.to_thread(ledger.close)

    openai, messages = gateway.endpoint(OPENAI_CLIENT), gateway.endpoint(ANTHROPIC_CLIENT)
    routes = [  # matched in order: the busiest first
        Route("/v1/chat/completions", openai, methods=["POST"]),
        Route("/v1/completions", openai, methods=["POST"]),
        Route("/v1/messages", messages, methods=["POST"]),
        Route("/v1/embeddings", openai, methods=["POST"]),
        Route("/v1/route", gateway.explain_route, methods=["POST"]),
        Route("/v1/models", gateway.models, methods=["GET"]),
        Route("/health", gateway.health, methods=["GET"]),
        Route("/metrics", gateway.prometheus, methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={ApiError: _api_error, HTTPException: _http_error, Exception: _unexpected},
    )


KEY_REFRESH_SECONDS = 2.0


def _load_keys(database: Database, verifier: TokenVerifier) -> None:
    with database.session() as db:
        verifier.use_stored_keys(KeyStore(db).all())


async def _refresh_keys(database: Database, verifier: TokenVerifier) -> None:
    while True:
        await asyncio.sleep(KEY_REFRESH_SECONDS)
        try:
            await asyncio.to_thread(_load_keys, database, verifier)
        except Exception as exc:  # a database hiccup keeps the last known keys (for a bounded time)
            log.warning(
                "could not refresh API keys; keeping the previous set",
                extra={
                    "error": f"{type(exc).__name__}: {exc}",
                    "age_s": round(verifier.stored_keys_age(), 1),
                },
            )


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)  # the model endpoints answer in their own dialect's envelope
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        return error_response(
            ApiError(405, f"{request.method} is not allowed on {request.url.path}", "method_not_allowed")
        )
    return error_response(ApiError(exc.status_code, f"no route for {request.url.path}", "not_found"))


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error", extra={"path": request.url.path})
    return error_response(ApiError(500, "internal error in the gateway", "internal_error"))
