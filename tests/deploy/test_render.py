"""`sovra render`: every object validates against the Kubernetes API and upstream CRD schemas;
golden files pin the output; and each rule of the composition holds."""

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from sovra.cli import main
from sovra.config import RenderSettings
from sovra.deploy.render import render, to_yaml
from sovra.deploy.workloads import WEIGHTS_MOUNT
from sovra.spec import MANAGED_FLAGS, InferenceService, load_catalog
from tests.deploy.schemas import problems

ROOT = Path(__file__).parent.parent.parent
GOLDEN = Path(__file__).parent / "golden"
CATALOGS = {"smollm2": ROOT / "catalog", "article": ROOT / "catalog" / "cluster"}
PER_SERVICE = ["ServiceAccount", "ConfigMap", "Job", "CiliumNetworkPolicy", "Deployment", "Service",
               "CiliumNetworkPolicy", "ScaledObject", "VMServiceScrape", "VMRule", "Backend", "AIServiceBackend",
               "AIGatewayRoute"]  # fmt: skip


def objects(catalog: str) -> list[dict[str, Any]]:
    return render(load_catalog(CATALOGS[catalog]))


def of(catalog: str, service: str, kind: str) -> list[dict[str, Any]]:
    """The service's objects of one kind (its name, or its name and a suffix of its own)."""
    own = {service, f"{service}-preload", f"{service}-declaration", f"{service}-backend"}
    return [o for o in objects(catalog) if o["kind"] == kind
            and (o["metadata"]["name"] in own or o["metadata"]["name"].startswith(f"{service}-preload-"))]  # fmt: skip


def service(catalog: str, name: str) -> InferenceService:
    return next(s for s in load_catalog(CATALOGS[catalog]).services if s.name == name)


@pytest.mark.parametrize("catalog", sorted(CATALOGS))
def test_every_object_validates_against_its_schema(catalog: str) -> None:
    found = [problem for manifest in objects(catalog) for problem in problems(manifest)]
    assert found == []


def test_the_validation_catches_a_misspelt_field() -> None:
    deployment = of("article", "qwen3-8b", "Deployment")[0]
    deployment["spec"]["replica"] = 2
    scaled = of("article", "qwen3-8b", "ScaledObject")[0]
    scaled["spec"]["minReplicas"] = 1  # KEDA's field is minReplicaCount
    assert problems(deployment) and problems(scaled)


@pytest.mark.parametrize("catalog", sorted(CATALOGS))
def test_the_output_matches_the_golden_file(catalog: str) -> None:
    """Regenerate with SOVRA_UPDATE_GOLDEN=1 after a deliberate change, and review the diff."""
    path = GOLDEN / f"{catalog}.yaml"
    rendered = to_yaml(objects(catalog))
    if os.environ.get("SOVRA_UPDATE_GOLDEN"):
        path.write_text(rendered)
    assert rendered == path.read_text()


def test_each_service_gets_its_resources_and_the_platform_its_own() -> None:
    rendered = objects("article")
    for name in ("qwen3-8b", "qwen-coder", "qwen-coder-fim", "llama-guard"):
        kinds = [o["kind"] for o in rendered if o["metadata"]["labels"]["app.kubernetes.io/name"] in
                 (name, f"{name}-declaration", f"{name}-preload", f"{name}-backend")
                 or o["metadata"]["name"].startswith(f"{name}-preload-")]  # fmt: skip
        assert sorted(kinds) == sorted(PER_SERVICE), name
    platform = [o["kind"] for o in rendered[:10]]
    assert platform == ["PersistentVolumeClaim", "ConfigMap", "Deployment", "Service", "CiliumNetworkPolicy",
                        "VMServiceScrape", "GrafanaDashboard", "Backend", "AIServiceBackend",
                        "AIGatewayRoute"]  # fmt: skip


def test_keda_owns_the_replica_count_and_updates_recreate() -> None:
    for deployment in [o for o in objects("article") if o["kind"] == "Deployment"][1:]:
        assert "replicas" not in deployment["spec"]
        assert deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_triggers_use_current_metric_names_and_the_declared_thresholds() -> None:
    (scaled,) = of("article", "qwen-coder-fim", "ScaledObject")
    triggers = {t["name"]: t["metadata"] for t in scaled["spec"]["triggers"]}
    assert triggers["running-ratio"]["query"].startswith(
        'sum(vllm:num_requests_running{namespace="llm",service="qwen-coder-fim"}) / (64 * count('
    )
    assert (
        triggers["running-ratio"]["threshold"],
        triggers["kv-cache"]["threshold"],
        triggers["queue"]["threshold"],
    ) == ("0.7", "0.6", "16")
    assert (
        "vllm:kv_cache_usage_perc" in triggers["kv-cache"]["query"]
        and "vllm:num_requests_waiting" in triggers["queue"]["query"]
    )
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (1, 2)
    (guard,) = of("article", "llama-guard", "ScaledObject")
    assert guard["spec"]["triggers"][0]["metadata"]["threshold"] == "0.8"


