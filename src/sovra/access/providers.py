"""External providers (OpenAI-compatible or Anthropic) as served models: one fixed endpoint at
the provider's address, with its API key.

So everything the gateway does for local engines — keys, allow-lists, limits, the ledger, metrics,
passive health — applies to them unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, Protocol

from sovra.access.balancer import Balancing, ReplicaPool
from sovra.access.dialects import anthropic_provider
from sovra.access.served import FixedEndpoint, ServedModel
from sovra.errors import ConfigError, Problem

__all__ = ["Provider", "provider_pools"]


class Provider(Protocol):
    """What this module needs of a provider's settings (the platform config's `providers:` entries
    satisfy it; the access layer does not import the config)."""

    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> Literal["openai", "anthropic"]: ...
    @property
    def base_url(self) -> str: ...
    @property
    def api_key_env(self) -> str | None: ...
    @property
    def models(self) -> Mapping[str, str]: ...


def provider_pools(
    providers: Sequence[Provider],
    environ: Mapping[str, str],
    taken: set[str],
    balancing: Balancing | None = None,
) -> dict[str, ServedModel]:
    """A served model per provider model alias; `taken` holds the names the catalog already uses."""
    pools: dict[str, ServedModel] = {}
    problems = []
    for index, provider in enumerate(providers):
        headers: dict[str, str] = {}
        if provider.api_key_env:
            key = environ.get(provider.api_key_env)
            if not key:
                problems.append(
                    Problem(
                        "sovra.yaml", f"providers.{index}.apiKeyEnv", f"{provider.api_key_env} is not set"
                    )
                )
                continue
            headers.update(_auth_headers(provider, key))
        root = provider.base_url.removesuffix("/v1")  # the gateway's paths start with /v1
        for alias, upstream_model in provider.models.items():
            if alias in taken or alias in pools:
                problems.append(
                    Problem(
                        "sovra.yaml", f"providers.{index}.models.{alias}", "this model name is already used"
                    )
                )
                continue
            pool = ReplicaPool(alias, [FixedEndpoint(root, headers)], balancing)
            pools[alias] = ServedModel(alias, pool, provider.name, upstream_model, provider.kind)
    if problems:
        raise ConfigError(problems)
    return pools


def _auth_headers(provider: Provider, key: str) -> dict[str, str]:
    if provider.kind == "anthropic":
        return {"x-api-key": key, "anthropic-version": anthropic_provider.API_VERSION}
    return {"authorization": f"Bearer {key}"}
