"""CiliumNetworkPolicies: a model's pods accept only their callers and call no one; the preload
Job reaches the model hub (and DNS) and nothing else; the gateway reaches models, and is reached
by Envoy and the scraper."""

from __future__ import annotations

from sovra.config import RenderSettings
from sovra.deploy.objects import PORT, Manifest, metadata, picker_name, selector
from sovra.spec import InferenceService

__all__ = ["GATEWAY", "endpoint_picker_policy", "gateway_policy", "preload_policy", "serving_policy"]

GATEWAY = "sovra-gateway"
HUB_HOSTS = ("huggingface.co", "*.huggingface.co", "*.hf.co", "pypi.org", "files.pythonhosted.org")
_DNS = {
    "toEndpoints": [
        {"matchLabels": {"k8s:io.kubernetes.pod.namespace": "kube-system", "k8s:k8s-app": "kube-dns"}}
    ],
    "toPorts": [{"ports": [{"port": "53", "protocol": "ANY"}], "rules": {"dns": [{"matchPattern": "*"}]}}],
}
_DENY_ALL: list[Manifest] = [{}]  # an empty rule: the direction is enforced, and nothing is allowed


def _peer(namespace: str, name_label: str, value: str) -> Manifest:
    return {"matchLabels": {"k8s:io.kubernetes.pod.namespace": namespace, name_label: value}}


def _callers(settings: RenderSettings) -> list[Manifest]:
    return [
        _peer(settings.namespace, "app.kubernetes.io/name", GATEWAY),
        _peer("envoy-gateway-system", "gateway.envoyproxy.io/owning-gateway-name", settings.ai_gateway),
    ]


def _scraper(settings: RenderSettings) -> Manifest:
    return _peer(settings.scraper_namespace, "app.kubernetes.io/name", settings.scraper_name)


def _port(number: int = PORT) -> list[Manifest]:
    return [{"ports": [{"port": str(number), "protocol": "TCP"}]}]


def _picker(service: InferenceService) -> Manifest:
    """The model's Endpoint Picker (same namespace), by the chart's label on its pods."""
    return {"matchLabels": {"app.kubernetes.io/name": picker_name(service.name)}}


def serving_policy(service: InferenceService, settings: RenderSettings) -> Manifest:
    """Declared `networkPolicies` rules replace the defaults; the scraper keeps its way in (or the
    model's metrics, and so its autoscaling, would silently stop), and so does the Endpoint Picker,
    which reads each replica's metrics to score it."""
    declared = service.spec.network_policies
    callers = [{"fromEndpoints": _callers(settings), "toPorts": _port()}]
    watchers = [_scraper(settings)]
    if service.spec.gateway.endpoint_picker.enabled:
        watchers.append(_picker(service))
    scraper = {"fromEndpoints": watchers, "toPorts": _port()}
    return {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": metadata(service.name, service.metadata.namespace, "inference"),
        "spec": {
            "endpointSelector": {"matchLabels": selector(service.name, "inference")},
            "ingress": [*(declared.ingress or callers), scraper],
            # Weights come from the volume: by default a model server calls no one.
            "egress": list(declared.egress or _DENY_ALL),
        },
    }


def preload_policy(service: InferenceService) -> Manifest:
    return {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": metadata(f"{service.name}-preload", service.metadata.namespace, "preload"),
        "spec": {
            "endpointSelector": {"matchLabels": selector(service.name, "preload")},
            "ingress": _DENY_ALL,
            "egress": [
                _DNS,
                {
                    "toFQDNs": [{"matchPattern": h} if "*" in h else {"matchName": h} for h in HUB_HOSTS],
                    "toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}]}],
                },
            ],
        },
    }


def endpoint_picker_policy(
    service: InferenceService, ext_proc_port: int, metrics_port: int, settings: RenderSettings
) -> Manifest:
    """The EPP: asked by Envoy's data plane, read by the scraper; it reads the model's replicas'
    metrics and watches its pods and pool through the API server."""
    envoy = _callers(settings)[1]
    return {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": metadata(picker_name(service.name), service.metadata.namespace, "endpoint-picker"),
        "spec": {
            "endpointSelector": _picker(service),
            "ingress": [
                {"fromEndpoints": [envoy], "toPorts": _port(ext_proc_port)},
                {"fromEndpoints": [_scraper(settings)], "toPorts": _port(metrics_port)},
            ],
            "egress": [
                _DNS,
                {"toEndpoints": [{"matchLabels": selector(service.name, "inference")}], "toPorts": _port()},
                {"toEntities": ["kube-apiserver"]},
            ],
        },
    }


def gateway_policy(settings: RenderSettings, namespaces: list[str]) -> Manifest:
    """The gateway: called by Envoy and the scraper; calls the models, DNS, and its database and
    Redis (in-cluster, any namespace: operators put them where they like)."""
    models = [
        {"matchLabels": {"k8s:io.kubernetes.pod.namespace": ns, "app.kubernetes.io/component": "inference"}}
        for ns in namespaces
    ]
    return {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": metadata(GATEWAY, settings.namespace, "gateway"),
        "spec": {
            "endpointSelector": {"matchLabels": selector(GATEWAY, "gateway")},
            "ingress": [{"fromEndpoints": [_callers(settings)[1], _scraper(settings)], "toPorts": _port()}],
            "egress": [
                _DNS,
                {"toEndpoints": models, "toPorts": _port()},
                {
                    "toEntities": ["cluster"],
                    "toPorts": [
                        {"ports": [{"port": "5432", "protocol": "TCP"}, {"port": "6379", "protocol": "TCP"}]}
                    ],
                },
            ],
        },
    }
