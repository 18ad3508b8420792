"""What a cluster decides and a declaration does not: images, addresses, names of shared things.

Set in sovra.yaml under `render:` (camelCase, e.g. `prometheusAddress`); `sovra render` reads it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

__all__ = ["RenderSettings"]


class RenderSettings(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    # Images, pinned: a tag that moves is a deployment that changes by itself.
    vllm_image: str = "vllm/vllm-openai:v0.11.0"
    llama_server_image: str = "ghcr.io/ggml-org/llama.cpp:server-b6795"
    sovra_image: str = "ghcr.io/sovra-dev/sovra:0.1.0"
    function_image: str = "ghcr.io/sovra-dev/function-sovra:0.1.0"  # built from package/
    namespace: str = "sovra"  # where the platform-wide objects (gateway, weights volume) live
    weights_claim: str = "sovra-weights"  # the shared ReadWriteMany volume every model mounts
    weights_size: str = "500Gi"
    weights_storage_class: str | None = None
    gpu_node_pool: str = "gpu"  # Karpenter NodePool that provides GPU nodes
    gpu_memory_label: str = "karpenter.k8s.aws/instance-gpu-memory"  # node label in MiB (gpu.minVRAM)
    http_gateway: str = "platform-gateway"  # the Gateway API Gateway plain HTTPRoutes attach to
    http_gateway_namespace: str = "infrastructure"
    prometheus_address: str = "http://vmsingle-victoria-metrics-k8s-stack.observability.svc:8428"
    scrape_interval: str = "15s"
    # Which operator scrapes and alerts: VictoriaMetrics (VMServiceScrape, VMRule) or the Prometheus
    # Operator (ServiceMonitor, PrometheusRule).
    monitoring: Literal["victoriametrics", "prometheus-operator"] = "victoriametrics"
    # Envoy AI Gateway: the Gateway every AIGatewayRoute attaches to.
    ai_gateway: str = "ai-gateway"
    ai_gateway_namespace: str = "envoy-ai-gateway-system"
    # Who may reach a model's pods: the Sovra gateway, Envoy's data plane, the metrics scraper.
    scraper_namespace: str = "observability"
    scraper_name: str = "vmagent"
    secret_store: str = "clustersecretstore"  # External Secrets ClusterSecretStore
    hub_token_key: str = "huggingface/token"  # remote key of the model hub token
    gateway_replicas: int = 2
    cold_start_budget_seconds: int = 900  # how long a new replica may take to become ready
    error_rate_threshold: float = 0.05  # share of failed requests that raises the alert
