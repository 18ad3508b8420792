"""A model's pods: its ServiceAccount, its declaration, the preload Job, the serving Deployment and
its Service.

Weights live on one shared ReadWriteMany volume in the layout of Sovra's weight store
(`storage/store.py`), so the preload Job is `sovra preload` itself and the serving pod reads the
same path `sovra up` would: one repository@revision is fetched once for every model and replica
that uses it, and a fetch that was interrupted is never served (the store's manifest is the marker).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

import yaml

from sovra.deploy.objects import PORT, Manifest, container_security, metadata, pod_security, selector
from sovra.deploy.settings import RenderSettings
from sovra.inference.drivers import llama_server_argv, vllm_argv
from sovra.spec import EngineKind, InferenceService

__all__ = [
    "declaration",
    "engine_deployment",
    "engine_kind",
    "engine_service",
    "preload_job",
    "service_account",
    "weights_path",
]

WEIGHTS_MOUNT = PurePosixPath("/models")
CONFIG_MOUNT = PurePosixPath("/etc/sovra")


def engine_kind(service: InferenceService) -> EngineKind:
    """On a cluster, `auto` means vLLM on GPUs, llama.cpp where the declaration asks for no GPU."""
    engine = service.spec.engine
    if engine is EngineKind.AUTO:
        no_gpu = service.spec.gpu is not None and service.spec.gpu.count == 0
        return EngineKind.LLAMACPP if no_gpu or service.spec.model.is_gguf else EngineKind.VLLM
    return engine


def gpu_count(service: InferenceService) -> int:
    if engine_kind(service) is EngineKind.LLAMACPP:
        return 0
    return service.spec.gpu.count if service.spec.gpu is not None else 1


def weights_path(service: InferenceService) -> PurePosixPath:
    """Where `sovra preload` puts this model's weights on the shared volume."""
    ref = service.spec.model.weights
    path = WEIGHTS_MOUNT / ref.store_key
    return path / ref.filename if ref.filename else path


def revision_label(service: InferenceService) -> str:
    """The weights' revision, as a DNS label (the preload Job is named after it)."""
    ref = service.spec.model.weights
    revision = getattr(ref, "revision", None) or getattr(ref, "version", None) or "local"
    return re.sub(r"[^a-z0-9-]", "-", str(revision).lower()).strip("-")[:20] or "rev"


def service_account(service: InferenceService) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(service.name, service.metadata.namespace, "inference"),
        "automountServiceAccountToken": False,
    }


def declaration(service: InferenceService, settings: RenderSettings) -> Manifest:
    """The declaration and a store config, for the preload Job's `sovra preload`."""
    document = service.model_dump(by_alias=True, exclude_defaults=True, mode="json")
    config = {"home": "/tmp/sovra", "store": {"path": str(WEIGHTS_MOUNT)}}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(f"{service.name}-declaration", service.metadata.namespace, "preload"),
        "data": {
            "catalog.yaml": yaml.safe_dump(document, sort_keys=False),
            "sovra.yaml": yaml.safe_dump(config, sort_keys=False),
        },
    }


def _volumes(claim: str, *extra: Manifest) -> list[Manifest]:
    return [
        {"name": "models", "persistentVolumeClaim": {"claimName": claim}},
        {"name": "tmp", "emptyDir": {}},
        *extra,
    ]


def preload_job(service: InferenceService, settings: RenderSettings) -> Manifest:
    """`sovra preload` once per repository@revision: named after the revision, so a new revision is
    a new Job and an old one is never re-run; a second run finds the weights and exits at once."""
    name = f"{service.name}-preload-{revision_label(service)}"
    container = {
        "name": "preload",
        "image": settings.sovra_image,
        "command": [
            "sovra",
            "preload",
            "-f",
            str(CONFIG_MOUNT / "catalog.yaml"),
            "-c",
            str(CONFIG_MOUNT / "sovra.yaml"),
        ],
        "env": [
            {
                "name": "HF_TOKEN",
                "valueFrom": {
                    "secretKeyRef": {"name": f"{service.name}-hub-token", "key": "token", "optional": True}
                },
            }
        ],
        "securityContext": container_security(),
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "4Gi"}},
        "volumeMounts": [
            {"name": "models", "mountPath": str(WEIGHTS_MOUNT)},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "declaration", "mountPath": str(CONFIG_MOUNT), "readOnly": True},
        ],
    }
    config = {"name": "declaration", "configMap": {"name": f"{service.name}-declaration"}}
    pod = {
        "metadata": {"labels": selector(service.name, "preload")},
        "spec": {
            "serviceAccountName": service.name,
            "restartPolicy": "OnFailure",
            "securityContext": pod_security(),
            "containers": [container],
            "volumes": _volumes(settings.weights_claim, config),
        },
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(name, service.metadata.namespace, "preload"),
        "spec": {"backoffLimit": 6, "ttlSecondsAfterFinished": 86400, "template": pod},
    }


