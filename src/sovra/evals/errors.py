"""Why a test could not be scored: raised where it is found, caught once in the runner, which
reports the test as an error. Anything else that escapes is a bug in Sovra, and surfaces as one."""

from __future__ import annotations

from sovra.errors import SovraError

__all__ = ["EvalError", "TransportError"]


class EvalError(SovraError):
    """A test cannot run as written: its template, its transform, its grader or embedding model."""


class TransportError(EvalError):
    """The request did not get an answer (connection, timeout, 429/5xx): worth trying again."""
