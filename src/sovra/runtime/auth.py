"""Who may call the gateway: tokens from the config and SOVRA_API_KEY, or one generated here."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sovra.access.auth import TokenVerifier
from sovra.config import PlatformConfig
from sovra.errors import ConfigError, Problem

__all__ = ["AuthSetup", "client_token", "resolve_verifier"]


@dataclass(frozen=True)
class AuthSetup:
    verifier: TokenVerifier
    notice: str  # what to tell the user about how to authenticate


def resolve_verifier(config: PlatformConfig, environ: Mapping[str, str], open_access: bool) -> AuthSetup:
    """Tokens from the config and SOVRA_API_KEY; with none, a generated one kept in <home>/api-token."""
    if open_access or config.auth.disabled:
        if not config.listen.is_loopback:
            raise ConfigError([Problem("command line", "--no-auth", "only allowed on a loopback address")])
        return AuthSetup(TokenVerifier({}, open_access=True), "auth: off (loopback only)")
    digests: dict[str, str] = {}
    for entry in config.auth.tokens:
        if entry.sha256:
            digests[entry.name] = entry.sha256
        else:
            assert entry.env is not None
            if not environ.get(entry.env):
                raise ConfigError(
                    [Problem("sovra.yaml", f"auth.tokens.{entry.name}.env", f"{entry.env} is not set")]
                )
            digests[entry.name] = TokenVerifier.digest(environ[entry.env])
    if environ.get("SOVRA_API_KEY"):
        digests["env"] = TokenVerifier.digest(environ["SOVRA_API_KEY"])
    if digests:
        return AuthSetup(TokenVerifier(digests), "auth: bearer tokens from the config / SOVRA_API_KEY")
    path = config.home / "api-token"
    token, created = _generated_token(path)
    # Never the token itself: standard output and error end up in log collectors.
    made = "generated a token, kept" if created else "token"
    notice = f"auth: {made} in {path} (mode 0600); use it with TOKEN=$(cat {path})"
    return AuthSetup(TokenVerifier({"generated": TokenVerifier.digest(token)}), notice)


def client_token(config: PlatformConfig, environ: Mapping[str, str]) -> str | None:
    """The token a client on this machine (`sovra eval`) presents: one that `resolve_verifier`
    accepts — SOVRA_API_KEY, a configured token kept in a variable (the config holds digests
    only), or the generated one."""
    if environ.get("SOVRA_API_KEY"):
        return environ["SOVRA_API_KEY"]
    for entry in config.auth.tokens:
        if entry.env and environ.get(entry.env):
            return environ[entry.env]
    path = config.home / "api-token"
    return path.read_text(encoding="utf-8").strip() if path.exists() else None


def _generated_token(path: Path) -> tuple[str, bool]:
    if path.exists():
        return path.read_text(encoding="utf-8").strip(), False
    path.parent.mkdir(parents=True, exist_ok=True)
    token = "sk-sovra-" + secrets.token_urlsafe(24)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")
    return token, True