def engine_args(service: InferenceService) -> tuple[list[str], list[str]]:
    """(command, args) of the serving container: the same argv `sovra up` uses, bound to all
    addresses, reading the shared volume."""
    path = weights_path(service)
    if engine_kind(service) is EngineKind.LLAMACPP:
        argv = llama_server_argv(service, PurePosixPath("/app/llama-server"), path, PORT, host="0.0.0.0").argv  # type: ignore[arg-type]
        return [argv[0]], list(argv[1:])
    argv = vllm_argv(service, path, PORT, host="0.0.0.0").argv  # type: ignore[arg-type]
    return ["vllm", "serve"], list(argv[2:])


def _probes(service: InferenceService, settings: RenderSettings) -> dict[str, Manifest]:
    """Startup gets the cold-start budget (loading weights takes minutes); afterwards a pod that
    stops answering /health is restarted, and one that is busy is merely taken out of the Service."""
    check = {"httpGet": {"path": "/health", "port": "http"}}
    startup_period = 10
    return {
        "startupProbe": {
            **check,
            "periodSeconds": startup_period,
            "timeoutSeconds": 5,
            "failureThreshold": max(1, settings.cold_start_budget_seconds // startup_period),
        },
        "readinessProbe": {**check, "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {**check, "periodSeconds": 30, "timeoutSeconds": 10, "failureThreshold": 3},
    }


def _resources(service: InferenceService) -> Manifest:
    gpus = gpu_count(service)
    if gpus:
        return {
            "requests": {"cpu": "2", "memory": "16Gi", "nvidia.com/gpu": gpus},
            "limits": {"memory": "32Gi", "nvidia.com/gpu": gpus},
        }
    return {"requests": {"cpu": "2", "memory": "2Gi"}, "limits": {"memory": "8Gi"}}


def engine_deployment(service: InferenceService, settings: RenderSettings) -> Manifest:
    """The serving pods. No `replicas`: KEDA owns that number. `Recreate`: a rolling update would
    need a second set of GPUs while the first still holds them."""
    command, args = engine_args(service)
    llama = engine_kind(service) is EngineKind.LLAMACPP
    container: dict[str, Any] = {
        "name": "llama-server" if llama else "vllm",
        "image": settings.llama_server_image if llama else settings.vllm_image,
        "command": command,
        "args": args,
        "env": [{"name": "HOME", "value": "/tmp"}, {"name": "HF_HUB_OFFLINE", "value": "1"}],
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "securityContext": container_security(),
        "resources": _resources(service),
        "volumeMounts": [
            # Read-only, and only this model's repository@revision: a model cannot read, or spoil,
            # another's weights.
            {
                "name": "models",
                "mountPath": str(weights_path(service).parent if llama else weights_path(service)),
                "subPath": str(
                    (weights_path(service).parent if llama else weights_path(service)).relative_to(
                        WEIGHTS_MOUNT
                    )
                ),
                "readOnly": True,
            },
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        **_probes(service, settings),
    }
    volumes = _volumes(settings.weights_claim)
    spec: dict[str, Any] = {
        "serviceAccountName": service.name,
        "automountServiceAccountToken": False,
        "securityContext": pod_security(),
        "terminationGracePeriodSeconds": 60,
        "containers": [container],
        "volumes": volumes,
    }
    if not llama:
        # vLLM's workers share tensors through /dev/shm; the container default (64 MiB) is too small.
        volumes.append({"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}})
        container["volumeMounts"].append({"name": "shm", "mountPath": "/dev/shm"})
        spec["nodeSelector"] = {"karpenter.sh/nodepool": settings.gpu_node_pool}
        spec["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(service.name, service.metadata.namespace, "inference"),
        "spec": {
            "selector": {"matchLabels": selector(service.name, "inference")},
            "strategy": {"type": "Recreate"},
            "template": {"metadata": {"labels": selector(service.name, "inference")}, "spec": spec},
        },
    }


def engine_service(service: InferenceService) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(service.name, service.metadata.namespace, "inference"),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(service.name, "inference"),
            "ports": [{"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }
