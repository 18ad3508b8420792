"""A model's pods: its ServiceAccount, its declaration, the preload Job, the serving Deployment and
its Service.

Weights live on one shared ReadWriteMany volume in the layout of Sovra's weight store
(`storage/store.py`), so the preload Job is `sovra preload` itself and the serving pod reads the
same path `sovra up` would: one repository@revision is fetched once for every model and replica
that uses it, and a fetch that was interrupted is never served (the store's manifest is the marker).
"""

from __future__ import annotations

import json
import re
from pathlib import PurePosixPath
from typing import Any

import yaml

from sovra.config import RenderSettings
from sovra.deploy.objects import PORT, Manifest, container_security, metadata, pod_security, selector
from sovra.inference.drivers import llama_server_argv, vllm_argv
from sovra.spec import EngineKind, InferenceService, LoraAdapter, Probe
from sovra.storage.refs import HfRef, in_store

__all__ = [
    "declaration",
    "engine_deployment",
    "engine_kind",
    "engine_service",
    "preload_job",
    "service_account",
    "store_root",
    "weights_path",
]

WEIGHTS_MOUNT = PurePosixPath("/models")
CONFIG_MOUNT = PurePosixPath("/etc/sovra")


def engine_kind(service: InferenceService) -> EngineKind:
    """On a cluster a GPU engine is always available (GPU nodes come with the pool)."""
    return service.engine_for(gpu_engine_available=True)


def gpu_count(service: InferenceService) -> int:
    if engine_kind(service) is EngineKind.LLAMACPP:
        return 0
    return service.spec.gpu.count if service.spec.gpu is not None else 1


def store_root(service: InferenceService) -> PurePosixPath:
    """The weight store this model uses on the shared volume: the one every model shares, or its
    own under `weightsFileSystem.subPath`."""
    sub_path = service.spec.weights_file_system.sub_path
    return WEIGHTS_MOUNT / sub_path if sub_path else WEIGHTS_MOUNT


def weights_path(service: InferenceService) -> PurePosixPath:
    """Where `sovra preload` puts this model's weights on the shared volume."""
    return store_root(service) / in_store(service.spec.model.weights)


def revision_label(service: InferenceService) -> str:
    """The weights' revision, as a DNS label (the preload Job is named after it)."""
    revision = service.spec.model.weights.pin or "local"
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
    config = {"home": "/tmp/sovra", "store": {"path": str(store_root(service))}}
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


def adapter_path(service: InferenceService, adapter: LoraAdapter) -> PurePosixPath:
    return store_root(service) / adapter.weights.store_key


def cluster_flags(service: InferenceService) -> list[str]:
    """vLLM flags only a cluster gets: LoRA adapters (preloaded by the Job), KV offload, streaming."""
    spec, flags = service.spec, []
    if spec.lora_adapters:
        modules = [f"{a.name}={adapter_path(service, a)}" for a in spec.lora_adapters]
        flags += [
            "--enable-lora",
            "--max-loras",
            str(len(modules)),
            "--max-lora-rank",
            "64",
            "--lora-modules",
        ]
        flags += modules
    if spec.cache.kv_offload.enabled:
        flags += ["--cpu-offload-gb", str(spec.cache.kv_offload.size_gb)]
    if spec.model.streaming.enabled:
        flags += ["--load-format", "runai_streamer"]
        if spec.model.streaming.concurrency:
            extra = json.dumps({"concurrency": spec.model.streaming.concurrency}, separators=(",", ":"))
            flags += ["--model-loader-extra-config", extra]
    return flags


def engine_args(service: InferenceService) -> tuple[list[str], list[str]]:
    """(command, args) of the serving container: the same argv `sovra up` uses, bound to all
    addresses, reading the shared volume; the declaration's engineArgs stay last."""
    path = weights_path(service)
    if engine_kind(service) is EngineKind.LLAMACPP:
        binary = PurePosixPath("/app/llama-server")
        argv = list(llama_server_argv(service, binary, path, PORT, host="0.0.0.0").argv)  # type: ignore[arg-type]
        return argv[:1], argv[1:]
    argv = list(vllm_argv(service, path, PORT, host="0.0.0.0").argv)  # type: ignore[arg-type]
    managed = argv[2 : len(argv) - len(service.spec.engine_args)]
    return ["vllm", "serve"], managed + cluster_flags(service) + list(service.spec.engine_args)


def _probe(defaults: Manifest, declared: Probe) -> Manifest:
    chosen = {**defaults, **declared.model_dump(by_alias=True, exclude_none=True)}
    return {"httpGet": {"path": "/health", "port": "http"}, **chosen}


