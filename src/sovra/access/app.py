"""The ASGI application: routes, error handlers, and the lifetime of what requests share.

Starlette's Request and responses are used as they are; its application and router are not. The
gateway serves a dozen fixed paths, and Starlette's stack (an error middleware, an exception
middleware, a router matching a pattern per route, a handler wrapper) wraps every `send` three
times: a fifth of a plain request's cost, more for a stream. `GatewayApp` is that stack in the
few lines they need.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from sovra.access.auth import TokenVerifier
from sovra.access.console import Console
from sovra.access.dialects.anthropic import ANTHROPIC_CLIENT
from sovra.access.dialects.openai import OPENAI_CLIENT
from sovra.access.dialects.responses import ResponsesClient
from sovra.access.errors import ApiError, error_response
from sovra.access.gateway import Gateway, GatewaySettings, UsageSink
from sovra.access.keys import KeyStore
from sovra.access.ledger import UsageLedger
from sovra.access.limits import Limits
from sovra.access.response_store import DatabaseResponses, MemoryResponses
from sovra.access.served import Capacity, ServedModel
from sovra.access.upstream import HttpUpstream, Upstream
from sovra.database import Database
from sovra.observe.metrics import GatewayMetrics
from sovra.routing.gate import RoutingGate

__all__ = ["GatewayApp", "create_app"]

log = logging.getLogger("sovra.access")

Handler = Callable[[Request], Awaitable[Response]]


class GatewayApp:
    """Exact paths to handlers; any error a handler raises answered in OpenAI's envelope (the model
    endpoints answer theirs in their own dialect before it gets here); the ASGI lifespan."""

    def __init__(
        self,
        routes: Mapping[str, Mapping[str, Handler]],
        lifespan: Callable[[], contextlib.AbstractAsyncContextManager[None]],
    ) -> None:
        self._routes = {path: methods for path, methods in routes.items() if "{" not in path}
        # Paths with a `{name}` segment: matched segment by segment, after the exact ones.
        self._templates = [(path.split("/"), methods) for path, methods in routes.items() if "{" in path]
        self.lifespan = lifespan

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            response = await self._respond(Request(scope, receive))
            await response(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._live(receive, send)
        else:  # a websocket: refused before it is accepted
            await send({"type": "websocket.close", "code": 1008})

    async def _respond(self, request: Request) -> Response:
        path, method = request.scope["path"], request.scope["method"]
        try:
            methods = self._routes.get(path) or self._match(request.scope)
            if methods is None:
                raise ApiError(404, f"no route for {path}", "not_found")
            handler = methods.get(method)
            if handler is None:
                allowed = ", ".join(methods)
                message = f"{method} is not allowed on {path}"
                raise ApiError(405, message, "method_not_allowed", {"allow": allowed})
            return await handler(request)
        except ApiError as error:
            return error_response(error)
        except Exception:
            log.exception("unexpected error", extra={"path": path})
            return error_response(ApiError(500, "internal error in the gateway", "internal_error"))

    def _match(self, scope: Scope) -> Mapping[str, Handler] | None:
        path = scope["path"].split("/")
        for template, methods in self._templates:
            segments = path
            if template[-1].endswith(":path}") and len(path) > len(template):  # the rest, slashes too
                segments = [*path[: len(template) - 1], "/".join(path[len(template) - 1 :])]
            if len(template) != len(segments):
                continue
            params = {}
            for expected, segment in zip(template, segments, strict=True):
                if expected.startswith("{"):
                    if not segment:
                        break
                    params[expected.strip("{}").removesuffix(":path")] = segment
                elif expected != segment:
                    break
            else:
                scope["path_params"] = params
                return methods
        return None

    async def _live(self, receive: Receive, send: Send) -> None:
        await receive()  # lifespan.startup
        async with contextlib.AsyncExitStack() as stack:
            try:
                await stack.enter_async_context(self.lifespan())
            except Exception as exc:
                log.exception("the gateway could not start")
                await send({"type": "lifespan.startup.failed", "message": f"{type(exc).__name__}: {exc}"})
                return
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
        await send({"type": "lifespan.shutdown.complete"})


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
    capacity: Capacity | None = None,
) -> GatewayApp:
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
    chosen = settings or GatewaySettings()
    retention = chosen.responses_retention_days * 86400
    responses = DatabaseResponses(database, retention) if database is not None else MemoryResponses(retention)
    gateway = Gateway(
        served, verifier, engines, chosen, usage or ledger, limits, metrics, gate, responses, capacity
    )

    @contextlib.asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        refresher = None
        if database is not None:
            await asyncio.to_thread(_load_keys, database, verifier)
            refresher = asyncio.create_task(_refresh_keys(database, verifier))
        if ledger is not None:
            await asyncio.to_thread(ledger.start)
        elif database is not None:
            await asyncio.to_thread(database.migrate)  # the stored responses' table
        try:
            yield
        finally:
            if refresher is not None:
                refresher.cancel()
            await engines.aclose()
            if ledger is not None:
                await asyncio.to_thread(ledger.close)

    openai, messages = gateway.endpoint(OPENAI_CLIENT), gateway.endpoint(ANTHROPIC_CLIENT)
    responses_api = ResponsesClient(responses)
    console = Console(gateway.authorize_operator, metrics, database)
    routes: dict[str, dict[str, Handler]] = {
        "/v1/chat/completions": {"POST": openai},
        "/v1/completions": {"POST": openai},
        "/v1/messages": {"POST": messages},
        "/v1/messages/count_tokens": {"POST": gateway.counter(ANTHROPIC_CLIENT)},
        "/v1/responses": {"POST": gateway.endpoint(responses_api)},
        "/v1/responses/input_tokens": {"POST": gateway.counter(responses_api)},
        "/v1/responses/{id}": {"GET": gateway.stored_response, "DELETE": gateway.stored_response},
        "/v1/responses/{id}/input_items": {"GET": gateway.response_input_items},
        "/v1/embeddings": {"POST": openai},
        "/v1/rerank": {"POST": openai},
        "/v1/route": {"POST": gateway.explain_route},
        "/v1/models": {"GET": gateway.models, "HEAD": gateway.models},
        "/v1/models/{id:path}": {"GET": gateway.model},  # a provider's alias may hold a slash
        "/health": {"GET": gateway.health, "HEAD": gateway.health},
        "/metrics": {"GET": gateway.prometheus, "HEAD": gateway.prometheus},
        "/v1/status": {"GET": gateway.status},
        "/ui": {"GET": console.page},
        "/ui/console.js": {"GET": console.script},
        "/ui/console.css": {"GET": console.style},
        "/v1/status/reports": {"GET": console.reports},
        "/v1/status/{id}/load": {"POST": gateway.load},
        "/v1/status/{id}/unload": {"POST": gateway.unload},
    }
    return GatewayApp(routes, lifespan)


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
