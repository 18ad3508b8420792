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
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest

from sovra.config import load_platform_config
from sovra.database import Database
from sovra.inference.launcher import die_with_parent, free_port
from sovra.runtime.engines import build_store, engine_binary, preload
from sovra.spec import load_catalog

REPO = Path(__file__).parents[1]
CATALOG = REPO / "catalog"
TOKEN = "sk-sovra-test-" + "0" * 16
POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"  # the local server, trust auth


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio, as the gateway does."""
    return "asyncio"


@pytest.fixture(scope="session")
def llama_server() -> Path:
    config = load_platform_config(None)
    return engine_binary(config).path


@pytest.fixture(scope="session")
def smollm2() -> Path:
    config = load_platform_config(None)
    return preload(load_catalog(CATALOG), build_store(config))["smollm2"]


@dataclass
class RunningPlatform:
    process: subprocess.Popen[str]
    base_url: str
    log: Path
    config: Path

    def engine_key(self, pid: int) -> dict[str, str]:
        """What reaches an engine directly: its per-start secret, from its environment (root may
        read it; nobody else on the machine)."""
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        (key,) = [v.split(b"=", 1)[1].decode() for v in environ if v.startswith(b"LLAMA_API_KEY=")]
        return {"authorization": f"Bearer {key}"}

    def engine_pids(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in children.read_text().split()] if children.exists() else []


def start_platform(
    tmp: Path, *extra: str, catalog: Path = CATALOG, config_text: str = "", ready: bool = True
) -> RunningPlatform:
    """`sovra up` in a child process, once /health says ok (or, with `ready=False`, answers at all)."""
    port = free_port()
    log = tmp / "sovra-up.log"
    config = tmp / "sovra.yaml"  # its own database, so tests never touch the user's keys or usage
    config.write_text(
        f"database: {{url: 'sqlite:///{tmp / 'sovra.db'}'}}\n"
        "limits: {redisUrl: 'redis://127.0.0.1:6379/0'}\n"  # the local Redis: limits as with replicas
        + config_text
    )
    env = {**os.environ, "SOVRA_API_KEY": TOKEN}
    command = [
        sys.executable,
        "-m",
        "sovra",
        "up",
        "-f",
        str(catalog),
        "-c",
        str(config),
        "--port",
        str(port),
        *extra,
    ]
    with log.open("w") as out:  # the child keeps its own copy of the descriptor
        # If pytest dies (Ctrl-C twice, a CI kill), `sovra up` is told to stop, and stops its engines.
        process = subprocess.Popen(
            command,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=die_with_parent(os.getpid(), signal.SIGTERM),
        )
    platform = RunningPlatform(process, f"http://127.0.0.1:{port}", log, config)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sovra up exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{platform.base_url}/health", timeout=1).status_code == 200 or not ready:
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


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A fresh, migrated database: a SQLite file, or a private schema on the local PostgreSQL."""
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'sovra.db'}")
        db.migrate()
        yield db
        return
    schema = f"sovra_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    db = Database(f"{POSTGRES}?options=-csearch_path%3D{schema}")
    db.migrate()
    try:
        yield db
    finally:
        with psycopg.connect(POSTGRES, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
