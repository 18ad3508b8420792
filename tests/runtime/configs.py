"""A platform config from YAML text, with its home in a test's directory."""

from pathlib import Path

from sovra.config import PlatformConfig, load_platform_config


def config(tmp_path: Path, text: str = "") -> PlatformConfig:
    file = tmp_path / "sovra.yaml"
    file.write_text(text)
    return load_platform_config(file, environ={"SOVRA_HOME": str(tmp_path / "home")})
