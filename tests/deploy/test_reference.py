"""The reference platform's own claims and examples (tests/fixtures/reference) load unchanged,
render, and every object is valid against its upstream schema; `weightsFileSystem` and
`gateway.endpointPicker` render as the reference composition does."""

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from sovra.config import RenderSettings
from sovra.deploy.picker import inference_pool
from sovra.deploy.render import render, service_objects, to_yaml
from sovra.errors import ConfigError
from sovra.spec import InferenceService, load_catalog
from tests.deploy.schemas import problems

FIXTURES = Path(__file__).parent.parent / "fixtures"
REFERENCE = sorted((FIXTURES / "reference").glob("*.yaml"))
GOLDEN = Path(__file__).parent / "golden" / "reference.yaml"


def claim(name: str) -> InferenceService:
    (service,) = load_catalog(FIXTURES / "reference" / f"{name}.yaml").services
    return service


def rendered(name: str) -> dict[str, list[dict[str, Any]]]:
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for manifest in service_objects(claim(name), RenderSettings()):
        by_kind.setdefault(manifest["kind"], []).append(manifest)
    return by_kind


def test_all_seven_are_here() -> None:
    assert len(REFERENCE) == 7


@pytest.mark.parametrize("path", [*REFERENCE, FIXTURES / "article-claim.yaml"], ids=lambda p: p.stem)
def test_each_claim_renders_and_every_object_validates(path: Path) -> None:
    objects = render(load_catalog(path))
    assert [p for manifest in objects for p in problems(manifest)] == []


def test_the_output_matches_the_golden_file() -> None:
    """Regenerate with SOVRA_UPDATE_GOLDEN=1 after a deliberate change, and review the diff."""
    text = "".join(to_yaml(service_objects(claim(p.stem), RenderSettings())) for p in REFERENCE)
    if os.environ.get("SOVRA_UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()


# ---- weightsFileSystem ---------------------------------------------------------------------------


def test_a_sub_path_gives_the_model_a_store_of_its_own() -> None:
    objects = rendered("inferenceservice-complete")
    config = yaml.safe_load(objects["ConfigMap"][0]["data"]["sovra.yaml"])
    assert config["store"]["path"] == "/models/xplane-qwen3-8b"  # where `sovra preload` writes
    container = objects["Deployment"][0]["spec"]["template"]["spec"]["containers"][0]
    mounts = [m for m in container["volumeMounts"] if m["name"] == "models"]
    assert [m["subPath"] for m in mounts] == [
        "xplane-qwen3-8b/hf/Qwen_Qwen3-8B/main",
        "xplane-qwen3-8b/hf/org_qwen3-sql-lora/main",
    ]
    assert all(m["mountPath"] == f"/models/{m['subPath']}" for m in mounts)
    args = " ".join(container["args"])
    assert "/models/xplane-qwen3-8b/hf/Qwen_Qwen3-8B/main" in args  # vLLM reads what preload wrote
    assert "xplane-qwen3-8b-sql-expert=/models/xplane-qwen3-8b/hf/org_qwen3-sql-lora/main" in args


def test_without_a_sub_path_models_share_one_store() -> None:
    container = rendered("qwen3-8b")["Deployment"][0]["spec"]["template"]["spec"]["containers"][0]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "models"]
    assert mount["subPath"] == "hf/Qwen_Qwen3-8B/b968826d9c46dd6066d109eabc6255188de91218"


@pytest.mark.parametrize("sub_path", ["../other", "/abs", "a//b", ".hidden", "a/../b"])
def test_a_sub_path_cannot_leave_the_volume(tmp_path: Path, sub_path: str) -> None:
    document = yaml.safe_load((FIXTURES / "reference" / "inferenceservice-basic.yaml").read_text())
    document["spec"]["weightsFileSystem"] = {"subPath": sub_path}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(document))
    with pytest.raises(ConfigError, match=r"weightsFileSystem\.subPath"):
        load_catalog(tmp_path / "c.yaml")


# ---- gateway.endpointPicker ----------------------------------------------------------------------


def test_the_base_rule_goes_to_the_inference_pool() -> None:
    (route,) = rendered("inferenceservice-endpointpicker")["AIGatewayRoute"]
    base = route["spec"]["rules"][0]
    assert base["matches"][0]["headers"][0]["value"] == "xplane-qwen-coder"
    assert base["backendRefs"] == [
        {"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": "xplane-qwen-coder"}
    ]


def test_without_the_picker_the_base_rule_keeps_its_service_backend() -> None:
    (route,) = rendered("qwen3-8b")["AIGatewayRoute"]
    assert route["spec"]["rules"][0]["backendRefs"] == [{"name": "xplane-qwen3-8b"}]
    assert "HelmRelease" not in rendered("qwen3-8b")


