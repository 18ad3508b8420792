"""Bearer tokens: kept only as SHA-256 digests, compared in constant time, never logged."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Caller", "TokenVerifier"]


@dataclass(frozen=True)
class Caller:
    name: str  # the token's name from the config, never the token itself


class TokenVerifier:
    def __init__(self, digests: Mapping[str, str], *, open_access: bool = False) -> None:
        """`digests` maps token name → hex SHA-256 of the token; `open_access` admits everyone."""
        self._digests = [(name, bytes.fromhex(digest)) for name, digest in digests.items()]
        self.open_access = open_access

    @staticmethod
    def digest(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def verify(self, headers: Mapping[str, str]) -> Caller | None:
        if self.open_access:
            return Caller("anonymous")
        token = _presented_token(headers)
        if token is None:
            return None
        digest = hashlib.sha256(token.encode()).digest()
        found = None
        for name, expected in self._digests:  # no early exit: time does not depend on which matched
            if hmac.compare_digest(digest, expected):
                found = Caller(name)
        return found


def _presented_token(headers: Mapping[str, str]) -> str | None:
    authorization = headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key") or None  # what Anthropic-style clients send
