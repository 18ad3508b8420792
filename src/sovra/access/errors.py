"""Every error the gateway produces itself, in one OpenAI-shaped envelope."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import JSONResponse

from sovra.errors import SovraError

__all__ = ["ApiError", "error_response"]

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    502: "upstream_error",
    503: "service_unavailable",
    504: "timeout_error",
}


class ApiError(SovraError):
    """An answer the gateway gives itself: an HTTP status, a message and a stable code."""

    def __init__(
        self, status: int, message: str, code: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = dict(headers or {})


def error_response(error: ApiError) -> JSONResponse:
    body = {
        "error": {
            "message": error.message,
            "type": _TYPES.get(error.status, "api_error"),
            "param": None,
            "code": error.code,
        }
    }
    return JSONResponse(body, status_code=error.status, headers=error.headers)
