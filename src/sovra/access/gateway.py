"""The request path, top to bottom: authenticate → read → resolve model → pick replica → relay."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sovra.access.auth import TokenVerifier
from sovra.access.errors import ApiError
from sovra.access.keys import ApiKey
from sovra.access.relay import UpstreamCall, respond
from sovra.access.upstream import Upstream
from sovra.inference.pool import ReplicaPool

__all__ = ["Gateway", "GatewaySettings"]

MODEL_HEADER = "x-ai-eg-model"  # Envoy AI Gateway's header; it wins over the body's `model`
log = logging.getLogger("sovra.access")


@dataclass(frozen=True)
class GatewaySettings:
    max_body_bytes: int = 16 * 1024 * 1024


class Gateway:
    def __init__(
        self,
        pools: Mapping[str, ReplicaPool],
        verifier: TokenVerifier,
        upstream: Upstream,
        settings: GatewaySettings | None = None,
    ) -> None:
        self._pools = pools
        self._verifier = verifier
        self._upstream = upstream
        self._settings = settings or GatewaySettings()
        self._created = int(time.time())

    async def health(self, request: Request) -> Response:
        services = {
            name: {"ready": p.ready_count, "replicas": len(p.replicas)} for name, p in self._pools.items()
        }
        ok = all(s["ready"] > 0 or s["replicas"] == 0 for s in services.values())
        return JSONResponse({"status": "ok" if ok else "degraded", "services": services}, 200 if ok else 503)

    async def models(self, request: Request) -> Response:
        key = self._authenticate(request)
        data = [
            {"id": name, "object": "model", "created": self._created, "owned_by": "sovra"}
            for name in self._pools
            if key.may_use(name)
        ]
        return JSONResponse({"object": "list", "data": data})

    async def relay(self, request: Request) -> Response:
        started = time.perf_counter()
        key = self._authenticate(request)
        payload, raw = await self._read_json(request)
        model = self._resolve_model(request, payload)
        if not key.may_use(model):
            raise ApiError(403, f"this key may not use the model {model!r}", "model_not_allowed")
        call = UpstreamCall.for_request(request.url.path, payload, raw, model)
        response = await self._send(self._pools[model], call)
        log.info(
            "request",
            extra={
                "path": request.url.path,
                "model": model,
                "tenant": key.tenant,
                "key": key.id,
                "status": response.status_code,
                "stream": call.stream,
                "ms_to_headers": round((time.perf_counter() - started) * 1000, 1),
            },
        )
        return response

    def _authenticate(self, request: Request) -> ApiKey:
        key = self._verifier.verify(request.headers)
        if key is None:
            raise ApiError(
                401, "missing or invalid bearer token", "invalid_api_key", {"www-authenticate": "Bearer"}
            )
        return key

    async def _read_json(self, request: Request) -> tuple[dict[str, Any], bytes]:
        limit = self._settings.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise ApiError(413, f"request body exceeds {limit} bytes", "request_too_large")
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > limit:
                raise ApiError(413, f"request body exceeds {limit} bytes", "request_too_large")
        try:
            payload = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"request body is not valid JSON: {exc}", "invalid_json") from exc
        if not isinstance(payload, dict):
            raise ApiError(400, "request body must be a JSON object", "invalid_json")
        return payload, raw

    def _resolve_model(self, request: Request, payload: dict[str, Any]) -> str:
        model = request.headers.get(MODEL_HEADER) or payload.get("model")
        if not isinstance(model, str) or not model:
            raise ApiError(
                400, "'model' is required (in the body or the x-ai-eg-model header)", "model_required"
            )
        if model not in self._pools:
            raise ApiError(404, f"the model {model!r} does not exist", "model_not_found")
        return model

    async def _send(self, pool: ReplicaPool, call: UpstreamCall) -> Response:
        """Relay to a ready replica; if it cannot be reached, try one other before giving up."""
        replica = pool.pick()
        if replica is None:
            raise ApiError(
                503, f"no ready replica for {call.model!r}", "model_unavailable", {"retry-after": "1"}
            )
        try:
            answer = await self._upstream.post(replica.base_url + call.path, call.body, call.model)
        except ApiError as error:
            other = pool.pick(exclude=replica) if error.code == "upstream_unreachable" else None
            if other is None:
                raise
            answer = await self._upstream.post(other.base_url + call.path, call.body, call.model)
        return await respond(answer, call)