def _probes(service: InferenceService, settings: RenderSettings) -> dict[str, Manifest]:
    """Startup gets the cold-start budget (loading weights takes minutes); afterwards a pod that
    stops answering /health is restarted, and one that is busy is merely taken out of the Service.
    `healthProbes` overrides any of these numbers."""
    declared, period = service.spec.health_probes, 10
    budget = max(1, settings.cold_start_budget_seconds // period)
    startup = {"periodSeconds": period, "timeoutSeconds": 5, "failureThreshold": budget}
    readiness = {"periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 3}
    liveness = {"periodSeconds": 30, "timeoutSeconds": 10, "failureThreshold": 3}
    return {
        "startupProbe": _probe(startup, declared.startup),
        "readinessProbe": _probe(readiness, declared.readiness),
        "livenessProbe": _probe(liveness, declared.liveness),
    }


def _resources(service: InferenceService) -> Manifest:
    """The declared requests and limits (else defaults sized for the engine), with the GPU count
    always from `gpu.count`: the scheduler and KEDA must agree with the declaration."""
    gpus, declared = gpu_count(service), service.spec.resources
    requests: dict[str, Any] = {"cpu": "2", "memory": "16Gi" if gpus else "2Gi"}
    limits: dict[str, Any] = {"memory": "32Gi" if gpus else "8Gi"}
    requests, limits = dict(declared.requests or requests), dict(declared.limits or limits)
    if gpus:
        requests["nvidia.com/gpu"] = limits["nvidia.com/gpu"] = gpus
    return {"requests": requests, "limits": limits}


def _gpu_affinity(service: InferenceService, settings: RenderSettings) -> Manifest | None:
    """`gpu.minVRAM`: only nodes whose GPU memory label (MiB) says enough."""
    min_vram = service.spec.gpu.min_vram if service.spec.gpu is not None else None
    if not min_vram:
        return None
    mebibytes = int(min_vram.rstrip("Gi")) * 1024
    term = {"key": settings.gpu_memory_label, "operator": "Gt", "values": [str(mebibytes - 1)]}
    required = {"nodeSelectorTerms": [{"matchExpressions": [term]}]}
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": required}}


def _weights_mounts(service: InferenceService, llama: bool) -> list[Manifest]:
    """Read-only, and only this model's repository@revision (and its adapters): a model cannot
    read, or spoil, another's weights."""
    paths = [weights_path(service).parent if llama else weights_path(service)]
    paths += [adapter_path(service, a) for a in service.spec.lora_adapters]
    return [
        {
            "name": "models",
            "mountPath": str(p),
            "subPath": str(p.relative_to(WEIGHTS_MOUNT)),
            "readOnly": True,
        }
        for p in paths
    ]


def _container(service: InferenceService, settings: RenderSettings) -> Manifest:
    command, args = engine_args(service)
    llama = engine_kind(service) is EngineKind.LLAMACPP
    container: dict[str, Any] = {
        "name": "llama-server" if llama else "vllm",
        "image": settings.llama_server_image if llama else settings.vllm_image,
        "command": command,
        "args": args,
        "env": [{"name": "HOME", "value": "/tmp"}, {"name": "HF_HUB_OFFLINE", "value": "1"}],
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "securityContext": {**container_security(), **service.spec.security_context},
        "resources": _resources(service),
        "volumeMounts": [*_weights_mounts(service, llama), {"name": "tmp", "mountPath": "/tmp"}],
        **_probes(service, settings),
    }
    # Once each: a synced Secret is often also listed in envFromSecrets (the reference's examples do).
    synced = [s.name for s in service.spec.external_secrets]
    secrets = list(dict.fromkeys([*synced, *service.spec.env_from_secrets]))
    if secrets:
        container["envFrom"] = [{"secretRef": {"name": name}} for name in secrets]
    return container


def engine_deployment(service: InferenceService, settings: RenderSettings) -> Manifest:
    """The serving pods. No `replicas`: KEDA owns that number. `Recreate`: a rolling update would
    need a second set of GPUs while the first still holds them."""
    container = _container(service, settings)
    volumes = _volumes(settings.weights_claim)
    spec: dict[str, Any] = {
        "serviceAccountName": service.name,
        "automountServiceAccountToken": False,
        "securityContext": pod_security(),
        "terminationGracePeriodSeconds": 60,
        "containers": [container],
        "volumes": volumes,
    }
    if gpu_count(service):
        # vLLM's workers share tensors through /dev/shm; the container default (64 MiB) is too small.
        volumes.append({"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}})
        container["volumeMounts"].append({"name": "shm", "mountPath": "/dev/shm"})
        spec["nodeSelector"] = {"karpenter.sh/nodepool": settings.gpu_node_pool}
        spec["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
        if affinity := _gpu_affinity(service, settings):
            spec["affinity"] = affinity
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


def external_secrets(service: InferenceService, settings: RenderSettings) -> list[Manifest]:
    """One ExternalSecret per `externalSecrets` entry, and the model hub token for the preload Job."""
    wanted = [(s.name, s.remote_ref, s.refresh_interval) for s in service.spec.external_secrets]
    if isinstance(service.spec.model.weights, HfRef):
        wanted.append((f"{service.name}-hub-token", settings.hub_token_key, "1h"))
    return [
        {
            "apiVersion": "external-secrets.io/v1",
            "kind": "ExternalSecret",
            "metadata": metadata(name, service.metadata.namespace, "secrets"),
            "spec": {
                "refreshInterval": refresh,
                "secretStoreRef": {"kind": "ClusterSecretStore", "name": settings.secret_store},
                "target": {"name": name, "creationPolicy": "Owner", "deletionPolicy": "Retain"},
                "dataFrom": [{"extract": {"key": remote, "conversionStrategy": "Default"}}],
            },
        }
        for name, remote, refresh in wanted
    ]


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
