"""The web console at `/ui`: one HTML page, one script and one style sheet, served by the gateway
itself (nothing from outside the machine). Plain HTML and a small script rather than a front-end
framework: it is one table refreshed from `GET /v1/status`, and nothing needs building or vendoring
to change it."""

from __future__ import annotations

from importlib.resources import files

from starlette.requests import Request
from starlette.responses import Response

__all__ = ["Console"]

# Only this origin's script and requests; never inside another site's frame.
_HEADERS = {
    "content-security-policy": "default-src 'self'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "cache-control": "no-cache",
}


class Console:
    """The page and its script, read once when the gateway is built."""

    def __init__(self) -> None:
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
