"""The command line: clear `file: field: reason` errors and exit codes, never a traceback."""

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from sovra.cli import _parser, main
from sovra.config import load_platform_config
from tests.conftest import CATALOG


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_validate_accepts_the_repository_catalog(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "validate", "-f", str(CATALOG))
    assert code == 0
    assert out.strip() == "ok: 1 InferenceService(s): smollm2"


def test_validate_names_file_field_and_reason(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: sovra.dev/v1alpha1\nkind: InferenceService\nmetadata: {name: x}\n"
        "spec:\n  model: {repository: o/m}\n  scaling: {minReplicas: 3, maxReplicas: 2}\n"
        "  engineArgs: ['--served-model-name=y']\n"
    )
    code, _, err = run(capsys, "validate", "-f", str(bad))
    assert code == 2
    assert f"error: {bad}: spec.scaling: minReplicas (3) > maxReplicas (2)" in err
    assert f"error: {bad}: spec.engineArgs: --served-model-name is managed by Sovra" in err
    assert "Traceback" not in err


def test_a_bad_platform_config_is_reported(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "sovra.yaml"
    config.write_text("listen: {host: 0.0.0.0, port: 99999}\nauth: {disabled: true}\n")
    code, _, err = run(capsys, "validate", "-f", str(CATALOG), "-c", str(config))
    assert code == 2
    assert f"{config}: listen.port: Input should be less than or equal to 65535" in err


def test_open_access_is_refused_off_loopback(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "sovra.yaml"
    config.write_text("listen: {host: 0.0.0.0}\nauth: {disabled: true}\n")
    code, _, err = run(capsys, "validate", "-f", str(CATALOG), "-c", str(config))
    assert code == 2
    assert "auth.disabled is only allowed on a loopback address, not 0.0.0.0" in err


def test_router_training_names_missing_data(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "router", "train", "--data", str(tmp_path))
    assert code == 2
    assert f"{tmp_path}: not the router dataset" in err
    (tmp_path / "intent").mkdir()
    (tmp_path / "jailbreak").mkdir()
    for flag, what in (
        ("--questions", "short domain questions"),
        ("--guard-prompts", "short attacks and look-alikes"),
        ("--frames", "frames a harmful request hides in"),
        ("--harmful-requests", "harmful requests, put in the frames"),
        ("--markup-requests", "benign requests about pasted markup"),
    ):
        missing = tmp_path / "missing.jsonl"
        code, _, err = run(capsys, "router", "train", "--data", str(tmp_path), flag, str(missing))
        assert code == 2
        assert f"{missing}: no such file (the project's own {what}: {flag})" in err
        assert "Traceback" not in err


def test_up_refuses_no_auth_on_a_public_address(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "up", "-f", str(CATALOG), "--host", "0.0.0.0", "--no-auth")
    assert code == 2
    assert "--no-auth: only allowed on a loopback address" in err


def test_token_entries_need_exactly_one_source(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "sovra.yaml"
    config.write_text("auth:\n  tokens:\n    - {name: ci}\n")
    code, _, err = run(capsys, "validate", "-f", str(CATALOG), "-c", str(config))
    assert code == 2
    assert "auth.tokens.0: give exactly one of sha256 or env" in err


def test_a_gateway_that_only_fronts_providers_needs_no_catalog(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "sovra.yaml"
    config.write_text(
        "providers:\n  - {name: acme, baseUrl: 'https://api.acme.test/v1', models: {fast: acme-2}}\n"
    )
    empty = tmp_path / "catalog"
    empty.mkdir()
    assert (
        run(capsys, "validate", "-f", str(empty))[0] == 2
    )  # without providers, an empty catalog is a mistake
    code, out, _ = run(capsys, "validate", "-f", str(empty), "-c", str(config))
    assert code == 0 and out.startswith("ok: 0 InferenceService(s)")


def command_paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and sub-command the parser knows, as argv prefixes."""
    paths = [prefix]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                paths += command_paths(sub, (*prefix, name))
    return paths


def test_every_command_has_working_help(capsys: pytest.CaptureFixture[str]) -> None:
    paths = command_paths(_parser())
    assert ("eval",) in paths and ("engines", "install") in paths and ("keys", "create") in paths
    for path in paths:
        with pytest.raises(SystemExit) as exited:
            main([*path, "--help"])
        captured = capsys.readouterr()
        assert exited.value.code == 0, path
        assert captured.out.startswith("usage: sovra"), path
        assert "Traceback" not in captured.err, path


def test_help_works_in_a_real_process() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sovra", "eval", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and "--pass-rate" in result.stdout and result.stderr == ""


def test_the_readmes_example_config_is_valid(tmp_path: Path) -> None:
    """The README shows every setting with its default: it must stay a config Sovra accepts."""
    text = (CATALOG.parent / "README.md").read_text()
    block = text.split("## Platform config (optional)")[1].split("```yaml\n")[1].split("```")[0]
    (tmp_path / "sovra.yaml").write_text(block)
    config = load_platform_config(tmp_path / "sovra.yaml", environ={"CI_SOVRA_TOKEN": "x"})
    assert config.gateway.connections.header_seconds == 10 and config.limits.when_redis_is_down == "local"
    assert config.gateway.max_messages == 1000 and not config.gateway.metrics_auth


def test_plan_names_weights_not_fetched_and_the_budget(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "sovra.yaml"
    config.write_text(f"home: {tmp_path}\nengines: {{memoryBudgetBytes: 1073741824}}\n")
    code, out, _ = run(capsys, "plan", "-f", str(CATALOG), "-c", str(config))
    assert code == 0 and "memory budget: 1.00 GiB" in out
    assert "smollm2" in out and "weights not fetched" in out  # nothing downloaded to plan


@pytest.mark.engine
def test_plan_predicts_the_default_model(
    capsys: pytest.CaptureFixture[str], smollm2: Path, tmp_path: Path
) -> None:
    config = tmp_path / "sovra.yaml"
    config.write_text("engines: {memoryBudgetBytes: 300000000}\n")  # the store where the tests keep it
    code, out, _ = run(capsys, "plan", "-f", str(CATALOG), "-c", str(config))
    assert code == 1 and "0.48 GiB" in out and "does NOT fit" in out  # 4 x 4096 tokens of KV cache
    config.write_text("engines: {memoryBudgetBytes: 1000000000}\n")
    code, out, _ = run(capsys, "plan", "-f", str(CATALOG), "-c", str(config))
    assert code == 0 and "— fits" in out
