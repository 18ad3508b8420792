"""The logfmt lines: one per event, values quoted only where a parser needs it."""

import io
import logging

from sovra.logs import LogfmtFormatter


def line(**extra: object) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(LogfmtFormatter())
    logger = logging.getLogger("sovra.test-logs")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.warning("a thing happened", extra=extra)
    return stream.getvalue().rstrip("\n")


def test_fields_are_quoted_only_when_they_must_be() -> None:
    text = line(status=200, ms=0.41, model="m", odd='a "b"\nc', empty="", none=None)
    assert "\n" not in text
    assert text.startswith("ts=") and text[22:23] == "." and " level=warning logger=sovra.test-logs " in text
    assert 'msg="a thing happened" status=200 ms=0.41 model=m odd="a \\"b\\"\\nc" empty="" none=None' in text


def test_the_timestamp_follows_the_clock() -> None:
    formatter = LogfmtFormatter()
    record = logging.LogRecord("x", logging.INFO, "", 0, "m", None, None)
    first = formatter.format(record)
    record.created += 3600
    assert first[:23] != formatter.format(record)[:23]
