"""Obtaining `llama-server`: one given by the user, one on PATH, or our own cached build.

The build uses the llama.cpp sources vendored in the `llama-cpp-python` sdist, fetched through pip
(so an internal PyPI mirror suffices), at a pinned version; only the `llama-server` target, CPU
backend. It runs once per machine, under a lock, and lands in the cache atomically.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from filelock import FileLock

from sovra.errors import EngineError

__all__ = ["LLAMA_CPP_PYTHON_VERSION", "cached_binary", "find_llama_server", "install_llama_server"]

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
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
    "-DGGML_NATIVE=ON",  # built on and for this machine
)
log = logging.getLogger("sovra.engines")


def cached_binary(home: Path) -> Path:
    tag = f"llama-server-{LLAMA_CPP_PYTHON_VERSION}-{platform.system().lower()}-{platform.machine()}"
    return home / "engines" / tag / "llama-server"


def find_llama_server(home: Path, configured: Path | None) -> Path | None:
    """The binary to use without building anything, or None."""
    if configured is not None:
        if not os.access(configured, os.X_OK):
            raise EngineError(f"llama-server at {configured} is missing or not executable")
        return configured
    on_path = shutil.which("llama-server")
    if on_path:
        return Path(on_path)
    cached = cached_binary(home)
    return cached if os.access(cached, os.X_OK) else None


def install_llama_server(home: Path, configured: Path | None, jobs: int | None = None) -> Path:
    """Return a usable llama-server, building and caching it first if there is none."""
    found = find_llama_server(home, configured)
    if found is not None:
        return found
    target = cached_binary(home)
    target.parent.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(target.parent.parent / ".build.lock"):
        if os.access(target, os.X_OK):
            return target
        _build(target, jobs or os.cpu_count() or 2)
    return target


def _build(target: Path, jobs: int) -> None:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sovra-llama-build-", dir=target.parent.parent) as tmp:
        work = Path(tmp)
        print(f"sovra: building llama-server from llama-cpp-python {LLAMA_CPP_PYTHON_VERSION} "
              f"(once; about 6 minutes on 2 cores)", file=sys.stderr, flush=True)  # fmt: skip
        sdist = _download_sdist(work)
        source = _extract_vendored(sdist, work / "src")
        build = work / "build"
        _run(["cmake", "-S", str(source), "-B", str(build), *_CMAKE_OPTIONS], "configure")
        _run(["cmake", "--build", str(build), "--target", "llama-server", "-j", str(jobs)], "build")
        built = build / "bin" / "llama-server"
        if not built.exists():
            raise EngineError(f"the build finished but produced no {built}")
        staged = work / "llama-server"
        shutil.copy2(built, staged)
        staged.chmod(0o755)
        target.parent.mkdir(parents=True, exist_ok=True)
        staged.replace(target)
    log.info("llama-server built", extra={"path": str(target), "seconds": round(time.monotonic() - started)})


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
