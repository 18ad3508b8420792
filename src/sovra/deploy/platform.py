"""What the whole catalog shares: the weights volume, and the Sovra gateway (router, keys, ledger)
that serves `MoM` and reaches every model through its Service."""

from __future__ import annotations

from typing import Any

import yaml

from sovra.config import RenderSettings
from sovra.deploy.monitoring import grafana_dashboard, scrape
from sovra.deploy.objects import PORT, Manifest, container_security, metadata, pod_security, selector
from sovra.deploy.policies import GATEWAY, gateway_policy
from sovra.deploy.routes import model_route
from sovra.spec import Catalog

__all__ = ["platform_objects"]


def weights_volume(namespace: str, settings: RenderSettings) -> Manifest:
    """One per namespace that holds models (a claim is namespaced); every model there mounts it."""
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteMany"],
        "resources": {"requests": {"storage": settings.weights_size}},
    }
    if settings.weights_storage_class:
        spec["storageClassName"] = settings.weights_storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": metadata(settings.weights_claim, namespace, "weights"),
        "spec": spec,
    }


def gateway_config(catalog: Catalog, settings: RenderSettings) -> Manifest:
    """The catalog, and a config that makes `sovra up` a gateway in front of the models' Services."""
    documents = [s.model_dump(by_alias=True, exclude_defaults=True, mode="json") for s in catalog.services]
    config = {
        "home": "/tmp/sovra",
        "listen": {"host": "0.0.0.0", "port": PORT},
        "engines": {"remoteUrl": "http://{name}.{namespace}.svc.cluster.local:" + str(PORT)},
    }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(GATEWAY, settings.namespace, "gateway"),
        "data": {
            "catalog.yaml": yaml.safe_dump_all(documents, sort_keys=False),
            "sovra.yaml": yaml.safe_dump(config, sort_keys=False),
        },
    }


def gateway_deployment(settings: RenderSettings) -> Manifest:
    container = {
        "name": "sovra",
        "image": settings.sovra_image,
        "command": ["sovra", "up", "-f", "/etc/sovra/catalog.yaml", "-c", "/etc/sovra/sovra.yaml"],
        # Keys, the ledger's database and Redis: from a Secret the operator provides.
        "envFrom": [{"secretRef": {"name": GATEWAY, "optional": True}}],
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "securityContext": container_security(),
        "resources": {"requests": {"cpu": "1", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
        "readinessProbe": {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 5},
        "livenessProbe": {
            "httpGet": {"path": "/health", "port": "http"},
            "periodSeconds": 30,
            "failureThreshold": 5,
        },
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/sovra", "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    pod = {
        "metadata": {"labels": selector(GATEWAY, "gateway")},
        "spec": {
            "securityContext": pod_security(),
            "automountServiceAccountToken": False,
            "containers": [container],
            "volumes": [{"name": "config", "configMap": {"name": GATEWAY}}, {"name": "tmp", "emptyDir": {}}],
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(GATEWAY, settings.namespace, "gateway"),
        "spec": {
            "replicas": settings.gateway_replicas,
            "selector": {"matchLabels": selector(GATEWAY, "gateway")},
            "template": pod,
        },
    }


def gateway_service(settings: RenderSettings) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(GATEWAY, settings.namespace, "gateway"),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(GATEWAY, "gateway"),
            "ports": [{"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def platform_objects(
    catalog: Catalog, settings: RenderSettings, virtual_models: tuple[str, ...]
) -> list[Manifest]:
    namespaces = sorted({s.metadata.namespace for s in catalog.services})
    objects = [weights_volume(ns, settings) for ns in namespaces]
    objects += [
        gateway_config(catalog, settings),
        gateway_deployment(settings),
        gateway_service(settings),
        gateway_policy(settings, namespaces),
        scrape(GATEWAY, settings.namespace, "gateway", settings),
        grafana_dashboard(settings),
    ]
    return objects + model_route(virtual_models, GATEWAY, settings.namespace, settings, "gateway")
