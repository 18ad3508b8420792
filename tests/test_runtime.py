"""Token resolution for `sovra up`: configured, from the environment, or generated once."""

import stat
from pathlib import Path

import pytest

from sovra.config import load_platform_config
from sovra.errors import ConfigError, EngineError
from sovra.inference.drivers import HostFacts
from sovra.runtime import plan_services, resolve_verifier
from sovra.spec import load_catalog

BEARER = "authorization"


def config(tmp_path: Path, text: str = "") -> object:
    file = tmp_path / "sovra.yaml"
    file.write_text(text)
    return load_platform_config(file, environ={"SOVRA_HOME": str(tmp_path / "home")})


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


def test_plans_map_each_service_to_its_engine_and_replica_count(tmp_path: Path) -> None:
    catalog = load_catalog(Path(__file__).parent / "fixtures" / "article-claim.yaml")
    fake_binary = tmp_path / "llama-server"
    fake_binary.write_text("#!/bin/sh\n")
    fake_binary.chmod(0o755)
    settings = load_platform_config(
        None, environ={"SOVRA_HOME": str(tmp_path), "SOVRA_LLAMA_SERVER": str(fake_binary)}
    )
    weights = {"qwen-coder": tmp_path / "w.gguf"}
    (plan,) = plan_services(catalog, settings, weights, HostFacts(cuda_gpu=False, vllm_command=False))
    assert (plan.name, plan.replicas) == ("qwen-coder", 1)
    argv = plan.launch(9001).argv
    assert argv[0] == str(fake_binary) and "--alias" in argv and argv[argv.index("--port") + 1] == "9001"
    explicit_vllm = load_catalog(write_claim(tmp_path, "engine: vllm"))
    with pytest.raises(EngineError, match="`vllm` command is not installed"):
        plan_services(explicit_vllm, settings, weights, HostFacts(cuda_gpu=True, vllm_command=False))


def write_claim(tmp_path: Path, engine_line: str) -> Path:
    text = (Path(__file__).parent / "fixtures" / "article-claim.yaml").read_text()
    path = tmp_path / "claim.yaml"
    path.write_text(text.replace("engine: auto", engine_line))
    return path
