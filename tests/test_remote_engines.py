"""`engines.remoteUrl`: the gateway in front of engines it does not run (its Kubernetes mode). A
real llama-server started here stands in for the model's Service."""

import subprocess
import time
from pathlib import Path

import httpx
import pytest

from sovra.inference.launcher import free_port
from tests.conftest import TOKEN, start_platform, stop_platform

pytestmark = pytest.mark.engine


def test_the_gateway_reaches_a_remote_engine_and_starts_none(
    llama_server: Path, smollm2: Path, tmp_path: Path
) -> None:
    port = free_port()
    engine = subprocess.Popen(
        [str(llama_server), "--model", str(smollm2), "--alias", "smollm2", "--port", str(port), "--host", "127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        platform = start_platform(
            tmp_path, config_text=f"engines: {{remoteUrl: 'http://127.0.0.1:{port}'}}\n"
        )
        try:
            assert platform.engine_pids() == []  # it started no engine of its own
            answer = httpx.post(
                f"{platform.base_url}/v1/chat/completions", timeout=60,
                headers={"authorization": f"Bearer {TOKEN}"},
                json={"model": "smollm2", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]},
            )  # fmt: skip
        finally:
            stop_platform(platform)
    finally:
        engine.terminate()
        engine.wait(10)
    assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["role"] == "assistant"
