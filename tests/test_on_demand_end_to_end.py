"""`sovra up` with SmolLM2 declared `minReplicas: 0` (the real llama-server, the OpenAI SDK): no
engine until the first requests, which wait for the load and are all answered; unloaded after the
idle time; loaded again by the next request."""

import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import CATALOG, TOKEN, RunningPlatform, start_platform, stop_platform

pytestmark = pytest.mark.engine
# The idle time before an unload: long enough that `sovra status` (a fresh interpreter, slow on a
# loaded machine: 15 s was not, on two cores with a benchmark beside the suite) still finds the
# service ready, short enough to wait for.
IDLE_SECONDS = 30


def ask(client: openai.OpenAI) -> bool:
    """Whether the model answered (SmolLM2 may answer with nothing but its end token)."""
    answer = client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "Say hi."}], max_tokens=8
    )
    return answer.choices[0].finish_reason in ("stop", "length")


def status(base_url: str) -> dict[str, object]:
    answer = httpx.get(f"{base_url}/v1/status", headers={"authorization": f"Bearer {TOKEN}"}, timeout=5)
    answer.raise_for_status()
    services: dict[str, dict[str, object]] = answer.json()["services"]
    return services["smollm2"]


def sovra(command: str, name: str | None, platform: RunningPlatform) -> str:
    """`sovra status|load|unload` against the running gateway, with the operator token."""
    argv = [sys.executable, "-m", "sovra", command, *([name] if name else []), "--url", platform.base_url]
    return subprocess.run(
        [*argv, "-c", str(platform.config)], env={**os.environ, "SOVRA_API_KEY": TOKEN},
        capture_output=True, text=True, check=True, timeout=300,
    ).stdout  # fmt: skip


def test_a_service_loads_on_its_first_requests_and_unloads_when_idle(
    llama_server: Path, smollm2: Path, tmp_path: Path
) -> None:
    catalog = tmp_path / "catalog.yaml"
    declared = (CATALOG / "smollm2.yaml").read_text()
    catalog.write_text(declared.replace("minReplicas: 1, maxReplicas: 1", "minReplicas: 0, maxReplicas: 1"))
    config = f"engines: {{cooldownSeconds: {IDLE_SECONDS}}}\n"
    platform = start_platform(tmp_path, catalog=catalog, config_text=config)
    try:
        assert platform.engine_pids() == []  # healthy with nothing loaded
        assert status(platform.base_url)["state"] == "unloaded"
        client = openai.OpenAI(base_url=f"{platform.base_url}/v1", api_key=TOKEN, max_retries=0, timeout=120)
        with ThreadPoolExecutor(3) as pool:
            answers = list(pool.map(lambda _: ask(client), range(3)))
        assert all(answers)  # all three held through the load, then answered
        (engine,) = platform.engine_pids()
        described = status(platform.base_url)
        assert described["state"] == "ready" and described["loads_on_demand"] == 1
        shown = sovra("status", None, platform)
        assert "smollm2" in shown and "ready" in shown and "unloads in" in shown
        deadline = time.monotonic() + 2 * IDLE_SECONDS
        while platform.engine_pids() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert platform.engine_pids() == [], f"not unloaded after {IDLE_SECONDS} s idle"
        assert status(platform.base_url)["state"] == "unloaded"
        assert ask(client)  # the next request loads it again
        assert status(platform.base_url)["loads_on_demand"] == 2 and platform.engine_pids() != [engine]
        assert "unloading: idle" in platform.log.read_text()
        assert "smollm2: unloaded" in sovra("unload", "smollm2", platform)
        assert platform.engine_pids() == []
        assert "smollm2: ready" in sovra("load", "smollm2", platform) and len(platform.engine_pids()) == 1
    finally:
        stop_platform(platform)


def test_a_second_replica_under_sustained_load_and_back_to_one_after_the_cooldown(
    llama_server: Path, smollm2: Path, tmp_path: Path
) -> None:
    """Real concurrent requests keep SmolLM2's 4 slots busy (1.0 running per slot, threshold 0.7):
    a second replica starts; once they stop, it is removed after the cooldown. (On two cores the
    replicas share the CPU, so the requests are short: this is about the mechanism, not speed.)"""
    catalog = tmp_path / "catalog.yaml"
    declared = (CATALOG / "smollm2.yaml").read_text()
    catalog.write_text(declared.replace("minReplicas: 1, maxReplicas: 1", "minReplicas: 1, maxReplicas: 2"))
    config = "engines: {cooldownSeconds: 3, pollingIntervalSeconds: 1}\n"
    platform = start_platform(tmp_path, catalog=catalog, config_text=config)
    client = openai.OpenAI(base_url=f"{platform.base_url}/v1", api_key=TOKEN, max_retries=0, timeout=300)
    stop = threading.Event()

    def keep_busy() -> None:
        while not stop.is_set():
            client.chat.completions.create(
                model="smollm2", messages=[{"role": "user", "content": "Tell me a long story."}],
                max_tokens=32, temperature=1.0,
            )  # fmt: skip

    try:
        assert len(platform.engine_pids()) == 1
        with ThreadPoolExecutor(4) as pool:
            load = [pool.submit(keep_busy) for _ in range(4)]
            deadline = time.monotonic() + 90
            while len(platform.engine_pids()) < 2 and time.monotonic() < deadline:
                time.sleep(0.2)
            scaled = len(platform.engine_pids())
            stop.set()
            for done in load:
                done.result()
        assert scaled == 2, "no second replica under load"
        assert "1 → 2" in str(status(platform.base_url).get("last_scaling"))
        deadline = time.monotonic() + 60
        while len(platform.engine_pids()) > 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(platform.engine_pids()) == 1, "the second replica outlived the cooldown"
        assert "2 → 1" in str(status(platform.base_url).get("last_scaling"))
    finally:
        stop.set()
        stop_platform(platform)
