"""Service plans for `sovra up`: each service to its engine, command line and replica count."""

from pathlib import Path

import pytest

from sovra.config import load_platform_config
from sovra.errors import EngineError
from sovra.inference.drivers import HostFacts
from sovra.runtime.engines import model_card, plan_services
from sovra.spec import load_catalog

BEARER = "authorization"


def test_plans_map_each_service_to_its_engine_and_replica_count(tmp_path: Path) -> None:
    catalog = load_catalog(Path(__file__).parents[1] / "fixtures" / "article-claim.yaml")
    fake_binary = tmp_path / "llama-server"
    fake_binary.write_text("#!/bin/sh\n")
    fake_binary.chmod(0o755)
    settings = load_platform_config(
        None, environ={"SOVRA_HOME": str(tmp_path), "SOVRA_LLAMA_SERVER": str(fake_binary)}
    )
    weights = {"qwen-coder": tmp_path / "w.gguf"}
    (plan,) = plan_services(catalog, settings, weights, HostFacts(cuda_gpu=False, vllm_command=False))
    assert (plan.name, plan.replicas) == ("qwen-coder", 1)
    argv = plan.launch(9001).argv
    assert argv[0] == str(fake_binary) and "--alias" in argv and argv[argv.index("--port") + 1] == "9001"
    explicit_vllm = load_catalog(write_claim(tmp_path, "engine: vllm"))
    with pytest.raises(EngineError, match="`vllm` command is not installed"):
        plan_services(explicit_vllm, settings, weights, HostFacts(cuda_gpu=True, vllm_command=False))


def write_claim(tmp_path: Path, engine_line: str) -> Path:
    text = (Path(__file__).parents[1] / "fixtures" / "article-claim.yaml").read_text()
    path = tmp_path / "claim.yaml"
    path.write_text(text.replace("engine: auto", engine_line))
    return path


def test_the_default_catalog_describes_smollm2_as_declared() -> None:
    service = load_catalog(Path(__file__).parents[2] / "catalog").services[0]
    card = model_card(service, "llama.cpp", images=False)
    assert (card.context_window, card.tier, card.specialty) == (4096, "small", "general")
    assert card.weights == "HuggingFaceTB/SmolLM2-135M-Instruct@main"
    # FIM through its --override-kv, tools through llama-server's --jinja; no projector, no vision.
    assert card.capabilities == {"chat", "completions", "tools", "fim"}
    described = card.describe()
    assert described["context_length"] == described["max_model_len"] == 4096
    assert described["capabilities"] == ["chat", "completions", "fim", "tools"]


def test_a_vllm_service_calls_tools_only_with_a_parser(tmp_path: Path) -> None:
    service = load_catalog(write_claim(tmp_path, "engine: vllm")).services[0]
    assert service.spec.model.tool_call_parser  # the fixture declares one
    assert {"tools", "vision"} <= model_card(service, "vllm", images=True).capabilities
    model = service.spec.model.model_copy(update={"tool_call_parser": None})
    plain = service.model_copy(update={"spec": service.spec.model_copy(update={"model": model})})
    assert "tools" not in model_card(plain, "vllm", images=True).capabilities


@pytest.mark.parametrize("args", [["--cache-type-k=q8_0"], ["--cache-type-k", "q8_0"], ["-ctk", "q8_0"]])
def test_the_kv_cache_is_predicted_at_the_cache_type_the_engine_gets(tmp_path: Path, args: list[str]) -> None:
    from sovra.runtime.engines import predicted_memory
    from tests.inference.test_memory import SMALL, gguf

    weights = gguf(tmp_path / "m.gguf", SMALL)
    service = load_catalog(Path(__file__).parents[2] / "catalog").services[0]
    quantised = service.model_copy(update={"spec": service.spec.model_copy(update={"engine_args": args})})
    f16, q8 = predicted_memory(service, weights).kv_cache, predicted_memory(quantised, weights).kv_cache
    assert q8 == int(f16 * 34 / 64)  # q8_0: 34 bytes a block of 32, against 2 bytes an element
