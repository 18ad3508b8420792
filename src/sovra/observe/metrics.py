"""Gateway metrics, named and bucketed as the OpenTelemetry GenAI semantic conventions say, in the
Prometheus exposition format; plus counters of the gateway's own decisions.

Every metric lives in the registry of one `GatewayMetrics` (no process-wide state), so each app and
each test has its own.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from sovra.usage import TENANT, UNKNOWN_MODEL, UsageRecord

__all__ = ["GatewayMetrics", "operation_name"]

# Bucket boundaries from the GenAI semantic conventions (gen-ai-metrics.md).
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)

_ATTRIBUTES = (
    "gen_ai_operation_name",
    "gen_ai_provider_name",
    "gen_ai_request_model",
    "gen_ai_response_model",
    "tenant",
)
_OPERATIONS = {
    "/v1/chat/completions": "chat",
    "/v1/messages": "chat",
    "/v1/completions": "text_completion",
    "/v1/embeddings": "embeddings",
    "/v1/responses": "chat",
    "/v1/rerank": "rerank",
}
MAX_TENANTS = 1000  # beyond this many distinct tenant labels, further ones are reported as "other"


def operation_name(endpoint: str) -> str:
    return _OPERATIONS.get(endpoint, endpoint.rsplit("/", 1)[-1])


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.token_usage = Histogram(
            "gen_ai_client_token_usage", "Tokens used per request, by type (input or output).",
            [*_ATTRIBUTES, "gen_ai_token_type"], buckets=TOKEN_BUCKETS, registry=registry,
        )  # fmt: skip
        self.request_duration = Histogram(
            "gen_ai_server_request_duration_seconds", "Time from request to the end of the answer.",
            [*_ATTRIBUTES, "error_type"], buckets=DURATION_BUCKETS, registry=registry,
        )  # fmt: skip
        self.time_to_first_token = Histogram(
            "gen_ai_server_time_to_first_token_seconds", "Time from request to the first streamed chunk.",
            _ATTRIBUTES, buckets=TTFT_BUCKETS, registry=registry,
        )  # fmt: skip
        self.time_per_output_token = Histogram(
            "gen_ai_server_time_per_output_token_seconds", "Time per output token after the first.",
            _ATTRIBUTES, buckets=TPOT_BUCKETS, registry=registry,
        )  # fmt: skip
        self.upstream_errors = Counter(
            "sovra_gateway_upstream_errors", "Engine failures seen by the gateway.",
            ["model", "error_type"], registry=registry,
        )  # fmt: skip
        self.retries = Counter(
            "sovra_gateway_retries", "Requests sent again: on a fresh connection or another replica.",
            ["reason"], registry=registry,
        )  # fmt: skip
        self.rate_limited = Counter(
            "sovra_gateway_rate_limited",
            "Requests refused by a key's limits.",
            ["limit", "tenant"],
            registry=registry,
        )
        self.replica_picks = Counter(
            "sovra_gateway_replica_picks",
            "Requests sent to each replica.",
            ["model", "replica"],
            registry=registry,
        )
        self.router_decisions = Counter(
            "sovra_router_decisions", "Router decisions, by the rule that decided and its action.",
            ["rule", "action"], registry=registry,
        )  # fmt: skip
        self.router_redactions = Counter(
            "sovra_router_redactions", "Requests whose personal data was redacted, by entity type.",
            ["entity"], registry=registry,
        )  # fmt: skip
        self.router_seconds = Histogram(
            "sovra_router_decision_seconds", "Time to read a request's signals and decide.",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1), registry=registry,
        )  # fmt: skip
        self._tenants: set[str] = set()
        self._series: dict[tuple[tuple[str, ...], str], _Series] = {}

    def tenant_label(self, value: str) -> str:
        """A bounded label: well-formed values, at most MAX_TENANTS distinct ones."""
        if not TENANT.match(value):
            return "other"
        if value not in self._tenants:
            if len(self._tenants) >= MAX_TENANTS:
                return "other"
            self._tenants.add(value)
        return value

    def observe(self, record: UsageRecord, provider: str, tenant: str, error_type: str) -> None:
        """Record one finished request."""
        # The gateway has already replaced a name nobody serves by UNKNOWN_MODEL; none given is too.
        requested = record.requested_model or UNKNOWN_MODEL
        labels = (operation_name(record.endpoint), provider, requested, record.served_model, tenant)
        series = self._series.get((labels, error_type))
        if series is None:
            series = self._series[(labels, error_type)] = _Series(self, labels, error_type)
        series.duration.observe(record.duration_ms / 1000)
        if error_type:
            return
        series.input_tokens.observe(record.input_tokens)
        if record.output_tokens:
            series.output_tokens.observe(record.output_tokens)
        if record.ttft_ms is not None:
            series.ttft.observe(record.ttft_ms / 1000)
            if record.output_tokens > 1:
                generating = (record.duration_ms - record.ttft_ms) / 1000
                series.tpot.observe(generating / (record.output_tokens - 1))

    def observe_decision(self, rule: str, action: str, redacted: frozenset[str], seconds: float) -> None:
        self.router_decisions.labels(rule, action).inc()
        for entity in redacted:
            self.router_redactions.labels(entity).inc()
        self.router_seconds.observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _Series:
    """The labelled children one kind of request updates, looked up once (`labels()` is a quarter
    of the metrics' cost per request)."""

    def __init__(self, metrics: GatewayMetrics, labels: tuple[str, ...], error_type: str) -> None:
        self.duration = metrics.request_duration.labels(*labels, error_type)
        self.input_tokens = metrics.token_usage.labels(*labels, "input")
        self.output_tokens = metrics.token_usage.labels(*labels, "output")
        self.ttft = metrics.time_to_first_token.labels(*labels)
        self.tpot = metrics.time_per_output_token.labels(*labels)
