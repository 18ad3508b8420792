from pathlib import Path

import yaml

from sovra.inference.drivers import HostFacts, choose_engine, llama_server_argv, vllm_argv
from sovra.spec import EngineKind, InferenceService

CLAIM = Path(__file__).parents[1] / "fixtures" / "article-claim.yaml"
GPU_HOST = HostFacts(cuda_gpu=True, vllm_command=True)


def claim(**spec_changes: object) -> InferenceService:
    document = yaml.safe_load(CLAIM.read_text())
    model = document["spec"]["model"]
    for key, value in spec_changes.items():
        target = (
            model if key in model or key in ("file", "quantization", "toolCallParser") else document["spec"]
        )
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value
    return InferenceService.model_validate(document)


def flag(argv: tuple[str, ...], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_vllm_argv_follows_the_reference_mapping() -> None:
    argv = vllm_argv(claim(file=None), Path("/store/qwen"), 9000).argv
    assert argv[:3] == ("vllm", "serve", "/store/qwen")
    assert flag(argv, "--served-model-name") == "qwen-coder"
    assert flag(argv, "--max-model-len") == "32768"
    assert flag(argv, "--max-num-seqs") == "32"
    assert flag(argv, "--quantization") == "fp8"
    assert flag(argv, "--tool-call-parser") == "hermes"
    assert "--enable-auto-tool-choice" in argv
    assert "--revision" not in argv  # the preloaded directory is that revision already
    assert "--enable-prefix-caching" in argv
    assert (flag(argv, "--host"), flag(argv, "--port")) == ("127.0.0.1", "9000")


def test_vllm_drops_quantization_for_fp16_and_tools_without_a_parser() -> None:
    argv = vllm_argv(claim(quantization="fp16", toolCallParser=None), None, 9000).argv
    assert "--quantization" not in argv
    assert "--enable-auto-tool-choice" not in argv and "--tool-call-parser" not in argv
    assert argv[2] == "Qwen/Qwen2.5-Coder-7B-Instruct"  # not preloaded: vLLM fetches the pinned revision
    assert flag(argv, "--revision") == "c03e6d358207e414f1eca0bb1891e29f1db0e242"


def test_user_engine_args_come_last_so_they_cannot_shadow_managed_flags() -> None:
    argv = vllm_argv(claim(engineArgs=["--gpu-memory-utilization=0.8"]), None, 9000).argv
    assert argv[-1] == "--gpu-memory-utilization=0.8"


def test_llama_server_argv_maps_slots_and_context() -> None:
    service = claim(maxNumSeqs=4, contextWindow=2048, engineArgs=["--threads=2", "--no-mmap"])
    argv = llama_server_argv(service, Path("/bin/llama-server"), Path("/store/m.gguf"), 8123).argv
    assert argv[0] == "/bin/llama-server"
    assert flag(argv, "--model") == "/store/m.gguf"
    assert flag(argv, "--alias") == "qwen-coder"
    assert flag(argv, "--ctx-size") == str(2048 * 4)  # each slot gets the declared window
    assert flag(argv, "--parallel") == "4"
    assert (flag(argv, "--host"), flag(argv, "--port")) == ("127.0.0.1", "8123")
    assert "--metrics" in argv and "--jinja" in argv
    assert argv[-3:] == ("--threads", "2", "--no-mmap")  # llama.cpp wants --flag value, not --flag=value


def test_auto_picks_vllm_only_with_gpu_vllm_and_non_gguf_weights() -> None:
    safetensors = claim(file=None)
    assert choose_engine(safetensors, GPU_HOST) is EngineKind.VLLM
    assert choose_engine(claim(), GPU_HOST) is EngineKind.LLAMACPP  # the claim names a .gguf file
    assert choose_engine(safetensors, HostFacts(cuda_gpu=False, vllm_command=True)) is EngineKind.LLAMACPP
    assert choose_engine(safetensors, HostFacts(cuda_gpu=True, vllm_command=False)) is EngineKind.LLAMACPP
    assert choose_engine(claim(engine="vllm"), HostFacts(False, False)) is EngineKind.VLLM  # explicit wins
    # One rule with the cluster's: a declaration that asks for no GPU is not put on one.
    assert choose_engine(claim(file=None, gpu={"count": 0}), GPU_HOST) is EngineKind.LLAMACPP
