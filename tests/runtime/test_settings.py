"""Each part's settings come whole from the platform config: every field by name, same defaults."""

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from sovra.access.balancer import Balancing
from sovra.access.connections import ConnectionLimits
from sovra.access.gateway import GatewaySettings
from sovra.runtime import settings
from tests.runtime.configs import config


def defaults(cls: type[Any]) -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(cls)}


@pytest.mark.parametrize(
    ("build", "cls"),
    [
        (settings.balancing, Balancing),
        (settings.gateway_settings, GatewaySettings),
        (settings.connection_limits, ConnectionLimits),
    ],
)
def test_an_unconfigured_platform_gets_each_parts_own_defaults(
    tmp_path: Path, build: Any, cls: type[Any]
) -> None:
    built = dataclasses.asdict(build(config(tmp_path)))
    expected = defaults(cls)
    if cls is ConnectionLimits:  # lowered to what this process may open
        assert built.pop("max_connections") <= expected.pop("max_connections")
    assert built == expected


def test_configured_values_reach_the_parts(tmp_path: Path) -> None:
    chosen = config(
        tmp_path,
        "gateway:\n  maxMessages: 7\n  metricsAuth: true\n  balancing: {loadFactor: 2.0}\n"
        "  connections: {idleSeconds: 1.5}\nlimits: {defaultMaxTokens: 99}\n",
    )
    gateway = settings.gateway_settings(chosen)
    assert (gateway.max_messages, gateway.metrics_auth, gateway.default_max_tokens) == (7, True, 99)
    assert settings.balancing(chosen).load_factor == 2.0
    assert settings.connection_limits(chosen).idle_seconds == 1.5


def test_a_setting_the_config_lacks_is_an_error(tmp_path: Path) -> None:
    @dataclasses.dataclass(frozen=True)
    class Wider(Balancing):
        not_in_the_config: int = 1

    with pytest.raises(TypeError, match=r"Wider.not_in_the_config has no setting in the platform config"):
        settings.settings_from(Wider, config(tmp_path).gateway.balancing)
