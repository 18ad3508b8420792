"""`sovra render`: every InferenceService as the Kubernetes resources that run it, plus what the
platform shares, as plain YAML a GitOps repository can commit.

Per service: ServiceAccount, declaration ConfigMap, preload Job and its network policy, Deployment
(vLLM on GPUs, or llama-server on CPUs), Service, serving network policy, KEDA ScaledObject,
VMServiceScrape, VMRule, Envoy AI Gateway Backend + AIServiceBackend + AIGatewayRoute, and with
`gateway.endpointPicker` the InferencePool's HelmRelease, scrape and network policy.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from sovra.config import RenderSettings
from sovra.deploy import monitoring, picker, policies, routes, scaling, workloads
from sovra.deploy.objects import Manifest
from sovra.deploy.platform import platform_objects
from sovra.spec import Catalog, InferenceService

__all__ = ["render", "service_objects", "to_yaml", "write"]


def service_objects(service: InferenceService, settings: RenderSettings) -> list[Manifest]:
    namespace = service.metadata.namespace
    return [
        workloads.service_account(service),
        *workloads.external_secrets(service, settings),
        workloads.declaration(service, settings),
        workloads.preload_job(service, settings),
        policies.preload_policy(service),
        workloads.engine_deployment(service, settings),
        workloads.engine_service(service),
        policies.serving_policy(service, settings),
        scaling.scaled_object(service, settings),
        monitoring.scrape(
            service.name, namespace, "inference", settings, service.spec.observability.metrics.interval
        ),
        monitoring.rules(service, settings),
        *routes.service_routes(service, settings),
        *picker.endpoint_picker(service, settings),
    ]


def render(
    catalog: Catalog, settings: RenderSettings | None = None, virtual_models: tuple[str, ...] = ("MoM",)
) -> list[Manifest]:
    settings = settings or RenderSettings()
    objects = platform_objects(catalog, settings, virtual_models)
    for service in catalog.services:
        objects += service_objects(service, settings)
    return objects


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (embedded declarations and configs) as readable `|` blocks; no anchors
    (`&id001`) when two objects share a sub-dict."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _string)


def to_yaml(objects: list[Manifest]) -> str:
    return yaml.dump_all(objects, Dumper=_Dumper, sort_keys=False, explicit_start=True, width=120)


def _file_name(manifest: Manifest) -> str:
    kind = re.sub(r"(?<!^)(?=[A-Z])", "-", manifest["kind"]).lower()
    return f"{manifest['metadata']['namespace']}.{manifest['metadata']['name']}.{kind}.yaml"


def write(objects: list[Manifest], out: Path) -> list[Path]:
    """One file per object, named namespace.name.kind.yaml (stable names make small Git diffs)."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for manifest in objects:
        path = out / _file_name(manifest)
        path.write_text(to_yaml([manifest]))
        written.append(path)
    return written
