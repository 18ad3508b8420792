"""Building llama-server: instruction-set choices, the proof run, fallbacks and the cache record.

The builds are faked (a build takes 6 minutes); the proof runs are real — they start the stand-in
binaries and decode through them, and, with the `engine` mark, the real llama-server on SmolLM2.
"""

import json
import shutil
import sys
from pathlib import Path

import pytest

from sovra.errors import EngineError
from sovra.inference.llamacpp_build import (
    BuildRecord,
    InstructionSet,
    cached_binary,
    cpu_signature,
    install_llama_server,
    instruction_sets,
)
from sovra.inference.proof import prove_llama_server

STAND_IN = Path(__file__).parent / "stand_in_engine.py"
NATIVE = InstructionSet("native", "all", ("-DGGML_NATIVE=ON",))
NO_AMX = InstructionSet("native-no-amx", "no AMX", ("-DGGML_NATIVE=ON", "-DCMAKE_C_FLAGS=-mno-amx-tile"))
BASELINE = InstructionSet("x86-64-v2", "SSE4.2", ("-DGGML_NATIVE=OFF",))
ISAS = [NATIVE, NO_AMX, BASELINE]


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


def crashing(path: Path) -> Path:
    """Dies by SIGILL as soon as it runs, like a binary using instructions the CPU faults on."""
    return script(path, "echo 'llama threadpool init'\nkill -ILL $$")


def working(path: Path) -> Path:
    return script(path, f'exec {sys.executable} {STAND_IN} "$@"')


class FakeBuilder:
    """Writes a stand-in binary per instruction set instead of compiling; records what it built."""

    def __init__(self, crash: set[str], exit_code: int | None = None) -> None:
        self.crash = crash
        self.exit_code = exit_code
        self.built: list[str] = []

    def __call__(self, isa: InstructionSet, work: Path) -> Path:
        self.built.append(isa.name)
        out = work / f"llama-server-{isa.name}"
        if self.exit_code is not None:
            return script(out, f"echo 'error: unknown argument' >&2; exit {self.exit_code}")
        return crashing(out) if isa.name in self.crash else working(out)


def model(tmp_path: Path) -> Path:
    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"GGUF")
    return weights


def install(tmp_path: Path, builder: FakeBuilder, rebuild: bool = False):  # type: ignore[no-untyped-def]
    home = tmp_path / "home"
    return install_llama_server(
        home, None, lambda: model(tmp_path), rebuild=rebuild, builder=builder, isas=ISAS
    )


@pytest.fixture(autouse=True)
def no_llama_server_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # a llama-server on PATH would be used as given


def test_x86_choices_go_from_native_to_a_portable_baseline() -> None:
    amx = frozenset({"avx2", "fma", "f16c", "bmi2", "avx512f", "amx_tile", "amx_int8", "amx_bf16"})
    sets = instruction_sets("x86_64", amx)
    assert [s.name for s in sets] == ["native", "native-no-amx", "x86-64-v3", "x86-64-v2"]
    no_amx = sets[1].cmake
    for language in ("C", "CXX"):
        (flags,) = [o for o in no_amx if o.startswith(f"-DCMAKE_{language}_FLAGS=")]
        assert {"-mno-amx-tile", "-mno-amx-int8", "-mno-amx-bf16"} <= set(flags.split("=", 1)[1].split())
    assert "-DGGML_AVX512=OFF" in sets[2].cmake and "-DGGML_AVX2=ON" in sets[2].cmake
    assert "-DGGML_AVX=OFF" in sets[3].cmake and "-DGGML_SSE42=ON" in sets[3].cmake
    # Without AMX there is no no-AMX build to try; without AVX2, no v3 one.
    assert [s.name for s in instruction_sets("x86_64", frozenset({"sse4_2"}))] == ["native", "x86-64-v2"]
    assert [s.name for s in instruction_sets("aarch64", frozenset({"asimd"}))] == ["native", "armv8-a"]
    assert "-DGGML_CPU_ARM_ARCH=armv8-a" in instruction_sets("aarch64", frozenset())[1].cmake


def test_a_build_that_dies_by_sigill_falls_back_and_only_a_proven_one_is_cached(tmp_path: Path) -> None:
    builder = FakeBuilder(crash={"native"})
    binary = install(tmp_path, builder)
    assert builder.built == ["native", "native-no-amx"]
    assert binary.origin == "built" and binary.path == cached_binary(tmp_path / "home")
    record = binary.record
    assert record is not None and record.instruction_set == "native-no-amx"
    assert record.cmake == list(NO_AMX.cmake) and record.cpu == cpu_signature()
    assert record.version == "1 (stand-in)"
    assert record.rejected == [{"instructionSet": "native", "reason": record.rejected[0]["reason"]}]
    assert record.rejected[0]["reason"].startswith("SIGILL: the engine binary uses CPU instructions")
    assert json.loads((binary.path.parent / "build.json").read_text())["instruction_set"] == "native-no-amx"
    assert prove_llama_server(binary.path, model(tmp_path)).passed  # what was cached is what passed
    assert "instruction set: native-no-amx" in binary.describe()

    again = FakeBuilder(crash=set())
    assert install(tmp_path, again).record == record and again.built == []  # proven: used as is