def test_the_helm_release_installs_the_pool_the_route_names() -> None:
    objects = rendered("inferenceservice-endpointpicker")
    (release,) = objects["HelmRelease"]
    spec = release["spec"]
    assert release["metadata"]["name"] == "xplane-qwen-coder-epp"
    assert spec["releaseName"] == "xplane-qwen-coder"  # the chart names the pool after the release
    assert spec["chartRef"] == {"kind": "OCIRepository", "name": "inferencepool", "namespace": "llm"}
    pool = spec["values"]["inferencePool"]
    # The pool selects this model's serving pods, and only them: the Deployment's own selector.
    deployment = objects["Deployment"][0]
    assert pool["modelServers"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert pool["targetPorts"] == [{"number": 8000}] and pool["modelServerType"] == "vllm"
    image = spec["values"]["inferenceExtension"]["image"]
    assert (
        f"{image['registry']}/{image['repository']}:{image['tag']}" == RenderSettings().endpoint_picker_image
    )


def test_the_pool_the_chart_makes_is_valid_against_the_upstream_schema() -> None:
    pool = inference_pool(claim("inferenceservice-endpointpicker"))
    assert problems(pool) == []
    broken = {**pool, "spec": {**pool["spec"], "targetPorts": []}}
    assert problems(broken)  # the schema is really checked (at least one target port)


def test_the_picker_is_reachable_and_may_read_the_replicas() -> None:
    objects = rendered("inferenceservice-endpointpicker")
    serving, picker = (
        p for p in objects["CiliumNetworkPolicy"] if not p["metadata"]["name"].endswith("-preload")
    )
    assert picker["metadata"]["name"] == "xplane-qwen-coder-epp"
    epp = {"matchLabels": {"app.kubernetes.io/name": "xplane-qwen-coder-epp"}}
    assert any(epp in rule["fromEndpoints"] for rule in serving["spec"]["ingress"])
    ports = {r["toPorts"][0]["ports"][0]["port"] for r in picker["spec"]["ingress"]}
    assert ports == {"9002", "9090"}  # Envoy's ext-proc calls, the scraper
    assert {"toEntities": ["kube-apiserver"]} in picker["spec"]["egress"]
    scrapes = {s["metadata"]["name"]: s for s in objects["VMServiceScrape"]}
    assert scrapes["xplane-qwen-coder-epp"]["spec"]["endpoints"][0]["port"] == "http-metrics"
    # Without the picker, nothing lets it in.
    (plain,) = (
        p for p in rendered("qwen3-8b")["CiliumNetworkPolicy"] if p["metadata"]["name"] == "xplane-qwen3-8b"
    )
    assert all(epp not in rule["fromEndpoints"] for rule in plain["spec"]["ingress"])


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"gateway": {"enabled": False, "endpointPicker": {"enabled": True}}}, "requires gateway.enabled"),
        ({"loraAdapters": [{"name": "sql", "repository": "o/sql"}],
          "gateway": {"endpointPicker": {"enabled": True}, "canaries": [{"adapter": "sql", "weightPercent": 10}]}},
         "exclude each other"),
        ({"engine": "llamacpp", "gateway": {"endpointPicker": {"enabled": True}}}, "scores vLLM replicas"),
    ],
)  # fmt: skip
def test_what_the_picker_refuses(tmp_path: Path, change: dict[str, Any], reason: str) -> None:
    document = yaml.safe_load((FIXTURES / "reference" / "inferenceservice-basic.yaml").read_text())
    document["spec"].update(change)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(document))
    with pytest.raises(ConfigError, match=reason):
        load_catalog(tmp_path / "c.yaml")


def test_one_machine_names_the_fields_it_leaves_to_a_cluster() -> None:
    fields = claim("inferenceservice-endpointpicker").spec.cluster_only_fields()
    assert "gateway.endpointPicker" in fields and "weightsFileSystem" in fields
    assert "gateway.endpointPicker" not in claim("qwen3-8b").spec.cluster_only_fields()


def test_the_upstream_cel_rules_are_checked_too() -> None:
    """AIGatewayRoute's own CEL: one rule may not mix an InferencePool with AIServiceBackends."""
    (route,) = rendered("inferenceservice-endpointpicker")["AIGatewayRoute"]
    assert problems(route) == []
    route["spec"]["rules"][0]["backendRefs"].append({"name": "xplane-qwen-coder"})
    assert any("cannot mix InferencePool and AIServiceBackend" in p for p in problems(route))
