"""The web console at `/ui`: one HTML page, one script and one style sheet, served by the gateway
itself (nothing from outside the machine). Plain HTML and a small script rather than a front-end
framework: a few tables refreshed from `GET /v1/status` and `GET /v1/status/reports` (usage by the
hour, router decisions, evaluations: `reports.py`), a bar chart as inline SVG, and nothing to build
or vendor to change it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from importlib.resources import files
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sovra.access.console.reports import eval_history, evaluations, router_decisions, usage_by_hour
from sovra.database import Database
from sovra.observe.metrics import GatewayMetrics

if TYPE_CHECKING:
    from sovra.evals.history import EvalHistory

__all__ = ["Console"]

# Only this origin's script and requests; never inside another site's frame.
_HEADERS = {
    "content-security-policy": "default-src 'self'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "cache-control": "no-cache",
}


class Console:
    """The page and its script, read once when the gateway is built; the reports behind it."""

    def __init__(
        self, authorize: Callable[[Request], None], metrics: GatewayMetrics, database: Database | None = None
    ) -> None:
        """`authorize` refuses a request without an operator token (the gateway's own check)."""
        self._authorize = authorize
        self._metrics = metrics
        self._database = database
        self._history: EvalHistory | None = None  # migrated on the first report, not per refresh
        here = files(__package__)
        self._page = here.joinpath("index.html").read_bytes()
        self._script = here.joinpath("console.js").read_bytes()
        self._style = here.joinpath("console.css").read_bytes()

    async def page(self, request: Request) -> Response:
        return Response(self._page, media_type="text/html; charset=utf-8", headers=_HEADERS)

    async def script(self, request: Request) -> Response:
        return Response(self._script, media_type="text/javascript; charset=utf-8", headers=_HEADERS)

    async def style(self, request: Request) -> Response:
        return Response(self._style, media_type="text/css; charset=utf-8", headers=_HEADERS)

    async def reports(self, request: Request) -> Response:
        """`GET /v1/status/reports?hours=24` (operator tokens): usage by the hour, router
        decisions, latest evaluations."""
        self._authorize(request)
        try:
            hours = min(max(int(request.query_params.get("hours", "24")), 1), 24 * 31)
        except ValueError:
            hours = 24
        body: dict[str, object] = {"hours": hours, "router": router_decisions(self._metrics)}
        if self._database is not None:
            database = self._database
            body["usage"] = await asyncio.to_thread(usage_by_hour, database, time.time() - hours * 3600)
            if self._history is None:
                self._history = await asyncio.to_thread(eval_history, database)
            body["evaluations"] = await asyncio.to_thread(evaluations, self._history)
        return JSONResponse(body)
