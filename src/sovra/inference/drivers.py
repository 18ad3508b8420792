"""Engine drivers: from a declaration to the exact command line, and the choice between engines.

Pure code: no processes are started here, so every mapping is unit-tested on any machine.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sovra.spec import EngineKind, InferenceService, Quantization
from sovra.storage.refs import HfRef

__all__ = ["HostFacts", "Launch", "choose_engine", "llama_server_argv", "vllm_argv"]


@dataclass(frozen=True)
class Launch:
    """What the supervisor needs to run one replica."""

    argv: tuple[str, ...]
    health_path: str = "/health"
    # The environment variable the engine reads its API key from: each start gets a fresh secret
    # there (not on the command line, which `ps` shows anyone), known only to the gateway.
    key_env: str = "LLAMA_API_KEY"


@dataclass(frozen=True)
class HostFacts:
    cuda_gpu: bool
    vllm_command: bool

    @classmethod
    def probe(cls) -> HostFacts:
        return cls(cuda_gpu=_has_cuda_gpu(), vllm_command=shutil.which("vllm") is not None)


def _has_cuda_gpu() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        result = subprocess.run(["nvidia-smi", "-L"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and b"GPU" in result.stdout


def choose_engine(service: InferenceService, host: HostFacts) -> EngineKind:
    """On this machine a GPU engine is available with a CUDA GPU and the `vllm` command."""
    return service.engine_for(host.cuda_gpu and host.vllm_command)


def llama_server_argv(
    service: InferenceService, binary: Path, weights: Path, port: int, host: str = "127.0.0.1"
) -> Launch:
    model = service.spec.model
    slots = model.max_num_seqs
    argv = [
        str(binary),
        "--model", str(weights),
        "--alias", service.name,
        "--host", host,
        "--port", str(port),
        # llama-server splits its context between slots; give each slot the declared window.
        "--ctx-size", str(model.context_window * slots),
        "--parallel", str(slots),
        "--metrics",
        "--jinja",  # chat templates with tool calls
        "--no-webui",
    ]  # fmt: skip
    for arg in service.spec.engine_args:  # llama.cpp's parser knows no --flag=value form
        argv += arg.split("=", 1)
    return Launch(tuple(argv))


def vllm_argv(service: InferenceService, weights: Path | None, port: int, host: str = "127.0.0.1") -> Launch:
    """The reference composition's mapping; `weights` is the preloaded path, or None to let vLLM fetch."""
    model = service.spec.model
    ref = model.weights
    target = str(weights) if weights is not None else model.repository
    argv = [
        "vllm", "serve", target,
        "--served-model-name", service.name,
        "--host", host,
        "--port", str(port),
        "--max-model-len", str(model.context_window),
        "--max-num-seqs", str(model.max_num_seqs),
    ]  # fmt: skip
    if service.spec.cache.prefix_cache.enabled:
        argv.append("--enable-prefix-caching")
    if isinstance(ref, HfRef) and weights is None:  # vLLM fetches from the Hub itself
        argv += ["--revision", ref.revision]
    if model.quantization is not Quantization.FP16:
        argv += ["--quantization", model.quantization.value]
    if model.tool_call_parser:
        argv += ["--enable-auto-tool-choice", "--tool-call-parser", model.tool_call_parser]
    argv += service.spec.engine_args
    return Launch(tuple(argv), key_env="VLLM_API_KEY")