def test_a_cpu_service_runs_llama_server_with_its_own_metrics() -> None:
    (deployment,) = of("smollm2", "smollm2", "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["/app/llama-server"] and container["image"].startswith(
        "ghcr.io/ggml-org/llama.cpp:server"
    )
    assert (
        "nvidia.com/gpu" not in container["resources"]["requests"]
        and "nodeSelector" not in deployment["spec"]["template"]["spec"]
    )
    (scaled,) = of("smollm2", "smollm2", "ScaledObject")
    queries = [t["metadata"]["query"] for t in scaled["spec"]["triggers"]]
    assert [q.split("(")[1].split("{")[0] for q in queries] == [
        "llamacpp:requests_processing",
        "llamacpp:requests_deferred",
    ]


def test_gpu_services_are_scheduled_on_gpu_nodes() -> None:
    (deployment,) = of("article", "qwen3-8b", "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    resources = pod["containers"][0]["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {"karpenter.sh/nodepool": "gpu"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert {"name": "shm", "mountPath": "/dev/shm"} in pod["containers"][0]["volumeMounts"]


def test_the_weights_are_mounted_read_only_and_only_this_models() -> None:
    (deployment,) = of("article", "qwen-coder", "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "models"]
    assert mount["readOnly"] is True and mount["subPath"] == "hf/Qwen_Qwen2.5-Coder-7B-Instruct/main"
    assert container["args"][0] == str(WEIGHTS_MOUNT / mount["subPath"]) == mount["mountPath"]


def test_the_preload_job_is_named_after_the_revision() -> None:
    (job,) = of("article", "qwen3-8b", "Job")
    assert job["metadata"]["name"] == "qwen3-8b-preload-main"
    pinned = service("article", "qwen3-8b").model_copy(deep=True)
    document = pinned.model_dump(by_alias=True)
    document["spec"]["model"]["revision"] = "B968826D9c46dd6066d109eabc6255188de91218"
    from sovra.deploy.workloads import preload_job

    renamed = preload_job(InferenceService.model_validate(document), RenderSettings())
    assert renamed["metadata"]["name"] == "qwen3-8b-preload-b968826d9c46dd6066d1"
    assert job["spec"]["template"]["spec"]["containers"][0]["command"][:2] == ["sovra", "preload"]


def test_network_policies_deny_by_default() -> None:
    preload, serving = of("article", "qwen-coder-fim", "CiliumNetworkPolicy")
    assert serving["spec"]["egress"] == [{}]  # a model server calls no one
    callers = [e["matchLabels"] for rule in serving["spec"]["ingress"] for e in rule["fromEndpoints"]]
    assert {c.get("app.kubernetes.io/name") or c.get("gateway.envoyproxy.io/owning-gateway-name") for c in callers} == {
        "sovra-gateway", "ai-gateway", "vmagent"}  # fmt: skip
    assert preload["spec"]["ingress"] == [{}]
    hosts = preload["spec"]["egress"][1]["toFQDNs"]
    assert {"matchName": "huggingface.co"} in hosts and preload["spec"]["egress"][1]["toPorts"][0][
        "ports"
    ] == [{"port": "443", "protocol": "TCP"}]


def test_every_flag_sovra_renders_is_one_a_declaration_may_not_set() -> None:
    """The managed-flag denylist of `sovra validate` and the flags of the renderer, in lockstep."""
    rendered = set()
    for catalog in CATALOGS:
        for deployment in objects(catalog):
            if deployment["kind"] == "Deployment" and deployment["metadata"]["name"] != "sovra-gateway":
                args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
                engine_args = service(catalog, deployment["metadata"]["name"]).spec.engine_args
                declared = {a.split("=", 1)[0] for a in engine_args}
                rendered |= {a for a in args if a.startswith("--") and a not in declared}
    assert rendered <= MANAGED_FLAGS, rendered - MANAGED_FLAGS


def test_every_pod_runs_restricted() -> None:
    for manifest in objects("article"):
        pod = (manifest.get("spec", {}).get("template") or {}).get("spec")
        if pod is None:
            continue
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"][
            "seccompProfile"
        ] == {"type": "RuntimeDefault"}
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False and security["capabilities"] == {
                "drop": ["ALL"]
            }
            assert security["readOnlyRootFilesystem"] is True


def test_routes_match_the_model_header() -> None:
    rendered = objects("article")
    routes = {o["metadata"]["name"]: o for o in rendered if o["kind"] == "AIGatewayRoute"}
    rule = routes["qwen-coder"]["spec"]["rules"][0]
    assert rule["matches"][0]["headers"] == [
        {"type": "Exact", "name": "x-ai-eg-model", "value": "qwen-coder"}
    ]
    assert routes["sovra-gateway"]["spec"]["rules"][0]["matches"][0]["headers"][0]["value"] == "MoM"


def test_the_gateway_config_reaches_the_models_services() -> None:
    (config,) = [
        o for o in objects("article") if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "sovra-gateway"
    ]
    settings = yaml.safe_load(config["data"]["sovra.yaml"])
    assert settings["engines"]["remoteUrl"] == "http://{name}.{namespace}.svc.cluster.local:8000"
    names = [d["metadata"]["name"] for d in yaml.safe_load_all(config["data"]["catalog.yaml"])]
    assert names == ["qwen3-8b", "qwen-coder", "qwen-coder-fim", "llama-guard"]


def test_the_command_writes_one_file_per_object(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "-f", str(CATALOGS["article"]), "-o", str(tmp_path / "out")]) == 0
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert len(files) == len(objects("article")) and "llm.qwen3-8b.scaled-object.yaml" in files
    assert main(["render", "-f", str(CATALOGS["smollm2"])]) == 0
    assert re.findall(r"^kind: (\w+)", capsys.readouterr().out, re.M)[:2] == [
        "PersistentVolumeClaim",
        "ConfigMap",
    ]
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: sovra.dev/v1alpha1\nkind: InferenceService\nmetadata: {name: x}\nspec: {model: {repository: a/b}, scaling: {minReplicas: 3, maxReplicas: 1}}\n"
    )
    assert main(["render", "-f", str(bad)]) == 2
    assert "spec.scaling: minReplicas (3) > maxReplicas (1)" in capsys.readouterr().err


