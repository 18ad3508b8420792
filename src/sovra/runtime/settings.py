"""Each part's settings, taken whole from the platform config.

The parts (`access`, `inference`) declare their settings as plain dataclasses and never import the
config; the config declares what a user may write. `settings_from` fills a dataclass field by field
*by name* from the config's models, so a new setting is one field on each side and nothing here —
and a field the config lacks is an error (tests/runtime/test_settings.py checks every part's).
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from pydantic import BaseModel

from sovra.access.balancer import Balancing
from sovra.access.connections import ConnectionLimits, raise_open_file_limit
from sovra.access.gateway import GatewaySettings
from sovra.config import PlatformConfig

__all__ = ["balancing", "connection_limits", "gateway_settings", "settings_from"]

T = TypeVar("T")


def settings_from(cls: type[T], *sources: BaseModel, **given: Any) -> T:
    """`cls` (a dataclass) with each field from `given`, else from the first of `sources` that has a
    field of that name."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        if field.name in given:
            values[field.name] = given[field.name]
            continue
        source = next((s for s in sources if field.name in type(s).model_fields), None)
        if source is None:
            raise TypeError(f"{cls.__name__}.{field.name} has no setting in the platform config")
        values[field.name] = getattr(source, field.name)
    return cls(**values)


def balancing(config: PlatformConfig) -> Balancing:
    return settings_from(Balancing, config.gateway.balancing)


def gateway_settings(config: PlatformConfig) -> GatewaySettings:
    return settings_from(GatewaySettings, config.gateway, config.limits)


def connection_limits(config: PlatformConfig) -> ConnectionLimits:
    """As configured, with no more connections than this process may open files."""
    chosen = config.gateway.connections
    return settings_from(
        ConnectionLimits, chosen, max_connections=min(chosen.max_connections, raise_open_file_limit())
    )