def test_the_baseline_is_tried_last_and_a_machine_where_nothing_runs_is_named(tmp_path: Path) -> None:
    builder = FakeBuilder(crash={"native", "native-no-amx", "x86-64-v2"})
    with pytest.raises(EngineError, match="no build of llama-server runs on this machine") as caught:
        install(tmp_path, builder)
    assert builder.built == ["native", "native-no-amx", "x86-64-v2"]
    assert str(caught.value).count("SIGILL") == 3
    assert not cached_binary(tmp_path / "home").exists()


def test_a_proof_failing_for_another_reason_is_an_error_not_a_fallback(tmp_path: Path) -> None:
    builder = FakeBuilder(crash=set(), exit_code=1)
    with pytest.raises(
        EngineError, match="native build of llama-server fails its proof run: exited with code 1"
    ):
        install(tmp_path, builder)
    assert builder.built == ["native"] and not cached_binary(tmp_path / "home").exists()


def test_an_unproven_cached_binary_is_proven_on_first_use(tmp_path: Path) -> None:
    target = cached_binary(tmp_path / "home")
    target.parent.mkdir(parents=True)
    working(target)  # left by an older Sovra: no build.json
    builder = FakeBuilder(crash=set())
    binary = install(tmp_path, builder)
    assert builder.built == []
    assert binary.record == BuildRecord.read(target)
    assert binary.record is not None and binary.record.cpu == cpu_signature()
    assert binary.record.instruction_set == "native" and binary.record.proof_seconds > 0


def test_an_unproven_cached_binary_that_crashes_is_rebuilt_skipping_its_instruction_set(
    tmp_path: Path,
) -> None:
    target = cached_binary(tmp_path / "home")
    target.parent.mkdir(parents=True)
    crashing(target)
    builder = FakeBuilder(crash=set())
    binary = install(tmp_path, builder)
    assert builder.built == ["native-no-amx"]  # native is what the old build was, and it crashed
    assert binary.record is not None and binary.record.instruction_set == "native-no-amx"
    assert [r["instructionSet"] for r in binary.record.rejected] == ["native"]
    assert prove_llama_server(target, model(tmp_path)).passed


def test_a_binary_proven_on_another_cpu_is_proven_again(tmp_path: Path) -> None:
    target = cached_binary(tmp_path / "home")
    target.parent.mkdir(parents=True)
    crashing(target)
    BuildRecord("native", ["-DGGML_NATIVE=ON"], "another-cpu", "1").write(target)
    builder = FakeBuilder(crash=set())
    assert install(tmp_path, builder).record.instruction_set == "native-no-amx"  # type: ignore[union-attr]
    assert builder.built == ["native-no-amx"]


def test_rebuild_discards_a_proven_build(tmp_path: Path) -> None:
    install(tmp_path, FakeBuilder(crash={"native"}))
    builder = FakeBuilder(crash=set())
    assert install(tmp_path, builder, rebuild=True).record.instruction_set == "native"  # type: ignore[union-attr]
    assert builder.built == ["native"]


def test_a_given_binary_is_used_as_is(tmp_path: Path) -> None:
    given = working(tmp_path / "my-llama-server")
    builder = FakeBuilder(crash=set())
    binary = install_llama_server(tmp_path / "home", given, lambda: model(tmp_path), builder=builder)
    assert binary.path == given and binary.origin == "configured" and builder.built == []
    with pytest.raises(EngineError, match="missing or not executable"):
        install_llama_server(tmp_path / "home", tmp_path / "nope", lambda: model(tmp_path))


def test_a_proof_that_never_gets_healthy_times_out(tmp_path: Path) -> None:
    silent = script(tmp_path / "silent", "sleep 30")
    proof = prove_llama_server(silent, model(tmp_path), timeout=1.0)
    assert not proof.passed and proof.reason == "not healthy within 1 s" and not proof.crashed


@pytest.mark.engine
def test_the_fallback_path_ends_with_the_real_engine_decoding(
    tmp_path: Path, llama_server: Path, smollm2: Path
) -> None:
    """The native stand-in dies by SIGILL; the next 'build' is the real llama-server, which must
    decode SmolLM2 for real before it is cached."""

    def builder(isa: InstructionSet, work: Path) -> Path:
        out = work / f"llama-server-{isa.name}"
        if isa.name == "native":
            return crashing(out)
        shutil.copy2(llama_server, out)
        return out

    binary = install_llama_server(tmp_path / "home", None, lambda: smollm2, builder=builder, isas=ISAS)
    assert binary.record is not None and binary.record.instruction_set == "native-no-amx"
    assert binary.record.version not in ("", "unknown")
    proof = prove_llama_server(binary.path, smollm2)
    assert proof.passed and proof.tokens == 8
