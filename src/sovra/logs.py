"""Structured logs: one logfmt line per event (`ts=… level=… logger=… msg=… key=value …`).

Fields come from `extra=`; callers never put secrets or prompt text there.
"""

from __future__ import annotations

import logging
import re
import sys
import time

__all__ = ["LogfmtFormatter", "configure_logging"]

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


_NEEDS_QUOTES = re.compile(r'[ ="\n\t]')


def _quote(value: object) -> str:
    if type(value) is int or type(value) is float:  # the common case in a request's line: numbers
        return str(value)
    text = str(value)
    if text == "" or _NEEDS_QUOTES.search(text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


class LogfmtFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:  # one strftime a second, not one a line (a line per request)
            self._second, self._stamp = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        parts = [
            f"ts={self._stamp}.{int(record.msecs):03d}Z",
            f"level={record.levelname.lower()}",
            f"logger={record.name}",
            f"msg={_quote(record.getMessage())}",
        ]
        parts += [f"{key}={_quote(value)}" for key, value in vars(record).items() if key not in _STANDARD]
        if record.exc_info:
            parts.append(f"error={_quote(self.formatException(record.exc_info))}")
        return " ".join(parts)


def configure_logging(level: str = "info", engine_logs: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Engines are chatty (several lines per request); their output is kept for crash reports anyway.
    logging.getLogger("sovra.engine").setLevel(logging.INFO if engine_logs else logging.WARNING)
    for name in ("httpx", "httpcore", "filelock", "uvicorn.access"):
        logging.getLogger(name).setLevel(logging.WARNING)
