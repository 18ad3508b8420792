"""Failover with the real engine: two replicas, one killed; every request still gets an answer."""

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import CATALOG, TOKEN, start_platform, stop_platform

pytestmark = pytest.mark.engine


def test_requests_survive_a_replica_being_killed(llama_server: Path, smollm2: Path, tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.yaml"
    text = (CATALOG / "smollm2.yaml").read_text()
    catalog.write_text(text.replace("minReplicas: 1, maxReplicas: 1", "minReplicas: 2, maxReplicas: 2"))
    platform = start_platform(tmp_path, catalog=catalog)
    try:
        victim, survivor = platform.engine_pids()
        headers = {"authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=platform.base_url, headers=headers, timeout=60) as http:
            # /health is 200 once one replica is ready; failing over needs the second one too.
            deadline = time.monotonic() + 60
            while http.get("/health").json()["services"]["smollm2"]["ready"] < 2:
                assert time.monotonic() < deadline, "the second replica never became ready"
                time.sleep(0.1)
            os.kill(victim, signal.SIGKILL)
            statuses = []
            for n in range(12):  # different prompts: the balancer would use both replicas
                body = {
                    "model": "smollm2",
                    "max_tokens": 2,
                    "messages": [{"role": "user", "content": f"Say {n}"}],
                }
                statuses.append(http.post("/v1/chat/completions", json=body).status_code)
            metrics = http.get("/metrics").text
        log = platform.log.read_text()[-4000:]  # shown if an assertion fails: what the gateway saw
        assert statuses == [200] * 12, log
        assert 'sovra_gateway_retries_total{reason="another_replica"}' in metrics, log
        assert survivor in platform.engine_pids(), log
    finally:
        stop_platform(platform)
