"""Crossplane: the XRD (generated from the pydantic model) and the Composition validate against
Crossplane's own CRDs and accept what `sovra validate` accepts; the composition function answers a
RunFunctionRequest with the objects `sovra render` produces, in process and over gRPC."""

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import jsonschema
import pytest
import yaml
from crossplane.function import resource
from crossplane.function.proto.v1 import run_function_pb2 as fnv1
from crossplane.function.proto.v1 import run_function_pb2_grpc as grpcv1

from sovra.config import RenderSettings
from sovra.crossplane.composition import crossplane_objects
from sovra.crossplane.function import SovraFunction, composed_name
from sovra.crossplane.xrd import openapi_schema, xrd
from sovra.deploy.render import service_objects
from sovra.inference.launcher import free_port
from sovra.spec import load_catalog
from tests.deploy.schemas import problems

ROOT = Path(__file__).parent.parent.parent
ARTICLE = ROOT / "catalog" / "cluster" / "article.yaml"
FULL_CLAIM = ROOT / "tests" / "fixtures" / "claim-full.yaml"


REFERENCE = Path(__file__).parent.parent / "fixtures" / "reference"


def claims() -> list[dict[str, Any]]:
    return [*yaml.safe_load_all(ARTICLE.read_text()), yaml.safe_load(FULL_CLAIM.read_text())]


def test_the_crossplane_objects_validate_against_crossplanes_crds() -> None:
    assert [p for o in crossplane_objects("registry.example.com/function:1") for p in problems(o)] == []


def test_the_xrd_accepts_what_sovra_validate_accepts() -> None:
    validator = jsonschema.Draft4Validator(
        openapi_schema()
    )  # OpenAPI v3.0's dialect: boolean exclusiveMinimum
    reference = [yaml.safe_load(p.read_text()) for p in sorted(REFERENCE.glob("*.yaml"))]
    assert len(reference) == 7
    spec = xrd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    for claim in reference:  # the reference platform's own claims, and the XRD's CEL rules on them
        for path, rules in (("", spec), ("gateway", spec["properties"]["gateway"])):
            value = claim["spec"].get(path, {}) if path else claim["spec"]
            assert all(_cel(r["rule"], value) for r in rules["x-kubernetes-validations"]), claim["metadata"]
    for claim in [*claims(), *reference]:
        assert list(validator.iter_errors(claim["spec"])) == [], claim["metadata"]["name"]


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda s: s["model"].update(contextWindow=512), ["model", "contextWindow"]),
        (lambda s: s.update(engine="tgi"), ["engine"]),
        (lambda s: s["routing"].update(specialty="poetry"), ["routing", "specialty"]),
        (lambda s: s["scaling"].update(runningRatioThreshold=0), ["scaling", "runningRatioThreshold"]),
        (lambda s: s["gpu"].update(count=9), ["gpu", "count"]),
    ],
)
def test_the_xrd_refuses_what_sovra_validate_refuses(change: Any, path: list[str], tmp_path: Path) -> None:
    claim = claims()[0]
    change(claim["spec"])
    errors = list(jsonschema.Draft4Validator(openapi_schema()).iter_errors(claim["spec"]))
    assert [list(e.absolute_path) for e in errors] == [path]
    (tmp_path / "claim.yaml").write_text(yaml.safe_dump(claim))
    with pytest.raises(Exception, match=".".join(["spec", *path])):
        load_catalog(tmp_path / "claim.yaml")


def test_cel_rules_guard_what_a_schema_cannot_say() -> None:
    spec = xrd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert (
        "self.minReplicas <= self.maxReplicas"
        in spec["properties"]["scaling"]["x-kubernetes-validations"][0]["rule"]
    )
    managed = spec["properties"]["engineArgs"]["x-kubernetes-validations"][1]["rule"]
    assert "'--served-model-name'" in managed and "'--lora-modules'" in managed
    assert spec["properties"]["engineArgs"]["maxItems"] == 64  # bounded: CEL cost stays within budget
    assert "loraAdapters.exists(a, a.name == c.adapter)" in spec["x-kubernetes-validations"][0]["rule"]


def composite(claim: dict[str, Any]) -> dict[str, Any]:
    """The claim as Crossplane would send it: with the machinery fields a declaration lacks."""
    return {
        **claim,
        "metadata": {**claim["metadata"], "uid": "1234", "resourceVersion": "7", "generation": 2},
        "spec": {**claim["spec"], "crossplane": {"compositionRef": {"name": "inferenceservices.sovra.dev"}}},
    }


