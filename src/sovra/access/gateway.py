"""The request path, top to bottom: authenticate → read → resolve model → pick replica → relay."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from sovra.access.accounting import CLIENT_CLOSED, Exchange
from sovra.access.affinity import prompt_prefix
from sovra.access.auth import TokenVerifier
from sovra.access.balancer import Lease, ReplicaPool
from sovra.access.bounds import Bounds, bound_request, estimate_prompt, estimate_tokens
from sovra.access.counting import count_chat_tokens, counts_itself, relay_count
from sovra.access.dialects.anthropic import chat_request as anthropic_chat
from sovra.access.dialects.base import Call, ClientApi, ClientDialect, UpstreamDialect
from sovra.access.dialects.compose import upstream_dialect
from sovra.access.errors import ApiError
from sovra.access.keys import ApiKey
from sovra.access.limits import Limits, LimitsUnavailable
from sovra.access.relay import respond
from sovra.access.response_store import ResponseStore
from sovra.access.served import Capacity, ServedModel
from sovra.access.upstream import Upstream, UpstreamResponse
from sovra.access.validation import check_no_images, parse_body
from sovra.errors import EngineError
from sovra.observe.metrics import GatewayMetrics
from sovra.routing.gate import RoutingGate, explain
from sovra.routing.router import Decision
from sovra.usage import UNKNOWN_MODEL, UsageRecord

__all__ = ["Gateway", "GatewaySettings", "UsageSink"]


# An agent's session (Claude Code's header, the Responses API's prompt_cache_key) names the prefix
# its requests share better than their first characters do: all of it lands on one replica's cache.
SESSION_HEADER = "x-claude-code-session-id"
_ANTHROPIC_HEADERS = ("anthropic-beta", "anthropic-version")
# The ledger row's id, on every answer: what a client quotes and an operator finds in `usage`.
REQUEST_ID_HEADER = "x-request-id"


def _session_key(request: Request, payload: Mapping[str, Any]) -> bytes | None:
    session = request.headers.get(SESSION_HEADER) or payload.get("prompt_cache_key")
    return f"session:{session}".encode() if isinstance(session, str) and session else None


def _anthropic_headers(request: Request) -> dict[str, str]:
    return {name: request.headers[name] for name in _ANTHROPIC_HEADERS if name in request.headers}


def _route_headers(decision: Decision) -> dict[str, str]:
    return {"x-sovra-routed-model": decision.model, "x-sovra-route-reason": decision.rule}


# llama-server reports the prompt's token count in every streamed event with this: a stream the
# client abandons is still charged for the prompt the engine processed.
_LLAMACPP_STREAM = {"timings_per_token": True}


class RefusalSampler:
    """Requests refused before any engine work (400, 403, 404, 413, 429) cost nothing, and a client
    can send thousands a second: the ledger keeps one row per key and status per second of them
    (metrics count every one). Everything else — answers, engine errors, 499s, and requests the
    router blocked (an audit trail) — gets its row."""

    REFUSED = frozenset({400, 403, 404, 413, 429})

    def __init__(self, limit: int = 100_000) -> None:
        self._last: dict[tuple[str, int], int] = {}
        self._limit = limit

    def keep(self, record: UsageRecord, error_type: str) -> bool:
        if record.status not in self.REFUSED or record.input_tokens or error_type == "content_policy":
            return True
        second = int(record.at)
        slot = (record.key_id, record.status)
        if self._last.get(slot) == second:
            return False
        if len(self._last) >= self._limit:
            self._last.clear()
        self._last[slot] = second
        return True


class UsageSink(Protocol):
    """Where finished requests go: the UsageLedger, or an in-memory list in tests."""

    async def record(self, record: UsageRecord) -> bool: ...


MODEL_HEADER = "x-ai-eg-model"  # Envoy AI Gateway's header; it wins over the body's `model`
log = logging.getLogger("sovra.access")


@dataclass(frozen=True)
class GatewaySettings:
    max_body_bytes: int = 16 * 1024 * 1024
    # Reserved against token limits when a request does not say how many tokens it may generate.
    default_max_tokens: int = 512
    # Request header whose value labels metrics by tenant (else the key's tenant), as Envoy AI Gateway.
    tenant_header: str = "x-tenant-id"
    max_messages: int = 1_000  # in one request (bounds.py)
    max_response_bytes: int = 32 * 1024 * 1024  # a whole (non-streamed) answer, buffered
    # Stored API keys are served from the last read of the database for at most this long.
    stored_keys_max_stale_seconds: float = 60.0
    metrics_auth: bool = False  # /metrics only with an operator token
    responses_retention_days: float = 30.0  # stored responses are removed after this
    # A request for a model with no ready replica that can load waits this long for one, then 503.
    load_wait_seconds: float = 300.0
    load_queue_length: int = 256  # requests held per model while it loads; more are refused (503)


_client: contextvars.ContextVar[Request | None] = contextvars.ContextVar("client", default=None)


async def _client_left() -> None:
    """Returns when the client of the request being handled has hung up (never, outside one)."""
    request = _client.get()
    if request is None:
        await asyncio.Event().wait()
        return
    while (await request.receive())["type"] != "http.disconnect":
        pass


class Gateway:
    def __init__(
        self,
        served: Mapping[str, ServedModel],
        verifier: TokenVerifier,
        upstream: Upstream,
        settings: GatewaySettings | None = None,
        usage: UsageSink | None = None,
        limits: Limits | None = None,
        metrics: GatewayMetrics | None = None,
        gate: RoutingGate | None = None,
        responses: ResponseStore | None = None,
        capacity: Capacity | None = None,
    ) -> None:
        self._served = served
        self._capacity = capacity
        self._held: dict[str, int] = {}  # requests waiting for a replica, per service
        self._responses = responses
        self._gate = gate
        self._verifier = verifier
        self._upstream = upstream
        self._usage = usage
        self._limits = limits
        self.metrics = metrics or GatewayMetrics()
        self._background: set[asyncio.Task[None]] = set()
        self._settings = settings or GatewaySettings()
        self._bounds = Bounds(self._settings.default_max_tokens, self._settings.max_messages)
        self._refusals = RefusalSampler()
        self._created = int(time.time())

    async def health(self, request: Request) -> Response:
        now = time.monotonic()
        services: dict[str, dict[str, Any]] = {}
        for name, model in self._served.items():
            pool = model.pool
            services[name] = {"ready": pool.ready_count(now), "replicas": len(pool.endpoints)}
            if self._on_demand(name):
                services[name]["state"] = "unloaded"  # loaded by its first request: nothing wrong
            if failures := pool.failures():
                # Gave up after repeated failed starts: say why, so nobody has to dig in the logs.
                services[name] |= {"failed": len(failures), "reason": failures[0]}
        ok = all(s["ready"] > 0 or s["replicas"] == 0 or "state" in s for s in services.values())
        return JSONResponse({"status": "ok" if ok else "degraded", "services": services}, 200 if ok else 503)

    @property
    def _models(self) -> frozenset[str]:
        """The names clients may ask for: the served models (a catalog reload changes them) and the
        router's virtual ones."""
        return frozenset({*self._served, *(self._gate.virtual_models if self._gate else ())})

    def _on_demand(self, service: str) -> bool:
        return self._capacity is not None and self._capacity.state(service) == "unloaded"

    def authorize_operator(self, request: Request) -> None:
        """Refuse a request without an operator token (401 without a token, 403 with a tenant's)."""
        key = self._authenticate(request)
        if self._verifier.is_stored(key):
            raise ApiError(403, f"{request.scope['path']} needs an operator token", "operator_only")

    async def status(self, request: Request) -> Response:
        """`GET /v1/status` (operator tokens): each local service's state, replicas, requests in
        flight and held, loads on demand and idle time."""
        self.authorize_operator(request)
        services: dict[str, Any] = {}
        for name, model in self._served.items():
            described = dict(self._capacity.describe(name)) if self._capacity else {}
            described.setdefault("state", "remote")  # a provider, or an engine run elsewhere
            services[name] = described | {
                "in_flight": model.pool.in_flight(),
                "held": self._held.get(name, 0),
            }
        return JSONResponse({"object": "status", "services": services})

    async def load(self, request: Request) -> Response:
        """`POST /v1/status/{id}/load` (operator tokens): load a service now; its state once ready."""
        name = self._local_service(request)
        assert self._capacity is not None
        await self._hold(name, name)
        return JSONResponse({"service": name, **self._capacity.describe(name)})

    async def unload(self, request: Request) -> Response:
        """`POST /v1/status/{id}/unload` (operator tokens): stop a service's replicas now."""
        name = self._local_service(request)
        assert self._capacity is not None
        stopped = await self._capacity.unload(name)
        return JSONResponse({"service": name, "stopped": stopped, **self._capacity.describe(name)})

    def _local_service(self, request: Request) -> str:
        self.authorize_operator(request)
        name = str(request.path_params["id"])
        if self._capacity is None or self._capacity.state(name) is None:
            raise ApiError(404, f"no service {name!r} runs on this machine", "model_not_found")
        return name

    async def prometheus(self, request: Request) -> Response:
        if self._settings.metrics_auth:
            self.authorize_operator(request)
        # Rendering takes ~1 s per 100k series: never on the event loop that serves requests.
        body = await asyncio.to_thread(self.metrics.exposition)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    async def models(self, request: Request) -> Response:
        """`GET /v1/models`: each model the key may use, with what it can do (its card); in
        Anthropic's list shape for a client that sends `anthropic-version` (Claude Code's picker)."""
        key = self._authenticate(request)
        names = [name for name in self._model_names() if key.may_use(name)]
        if "anthropic-version" in request.headers:
            data = [self._anthropic_model(name) for name in names]
            first, last = (names[0], names[-1]) if names else (None, None)
            return JSONResponse({"data": data, "has_more": False, "first_id": first, "last_id": last})
        return JSONResponse({"object": "list", "data": [self._model(name) for name in names]})

    async def model(self, request: Request) -> Response:
        """`GET /v1/models/{id}`."""
        key = self._authenticate(request)
        name = request.path_params["id"]
        if name not in self._models or not key.may_use(name):
            raise ApiError(404, f"the model {name!r} does not exist", "model_not_found")
        if "anthropic-version" in request.headers:
            return JSONResponse(self._anthropic_model(name))
        return JSONResponse(self._model(name))

    def _model_names(self) -> list[str]:
        return [*self._served, *(sorted(self._gate.virtual_models) if self._gate is not None else [])]

    def _model(self, name: str) -> dict[str, Any]:
        described: dict[str, Any] = {
            "id": name,
            "object": "model",
            "created": self._created,
            "owned_by": "sovra",
        }
        served = self._served.get(name)
        if served is None:  # a virtual model: the router picks one of the others per request
            return described | {"capabilities": ["chat"], "routed": True}
        return described | served.card.describe()

    def _anthropic_model(self, name: str) -> dict[str, Any]:
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._created))
        return {"type": "model", "id": name, "display_name": name, "created_at": created}

    async def stored_response(self, request: Request) -> Response:
        """`GET /v1/responses/{id}`, and `DELETE`: the key's own tenant's stored responses only."""
        key = self._authenticate(request)
        response_id = request.path_params["id"]
        if self._responses is not None and request.method == "DELETE":
            if await self._responses.delete(key.tenant, response_id):
                return JSONResponse({"id": response_id, "object": "response", "deleted": True})
        elif self._responses is not None and (stored := await self._responses.get(key.tenant, response_id)):
            return JSONResponse(stored.response)
        raise ApiError(404, f"no response {response_id!r}", "response_not_found")

    async def response_input_items(self, request: Request) -> Response:
        """`GET /v1/responses/{id}/input_items`: the conversation's input up to that response."""
        key = self._authenticate(request)
        response_id = request.path_params["id"]
        stored = await self._responses.get(key.tenant, response_id) if self._responses is not None else None
        if stored is None:
            raise ApiError(404, f"no response {response_id!r}", "response_not_found")
        items = list(stored.input_items)
        if request.query_params.get("order", "desc") == "desc":
            items.reverse()
        first, last = (items[0].get("id"), items[-1].get("id")) if items else (None, None)
        page = {"object": "list", "data": items, "first_id": first, "last_id": last, "has_more": False}
        return JSONResponse(page)

    def counter(self, api: ClientApi) -> Callable[[Request], Awaitable[Response]]:
        """The handler that counts a request's prompt tokens in `api`'s shape, without generating:
        `/v1/messages/count_tokens` (Anthropic's) or `/v1/responses/input_tokens` (OpenAI's)."""
        return self._handler(api, self._count)

    async def _count(self, request: Request, api: ClientApi) -> Response:
        key = self._authenticate(request)
        exchange = Exchange(key, request.scope["path"])  # for the names only: counting is not metered
        payload, _ = await self._read_json(request)
        anthropic = exchange.endpoint == "/v1/messages/count_tokens"
        if anthropic:  # counted as the answer would be: max_tokens does not change the prompt
            chat = anthropic_chat({**payload, "max_tokens": payload.get("max_tokens") or 1}, "")
        else:
            _, chat = await api.begin(payload, key)
        model = self._requested_model(request, payload, exchange)
        if not key.may_use(model):
            raise ApiError(403, f"this key may not use the model {model!r}", "model_not_allowed")
        decision = self._route(model, key, chat)
        served = self._serving(decision.model if decision is not None else model, exchange)
        own = counts_itself(served)
        if not own and served.api != ("anthropic" if anthropic else "openai"):
            message = f"the provider of {served.name!r} cannot count tokens in this API's shape"
            raise ApiError(400, message, "unsupported_endpoint")
        lease = await self._lease(served.pool, served.name, exchange, prompt_prefix(chat))
        endpoint = lease.endpoint
        ok = False
        try:
            if own:
                count = await count_chat_tokens(
                    self._upstream, endpoint.base_url, endpoint.headers, served, chat
                )
            else:  # a provider speaking this API: its own count
                path = "/v1/messages/count_tokens" if anthropic else "/v1/responses/input_tokens"
                url = endpoint.base_url + path
                count = await relay_count(self._upstream, url, endpoint.headers, served, payload)
            ok = True
        finally:
            lease.release(ok, time.monotonic())
        if anthropic:
            return JSONResponse({"input_tokens": count})
        return JSONResponse({"object": "response.input_tokens", "input_tokens": count})

    def endpoint(self, api: ClientApi) -> Callable[[Request], Awaitable[Response]]:
        """The handler for an API clients speak (its errors in its envelope)."""
        return self._handler(api, self._serve)

    @staticmethod
    def _handler(
        api: ClientApi, work: Callable[[Request, ClientApi], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            _client.set(request)  # what a held request watches for its client leaving
            try:
                return await work(request, api)
            except ApiError as error:
                return api.error(error)

        return handle

    async def _serve(self, request: Request, api: ClientApi) -> Response:
        key = self._authenticate(request)
        exchange = Exchange(key, request.scope["path"])  # not request.url: it builds a whole URL
        # Only an operator token (a trusted front such as Envoy) may say which tenant a request is
        # for; a tenant's own key labels its traffic as its own.
        trusted = not self._verifier.is_stored(key)
        labelled = (trusted and request.headers.get(self._settings.tenant_header)) or key.tenant
        exchange.tenant_label = self.metrics.tenant_label(labelled)
        try:
            payload, raw = await self._read_json(request)
            session = _session_key(request, payload)
            client, begun = await api.begin(payload, key)
            if begun is not payload:  # the client's API is not OpenAI's: its chat request goes on
                payload, raw = begun, json.dumps(begun).encode()
            model = self._requested_model(request, payload, exchange)
            if not key.may_use(model):
                raise ApiError(403, f"this key may not use the model {model!r}", "model_not_allowed")
            decision = self._route(model, key, payload)
            if decision is not None:
                model = decision.model
                if decision.redact:
                    payload = decision.apply(payload)
                    raw = json.dumps(payload).encode()
            served = self._serving(model, exchange)
            limited = self._limits is not None and key.limited
            window = served.context_window
            bounded = bound_request(
                exchange.endpoint, payload, self._bounds, limited=limited, context_window=window
            )
            if bounded is not None:
                payload, raw = bounded, json.dumps(bounded).encode()
            exchange.prompt_estimate = estimate_prompt(payload, raw)
            stream_fields = _LLAMACPP_STREAM if served.provider == "llama.cpp" else {}
            call = client.request(exchange.endpoint, payload, raw, model, served.upstream_name, stream_fields)
            if not served.images:
                check_no_images(payload, model)
            translate = upstream_dialect(served.api, call)
            call = translate.request(call, served.upstream_name)
            if served.api == "anthropic":  # the client's Anthropic headers reach an Anthropic provider
                call = replace(call, headers=_anthropic_headers(request))
            await self._admit(key, payload, exchange)
            dialects = (client, translate)
            affinity = session or prompt_prefix(payload)
            response = await self._send(served.pool, call, dialects, exchange, affinity)
            if decision is not None:
                response.headers.update(_route_headers(decision))
            response.headers[REQUEST_ID_HEADER] = exchange.request_id
            return response
        except ApiError as error:
            exchange.status = error.status
            exchange.error_type = error.code
            error.headers[REQUEST_ID_HEADER] = exchange.request_id
            await self._finish(exchange)
            raise

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` in the background, holding a reference until it is done."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _admit(self, key: ApiKey, payload: dict[str, Any], exchange: Exchange) -> None:
        """Reserve what the request may cost against the key's limits, or refuse it with 429."""
        if self._limits is None or not key.limited:
            return
        estimate = estimate_tokens(
            exchange.endpoint, payload, exchange.prompt_estimate, self._settings.default_max_tokens
        )
        try:
            admission = await self._limits.admit(key, estimate, time.time())
        except LimitsUnavailable as exc:
            raise ApiError(503, f"{exc}; retry shortly", "limits_unavailable", {"retry-after": "2"}) from exc
        if not admission.allowed:
            self.metrics.rate_limited.labels(admission.limit, exchange.tenant_label).inc()
            wait = max(1, math.ceil(admission.retry_after))
            code = "budget_exceeded" if admission.limit == "budget" else "rate_limit_exceeded"
            message = f"this key's {admission.limit} limit is reached; retry in {wait} s"
            raise ApiError(429, message, code, {"retry-after": str(wait)})
        exchange.reserved, exchange.reserved_locally = admission.reserved, admission.local

    async def _finish(self, exchange: Exchange) -> None:
        """The request is over: settle its reservation, commit its ledger row (bounded wait), and
        log it (no prompt text)."""
        if exchange.lease is not None:
            exchange.lease.release(exchange.status < 500, time.monotonic())
        record = exchange.record()
        if self._limits is not None and exchange.reserved:
            try:
                await self._limits.settle(
                    exchange.key, exchange.reserved, exchange.tokens, time.time(), exchange.reserved_locally
                )
            except Exception:  # never at the cost of the ledger row, nor of the answer's end
                log.exception("settling a reservation failed", extra={"key": exchange.key.id})
        served = self._served.get(record.served_model)
        provider = served.provider if served is not None else "sovra"
        self.metrics.observe(record, provider, exchange.tenant_label, exchange.error_type)
        if self._usage is not None and self._refusals.keep(record, exchange.error_type):
            await self._usage.record(record)
        log.info(
            "request",
            extra={
                "id": record.request_id,
                "path": record.endpoint,
                "model": record.served_model,
                "tenant": record.tenant,
                "key": record.key_id,
                "status": record.status,
                "input_tokens": record.input_tokens,
                "output_tokens": record.output_tokens,
                "ttft_ms": record.ttft_ms,
                "ms": record.duration_ms,
            },
        )

    def _authenticate(self, request: Request) -> ApiKey:
        key = self._verifier.verify(request.headers)
        if key is None:
            raise ApiError(
                401, "missing or invalid bearer token", "invalid_api_key", {"www-authenticate": "Bearer"}
            )
        stale = self._settings.stored_keys_max_stale_seconds
        if self._verifier.stored_keys_age() > stale and self._verifier.is_stored(key):
            # The database has been unreachable for a while: this key may have been revoked since.
            message = f"API keys could not be re-read from the database for over {stale:.0f} s"
            raise ApiError(503, message, "keys_unavailable", {"retry-after": "2"})
        return key

    async def _read_json(self, request: Request) -> tuple[dict[str, Any], bytes]:
        limit = self._settings.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise ApiError(413, f"request body exceeds {limit} bytes", "request_too_large")
        body = bytearray()  # appending to bytes would copy the whole body at every chunk
        try:
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise ApiError(413, f"request body exceeds {limit} bytes", "request_too_large")
        except ClientDisconnect as exc:  # it went away, or was cut off for sending too slowly
            raise ApiError(
                CLIENT_CLOSED, "the client closed the connection mid-request", "client_closed"
            ) from exc
        raw = bytes(body)
        payload = parse_body(raw)
        return payload, raw

    def _requested_model(self, request: Request, payload: dict[str, Any], exchange: Exchange) -> str:
        model = request.headers.get(MODEL_HEADER) or payload.get("model")
        if not isinstance(model, str) or not model:
            raise ApiError(
                400, "'model' is required (in the body or the x-ai-eg-model header)", "model_required"
            )
        # A name the catalog does not know is the client's invention: not stored, nor a metrics label.
        exchange.requested_model = model if model in self._models else UNKNOWN_MODEL
        return model

    def _serving(self, model: str, exchange: Exchange) -> ServedModel:
        served = self._served.get(model)
        if served is None:
            raise ApiError(404, f"the model {model!r} does not exist", "model_not_found")
        exchange.served_model = model
        return served

    def _route(self, model: str, key: ApiKey, payload: dict[str, Any]) -> Decision | None:
        """The router's decision for this request (None when it has nothing to do with it); a
        blocked request is refused here, with 400 `content_policy`."""
        if self._gate is None:
            return None
        decision = self._gate.decide(model, key.tenant, payload)
        if decision is None:
            return None
        self.metrics.observe_decision(decision.rule, decision.action, decision.redact, decision.seconds)
        if decision.action == "block":
            raise ApiError(400, decision.message, "content_policy", _route_headers(decision))
        return decision

    async def explain_route(self, request: Request) -> Response:
        """`POST /v1/route`: the decision for a request body, and why, without calling a model."""
        key = self._authenticate(request)
        if self._gate is None:
            raise ApiError(404, "the router is not enabled", "router_disabled")
        payload, _ = await self._read_json(request)
        model = request.headers.get(MODEL_HEADER) or payload.get("model")
        if not isinstance(model, str) or not model:
            model = min(self._gate.virtual_models)
        if not key.may_use(model):
            raise ApiError(403, f"this key may not use the model {model!r}", "model_not_allowed")
        explicit = None if self._gate.is_virtual(model) else model
        router = self._gate.router
        return JSONResponse(explain(router.decide(payload, explicit_model=explicit), router.thresholds))

    async def _send(
        self,
        pool: ReplicaPool,
        call: Call,
        dialects: tuple[ClientDialect, UpstreamDialect],
        exchange: Exchange,
        affinity: bytes | None,
    ) -> Response:
        """Relay to the endpoint the balancer picks; if it cannot be reached, try one other."""
        lease = await self._lease(pool, call.model, exchange, affinity)
        try:
            answer = await self._post(lease, call)
        except ApiError as error:
            unreachable = error.code == "upstream_unreachable"
            exchange.lease = None
            lease.release(False, time.monotonic(), unreachable)
            self.metrics.upstream_errors.labels(pool.service, error.code).inc()
            if not unreachable or pool.pick(time.monotonic(), affinity, lease.index) is None:
                raise
            self.metrics.retries.labels("another_replica").inc()
            lease = await self._lease(pool, call.model, exchange, affinity, exclude=lease)
            answer = await self._post(lease, call)
        if answer.status < 500:
            lease.answered(time.monotonic())
        return await respond(
            answer,
            call,
            dialects,
            exchange,
            lambda: self._finish(exchange),
            self._spawn,
            self._settings.max_response_bytes,
        )

    async def _hold(self, service: str, model: str) -> None:
        """Wait, in a bounded queue per service, until the supervisor has a replica ready."""
        assert self._capacity is not None
        held = self._held.get(service, 0)
        if held >= self._settings.load_queue_length:
            message = f"{model!r} is loading and {held} requests already wait for it"
            raise ApiError(503, message, "model_loading", {"retry-after": "5"})
        self._held[service] = held + 1
        loaded = asyncio.ensure_future(self._capacity.wait_for_replica(service))
        gone = asyncio.ensure_future(_client_left())
        try:
            async with asyncio.timeout(self._settings.load_wait_seconds):
                await asyncio.wait({loaded, gone}, return_when=asyncio.FIRST_COMPLETED)
            if loaded.done() and isinstance(loaded.exception(), EngineError):  # it does not fit
                raise ApiError(503, str(loaded.exception()), "insufficient_memory", {"retry-after": "30"})
            if not loaded.done():  # the client hung up: it leaves the queue (the load goes on)
                raise ApiError(
                    CLIENT_CLOSED, "the client closed the connection while the model loaded", "client_closed"
                )
        except TimeoutError:
            waited = f"{self._settings.load_wait_seconds:g} s"
            raise ApiError(
                503, f"{model!r} was not ready within {waited}", "model_loading", {"retry-after": "10"}
            ) from None
        finally:
            self._held[service] -= 1
            loaded.cancel()
            gone.cancel()

    async def _post(self, lease: Lease, call: Call) -> UpstreamResponse:
        endpoint = lease.endpoint
        headers = {**endpoint.headers, **call.headers} if call.headers else endpoint.headers
        return await self._upstream.post(endpoint.base_url + call.path, call.body, call.model, headers)

    async def _lease(
        self,
        pool: ReplicaPool,
        model: str,
        exchange: Exchange,
        affinity: bytes | None,
        exclude: Lease | None = None,
    ) -> Lease:
        """Borrow an endpoint for this request; the lease is released when the request ends. With
        none ready but one loading (or loadable), the request is held until it is ready."""
        lease = pool.lease(time.monotonic(), affinity, exclude)
        if lease is None and exclude is None and self._capacity and self._capacity.can_load(pool.service):
            await self._hold(pool.service, model)
            lease = pool.lease(time.monotonic(), affinity, exclude)
        if lease is None:
            raise ApiError(503, f"no ready replica for {model!r}", "model_unavailable", {"retry-after": "1"})
        exchange.lease = lease
        self.metrics.replica_picks.labels(pool.service, str(lease.index)).inc()
        return lease
