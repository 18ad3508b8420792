"""Who is calling: bearer tokens resolved to API keys (tenant, allowed models, limits).

Tokens are kept only as SHA-256 digests. A presented token is hashed and looked up by its digest:
the lookup's timing can only reveal something about a SHA-256 output the caller cannot steer, never
about a stored secret; the match is then confirmed with a constant-time comparison. Tokens are never
logged.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterable, Mapping

from sovra.access.keys import ApiKey, digest

__all__ = ["ANONYMOUS", "TokenVerifier"]

ANONYMOUS = ApiKey(id="anonymous", tenant="anonymous", name="anonymous", digest="")


class TokenVerifier:
    def __init__(self, static: Mapping[str, str], *, open_access: bool = False) -> None:
        """`static` maps a token name → hex SHA-256 of the token (from the config or environment):
        such tokens act as a key of tenant <name> with every model and no limits."""
        self._static = {
            d: ApiKey(id=f"config:{name}", tenant=name, name=name, digest=d) for name, d in static.items()
        }
        self._stored: dict[str, ApiKey] = {}
        self._stored_at = time.monotonic()
        self.open_access = open_access

    @staticmethod
    def digest(token: str) -> str:
        return digest(token)  # one way to hash a token: keys.py's

    def use_stored_keys(self, keys: Iterable[ApiKey]) -> None:
        """Swap in the current set of active keys from the database (done on refresh)."""
        self._stored = {key.digest: key for key in keys if key.revoked_at is None}
        self._stored_at = time.monotonic()

    def stored_keys_age(self) -> float:
        """Seconds since the stored keys were last read: how late a revocation may be noticed."""
        return time.monotonic() - self._stored_at

    def is_stored(self, key: ApiKey) -> bool:
        """A key from the database (not an operator token from the config)."""
        return key.digest in self._stored

    def verify(self, headers: Mapping[str, str]) -> ApiKey | None:
        if self.open_access:
            return ANONYMOUS
        token = _presented_token(headers)
        if token is None:
            return None
        presented = self.digest(token)
        key = self._static.get(presented) or self._stored.get(presented)
        if key is None or not hmac.compare_digest(presented, key.digest):
            return None
        return key


def _presented_token(headers: Mapping[str, str]) -> str | None:
    authorization = headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key") or None  # what Anthropic-style clients send
