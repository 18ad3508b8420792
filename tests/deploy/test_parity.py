"""Schema parity with the reference composition: a claim using every field it accepts validates,
renders, and every field shows in the output; an unknown field is an error that names it."""

from pathlib import Path
from typing import Any

import pytest
import yaml

from sovra.config import RenderSettings
from sovra.deploy.render import service_objects
from sovra.errors import ConfigError
from sovra.spec import load_catalog
from tests.deploy.schemas import problems

CLAIM = Path(__file__).parent.parent / "fixtures" / "claim-full.yaml"


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    (service,) = load_catalog(CLAIM).services
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for manifest in service_objects(service, RenderSettings()):
        by_kind.setdefault(manifest["kind"], []).append(manifest)
    return by_kind


def test_every_object_of_the_full_claim_validates(rendered: dict[str, list[dict[str, Any]]]) -> None:
    assert [p for objects in rendered.values() for o in objects for p in problems(o)] == []


def container(rendered: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return rendered["Deployment"][0]["spec"]["template"]["spec"]["containers"][0]  # type: ignore[no-any-return]


def test_engine_fields_become_vllm_flags(rendered: dict[str, list[dict[str, Any]]]) -> None:
    args = container(rendered)["args"]
    assert "--enable-prefix-caching" not in args  # cache.prefixCache.enabled: false
    joined = " ".join(args)
    assert (
        "--enable-lora --max-loras 1 --max-lora-rank 64 --lora-modules xplane-qwen-coder-sql=/models/hf/acme_qwen-coder-sql-lora/v2"
        in joined
    )
    assert "--cpu-offload-gb 32" in joined
    assert '--load-format runai_streamer --model-loader-extra-config {"concurrency":16}' in joined
    assert args[-1] == "--gpu-memory-utilization=0.9"  # engineArgs last: they cannot shadow managed flags
    mounts = [m["subPath"] for m in container(rendered)["volumeMounts"] if m["name"] == "models"]
    assert mounts == ["hf/Qwen_Qwen2.5-Coder-7B-Instruct/main", "hf/acme_qwen-coder-sql-lora/v2"]


def test_pod_fields_are_rendered(rendered: dict[str, list[dict[str, Any]]]) -> None:
    spec = rendered["Deployment"][0]["spec"]["template"]["spec"]
    c = container(rendered)
    assert c["resources"] == {"requests": {"cpu": "4", "memory": "24Gi", "nvidia.com/gpu": 1},
                              "limits": {"memory": "48Gi", "nvidia.com/gpu": 1}}  # fmt: skip
    assert (c["livenessProbe"]["initialDelaySeconds"], c["livenessProbe"]["failureThreshold"]) == (120, 5)
    assert c["readinessProbe"]["periodSeconds"] == 5 and c["startupProbe"]["failureThreshold"] == 90
    assert (
        c["securityContext"]["runAsUser"] == 2000
        and c["securityContext"]["allowPrivilegeEscalation"] is False
    )
    assert c["envFrom"] == [
        {"secretRef": {"name": "coder-telemetry"}},
        {"secretRef": {"name": "coder-extra-env"}},
    ]
    term = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ][0]
    assert term["matchExpressions"] == [
        {"key": "karpenter.k8s.aws/instance-gpu-memory", "operator": "Gt", "values": ["24575"]}
    ]


def test_platform_fields_are_rendered(rendered: dict[str, list[dict[str, Any]]]) -> None:
    secrets = {s["metadata"]["name"]: s["spec"] for s in rendered["ExternalSecret"]}
    assert secrets["coder-telemetry"]["dataFrom"] == [
        {"extract": {"key": "llm/coder/telemetry", "conversionStrategy": "Default"}}
    ]
    assert "xplane-qwen-coder-hub-token" in secrets  # the preload Job's hub token
    (route,) = rendered["HTTPRoute"]
    assert route["spec"]["hostnames"] == ["coder.llm.example.com"]
    serving = next(p for p in rendered["CiliumNetworkPolicy"] if p["metadata"]["name"] == "xplane-qwen-coder")
    peers = [
        e["matchLabels"].get("app.kubernetes.io/name")
        for rule in serving["spec"]["ingress"]
        for e in rule["fromEndpoints"]
    ]
    assert peers == ["openwebui", "vmagent"]  # the declared ingress replaced the defaults; the scraper stays
    (scrape,) = rendered["VMServiceScrape"]
    assert scrape["spec"]["endpoints"][0]["interval"] == "15s"
    (rule,) = rendered["VMRule"]
    assert [g["name"] for g in rule["spec"]["groups"]] == ["coder-slo"]
    triggers = {
        t["name"]: t["metadata"]["threshold"] for t in rendered["ScaledObject"][0]["spec"]["triggers"]
    }
    assert triggers == {"running-ratio": "0.75", "kv-cache": "0.5", "queue": "4"}
    assert (
        rendered["ScaledObject"][0]["spec"]["cooldownPeriod"],
        rendered["ScaledObject"][0]["spec"]["pollingInterval"],
    ) == (600, 30)


def test_canaries_split_the_base_model_and_adapters_keep_their_names(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    assert sorted(b["metadata"]["name"] for b in rendered["AIServiceBackend"]) == [
        "xplane-qwen-coder",
        "xplane-qwen-coder-canary-0",
    ]
    base, pinned = rendered["AIGatewayRoute"][0]["spec"]["rules"]
    assert base["backendRefs"] == [{"name": "xplane-qwen-coder", "weight": 90},
                                   {"name": "xplane-qwen-coder-canary-0", "weight": 10, "modelNameOverride": "xplane-qwen-coder-sql"}]  # fmt: skip
    assert pinned["matches"][0]["headers"][0]["value"] == "xplane-qwen-coder-sql"


def test_one_machine_says_which_fields_it_ignores() -> None:
    (service,) = load_catalog(CLAIM).services
    assert service.spec.cluster_only_fields() == [
        "loraAdapters", "gateway.canaries", "route", "externalSecrets", "envFromSecrets", "networkPolicies",
        "resources", "healthProbes", "securityContext", "observability", "gpu.minVRAM", "cache.kvOffload",
        "model.streaming",
    ]  # fmt: skip
    (default,) = load_catalog(Path(__file__).parents[2] / "catalog" / "smollm2.yaml").services
    assert default.spec.cluster_only_fields() == []  # what one machine serves as declared


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        (lambda s: s["cache"]["kvOffload"].update(sizeGb=8), "spec.cache.kvOffload.sizeGb", "unknown field"),
        (lambda s: s["gateway"]["canaries"][0].update(adapter="nope"), "spec", "'nope' is not one of loraAdapters"),
        (lambda s: s["gateway"]["canaries"][0].update(weightPercent=100), "spec.gateway.canaries.0.weightPercent", "less than or equal to 99"),
        (lambda s: s["gpu"].update(minVRAM="lots"), "spec.gpu.minVRAM", "should match pattern"),
    ],
)  # fmt: skip
def test_a_wrong_field_is_an_error_that_names_it(
    tmp_path: Path, change: Any, field: str, reason: str
) -> None:
    claim = yaml.safe_load(CLAIM.read_text())
    change(claim["spec"])
    path = tmp_path / "claim.yaml"
    path.write_text(yaml.safe_dump(claim))
    with pytest.raises(ConfigError) as caught:
        load_catalog(path)
    assert any(p.field == field and reason in p.reason for p in caught.value.problems), caught.value.problems
