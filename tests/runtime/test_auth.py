"""Token resolution for `sovra up`: configured, from the environment, or generated once."""

import stat
from pathlib import Path

import pytest

from sovra.errors import ConfigError
from sovra.runtime.auth import client_token, resolve_verifier
from tests.runtime.configs import config

BEARER = "authorization"


def test_a_token_is_generated_once_kept_private_and_reused(tmp_path: Path) -> None:
    first = resolve_verifier(config(tmp_path), {}, open_access=False)
    token_file = tmp_path / "home" / "api-token"
    token = token_file.read_text().strip()
    assert token not in first.notice and str(token_file) in first.notice  # where, never what
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    second = resolve_verifier(config(tmp_path), {}, open_access=False)
    assert token not in second.notice and str(token_file) in second.notice
    assert second.verifier.verify({BEARER: f"Bearer {token}"}) is not None
    assert second.verifier.verify({BEARER: "Bearer sk-other"}) is None


def test_configured_tokens_by_digest_and_by_environment(tmp_path: Path) -> None:
    digest = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"  # sha256("test")
    settings = config(
        tmp_path, f"auth:\n  tokens:\n    - {{name: a, sha256: {digest}}}\n    - {{name: b, env: B_TOKEN}}\n"
    )
    verifier = resolve_verifier(settings, {"B_TOKEN": "from-env"}, open_access=False).verifier
    assert verifier.verify({BEARER: "Bearer test"}).name == "a"
    assert verifier.verify({"x-api-key": "from-env"}).name == "b"
    assert verifier.verify({}) is None
    assert not (tmp_path / "home" / "api-token").exists()
    with pytest.raises(ConfigError, match="B_TOKEN is not set"):
        resolve_verifier(settings, {}, open_access=False)


def test_sovra_api_key_is_accepted(tmp_path: Path) -> None:
    verifier = resolve_verifier(config(tmp_path), {"SOVRA_API_KEY": "k"}, open_access=False).verifier
    assert verifier.verify({BEARER: "Bearer k"}) is not None


@pytest.mark.parametrize(
    ("text", "environ"),
    [
        ("", {}),  # the generated token
        ("", {"SOVRA_API_KEY": "sk-from-env"}),
        ("auth:\n  tokens:\n    - {name: b, env: B_TOKEN}\n", {"B_TOKEN": "sk-b"}),
    ],
)
def test_the_client_token_is_one_the_gateway_accepts(
    tmp_path: Path, text: str, environ: dict[str, str]
) -> None:
    settings = config(tmp_path, text)
    verifier = resolve_verifier(settings, environ, open_access=False).verifier  # may generate one
    token = client_token(settings, environ)
    assert token is not None and verifier.verify({BEARER: f"Bearer {token}"}) is not None
