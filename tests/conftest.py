"""Shared fixtures for tests against real parts: the real llama-server and the real SmolLM2.

`make test` builds/fetches both before pytest runs (`sovra engines install`, `sovra preload`), into
the same per-user cache `sovra up` uses, so these fixtures find them in place.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from sovra.config import load_platform_config
from sovra.inference.llamacpp_build import install_llama_server
from sovra.inference.process import free_port
from sovra.runtime import build_store, preload
from sovra.spec import load_catalog

REPO = Path(__file__).parents[1]
CATALOG = REPO / "catalog"
TOKEN = "sk-sovra-test-" + "0" * 16


@pytest.fixture(scope="session")
def llama_server() -> Path:
    config = load_platform_config(None)
    return install_llama_server(config.home, config.engines.llama_server)


@pytest.fixture(scope="session")
def smollm2() -> Path:
    config = load_platform_config(None)
    return preload(load_catalog(CATALOG), build_store(config))["smollm2"]


@dataclass
class RunningPlatform:
    process: subprocess.Popen[str]
    base_url: str
    log: Path

    def engine_pids(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in children.read_text().split()] if children.exists() else []


def start_platform(tmp: Path, *extra: str) -> RunningPlatform:
    port = free_port()
    log = tmp / "sovra-up.log"
    env = {**os.environ, "SOVRA_API_KEY": TOKEN}
    command = [sys.executable, "-m", "sovra", "up", "-f", str(CATALOG), "--port", str(port), *extra]
    with log.open("w") as out:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
    platform = RunningPlatform(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sovra up exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{platform.base_url}/health", timeout=1).status_code == 200:
                return platform
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop_platform(platform)
    raise RuntimeError(f"sovra up did not become healthy:\n{log.read_text()}")


def stop_platform(platform: RunningPlatform) -> None:
    if platform.process.poll() is None:
        platform.process.send_signal(signal.SIGINT)
        try:
            platform.process.wait(30)
        except subprocess.TimeoutExpired:
            platform.process.kill()
            platform.process.wait()


@pytest.fixture(scope="session")
def platform(
    llama_server: Path, smollm2: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningPlatform]:
    running = start_platform(tmp_path_factory.mktemp("platform"))
    yield running
    stop_platform(running)
