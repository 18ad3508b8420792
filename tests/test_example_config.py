"""`sovra.example.yaml` documents every platform setting, and is a valid config (llama-swap checks
its config.example.yaml the same way)."""

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from sovra.config import PlatformConfig, load_platform_config

EXAMPLE = Path(__file__).parents[1] / "sovra.example.yaml"


def settings(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every setting's YAML path (camelCase), into nested sections and list entries."""
    paths = set()
    for name, field in model.model_fields.items():
        path = prefix + (field.alias or name)
        paths.add(path)
        inner = field.annotation
        for candidate in (inner, *getattr(inner, "__args__", ())):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                paths |= settings(candidate, path + ".")
    return paths


def written(data: Any, prefix: str = "") -> set[str]:
    paths = set()
    if isinstance(data, dict):
        for key, value in data.items():
            paths.add(prefix + key)
            if key not in ("models", "grafanaSelector"):  # maps of names (models, labels), not settings
                paths |= written(value, prefix + key + ".")
    elif isinstance(data, list):
        for item in data:
            paths |= written(item, prefix)
    return paths


def test_the_example_is_a_valid_config() -> None:
    config = load_platform_config(EXAMPLE, environ={})
    assert config.listen.port == 8000 and config.providers[0].name == "acme"


def test_the_example_names_every_setting_and_nothing_else() -> None:
    example = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    assert settings(PlatformConfig) - written(example) == set()  # a new setting must be documented
    assert written(example) - settings(PlatformConfig) == set()


def test_the_example_gives_the_defaults() -> None:
    example = load_platform_config(EXAMPLE, environ={})
    default = load_platform_config(None, environ={"SOVRA_HOME": str(example.home)})
    skip = {"auth", "providers"}  # the example shows one entry of each list
    assert example.model_dump(exclude=skip) == default.model_dump(exclude=skip)