def request(claim: dict[str, Any]) -> fnv1.RunFunctionRequest:
    return fnv1.RunFunctionRequest(
        meta=fnv1.RequestMeta(tag="t1"),
        observed=fnv1.State(composite=fnv1.Resource(resource=resource.dict_to_struct(composite(claim)))),
    )


def expected(claim: dict[str, Any]) -> dict[str, dict[str, Any]]:
    service = next(s for s in load_catalog(ARTICLE).services if s.name == claim["metadata"]["name"])
    return {composed_name(o): o for o in service_objects(service, RenderSettings())}


def desired(answer: fnv1.RunFunctionResponse) -> dict[str, dict[str, Any]]:
    return {name: resource.struct_to_dict(r.resource) for name, r in answer.desired.resources.items()}


def _normalised(value: Any) -> Any:
    """Through protobuf's Struct every number is a float; compare what a cluster would see."""
    if isinstance(value, dict):
        return {k: _normalised(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalised(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def test_the_function_renders_what_sovra_render_renders() -> None:
    claim = claims()[0]
    answer = asyncio.run(SovraFunction().RunFunction(request(claim)))
    assert answer.meta.tag == "t1" and answer.results[0].severity == fnv1.SEVERITY_NORMAL
    assert _normalised(desired(answer)) == _normalised(expected(claim))


def test_an_invalid_claim_is_a_fatal_result_naming_the_field() -> None:
    claim = claims()[0]
    claim["spec"]["scaling"] = {"minReplicas": 5, "maxReplicas": 2}
    answer = asyncio.run(SovraFunction().RunFunction(request(claim)))
    (result,) = answer.results
    assert result.severity == fnv1.SEVERITY_FATAL
    assert "spec.scaling: minReplicas (5) > maxReplicas (2)" in result.message
    assert not answer.desired.resources


def test_sovra_function_serve_answers_over_grpc() -> None:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "sovra", "function", "serve", "--insecure", "--address", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            stub = grpcv1.FunctionRunnerServiceStub(channel)
            claim = claims()[1]
            answer = stub.RunFunction(request(claim), timeout=30)
    finally:
        server.terminate()
        server.wait(10)
    assert _normalised(desired(answer)) == _normalised(expected(claim))


def _cel(rule: str, value: Any) -> bool:
    import celpy

    environment = celpy.Environment()
    return bool(environment.program(environment.compile(rule)).evaluate({"self": celpy.json_to_cel(value)}))


@pytest.mark.parametrize(
    ("path", "value", "accepted"),
    [
        ("scaling", {"minReplicas": 1, "maxReplicas": 3}, True),
        ("scaling", {"minReplicas": 4, "maxReplicas": 3}, False),
        ("scaling", {"maxReplicas": 3}, True),
        ("engineArgs", ["--gpu-memory-utilization=0.9", "--enforce-eager"], True),
        ("engineArgs", ["--served-model-name=evil"], False),
        ("engineArgs", ["--port", "9000"], False),  # a bare value is not a flag
        ("engineArgs", ["--model-loader-extra-config={}"], False),
        ("", {"loraAdapters": [{"name": "sql"}], "gateway": {"canaries": [{"adapter": "sql"}]}}, True),
        ("", {"gateway": {"canaries": [{"adapter": "sql"}]}}, False),
        ("", {"model": {"repository": "a/b"}}, True),
        ("gateway", {"endpointPicker": {"enabled": True}}, True),
        ("gateway", {"enabled": True, "endpointPicker": {"enabled": True}, "canaries": []}, True),
        ("gateway", {"enabled": False, "endpointPicker": {"enabled": True}}, False),
        ("gateway", {"endpointPicker": {"enabled": True}, "canaries": [{"adapter": "sql"}]}, False),
        ("gateway", {"endpointPicker": {"enabled": False}, "canaries": [{"adapter": "sql"}]}, True),
    ],
)  # fmt: skip
def test_the_cel_rules_accept_and_refuse_like_the_pydantic_validators(
    path: str, value: Any, accepted: bool
) -> None:
    """Evaluated with cel-python (the API server runs the same expressions)."""
    spec = xrd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    schema = spec if not path else spec["properties"][path]
    verdicts = [_cel(rule["rule"], value) for rule in schema["x-kubernetes-validations"]]
    assert all(verdicts) is accepted
