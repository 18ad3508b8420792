"""The ASGI application: routes, error handlers, and the upstream HTTP client's lifetime."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Mapping

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sovra.access.auth import TokenVerifier
from sovra.access.errors import ApiError, error_response
from sovra.access.gateway import Gateway, GatewaySettings
from sovra.access.upstream import AiohttpUpstream, Upstream
from sovra.inference.pool import ReplicaPool

__all__ = ["create_app"]

log = logging.getLogger("sovra.access")


def create_app(
    pools: Mapping[str, ReplicaPool],
    verifier: TokenVerifier,
    settings: GatewaySettings | None = None,
    upstream_timeout: float = 600.0,
    upstream: Upstream | None = None,
) -> Starlette:
    """The gateway app; `upstream` reaches the engines (tests pass an in-memory fake)."""
    engines = upstream or AiohttpUpstream(upstream_timeout)
    gateway = Gateway(pools, verifier, engines, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await engines.aclose()

    routes = [
        Route("/health", gateway.health, methods=["GET"]),
        Route("/v1/models", gateway.models, methods=["GET"]),
        Route("/v1/chat/completions", gateway.relay, methods=["POST"]),
        Route("/v1/completions", gateway.relay, methods=["POST"]),
        Route("/v1/embeddings", gateway.relay, methods=["POST"]),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={ApiError: _api_error, HTTPException: _http_error, Exception: _unexpected},
    )


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
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