def test_cluster_settings_come_from_the_platform_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "sovra.yaml"
    config.write_text("render: {prometheusAddress: 'http://prometheus.monitoring:9090', gpuNodePool: l4}\n")
    assert main(["render", "-f", str(CATALOGS["article"]), "-c", str(config)]) == 0
    rendered = list(yaml.safe_load_all(capsys.readouterr().out))
    scaled = next(o for o in rendered if o["kind"] == "ScaledObject")
    assert scaled["spec"]["triggers"][0]["metadata"]["serverAddress"] == "http://prometheus.monitoring:9090"
    deployment = next(
        o for o in rendered if o["kind"] == "Deployment" and o["metadata"]["name"] == "qwen3-8b"
    )
    assert deployment["spec"]["template"]["spec"]["nodeSelector"] == {"karpenter.sh/nodepool": "l4"}
    config.write_text("render: {prometheusAdress: x}\n")
    assert main(["render", "-f", str(CATALOGS["article"]), "-c", str(config)]) == 2
    assert "render.prometheusAdress: unknown field" in capsys.readouterr().err


def test_the_prometheus_operator_gets_its_own_kinds() -> None:
    settings = RenderSettings(monitoring="prometheus-operator")
    rendered = render(load_catalog(CATALOGS["article"]), settings)
    kinds = {o["kind"] for o in rendered}
    assert {"ServiceMonitor", "PrometheusRule"} <= kinds and not {"VMServiceScrape", "VMRule"} & kinds
    assert [p for o in rendered for p in problems(o)] == []


def test_the_nightly_evaluation_is_scheduled_with_its_alerts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "sovra.yaml"
    suite = ROOT / "evals" / "smoke" / "promptfooconfig.yaml"
    config.write_text(f"evals: {{suites: ['{suite}'], schedule: '30 2 * * *', regressionPoints: 10}}\n")
    assert main(["render", "-f", str(CATALOGS["smollm2"]), "-c", str(config)]) == 0
    rendered = list(yaml.safe_load_all(capsys.readouterr().out))
    cron = next(o for o in rendered if o["kind"] == "CronJob")
    assert cron["spec"]["schedule"] == "30 2 * * *" and cron["metadata"]["name"] == "sovra-eval-smoke"
    command = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:3] == ["sovra", "eval", "/suites/smoke/promptfooconfig.yaml"]
    assert command[command.index("--push") + 1].endswith("/api/v1/import/prometheus")
    files = next(
        o for o in rendered if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "sovra-eval-smoke"
    )["data"]
    assert set(files) == {"promptfooconfig.yaml", "chat.json"}
    rules = next(o for o in rendered if o["kind"] == "VMRule" and o["metadata"]["name"] == "sovra-evals")
    alerts = {r["alert"]: r["expr"] for r in rules["spec"]["groups"][0]["rules"]}
    assert alerts["EvalPassRateRegression"].endswith("- 0.1") and "93600" in alerts["EvalSuiteStale"]
    assert [p for o in rendered for p in problems(o)] == []
