"""`sovra up` with an engine binary that dies by SIGILL: diagnosed in the log and /health, not
restarted forever, retried on SIGHUP; the gateway keeps running."""

import signal
import time
from pathlib import Path

import httpx

from tests.conftest import start_platform, stop_platform


def test_a_crash_loop_is_diagnosed_and_stopped(smollm2: Path, tmp_path: Path) -> None:
    engine = tmp_path / "llama-server"
    engine.write_text("#!/bin/sh\necho 'llama threadpool init'\nkill -ILL $$\n")
    engine.chmod(0o755)
    platform = start_platform(tmp_path, config_text=f"engines: {{llamaServer: {engine}}}\n", ready=False)
    try:
        deadline = time.monotonic() + 90  # five failed starts, with back-off: about 15 s
        while time.monotonic() < deadline:
            health = httpx.get(f"{platform.base_url}/health", timeout=5)
            if "failed" in health.json()["services"]["smollm2"]:
                break
            time.sleep(0.5)
        assert health.status_code == 503
        service = health.json()["services"]["smollm2"]
        assert service["failed"] == 1 and service["ready"] == 0
        assert service["reason"].startswith("SIGILL: the engine binary uses CPU instructions this machine")

        log = platform.log.read_text()
        assert log.count('msg="engine exited"') == 5
        assert 'reason="SIGILL: the engine binary uses CPU instructions' in log
        assert "engine keeps failing to start; not restarting it" in log
        assert "#0 FAILED: SIGILL" in log  # the startup summary
        time.sleep(3)
        assert platform.log.read_text().count('msg="engine exited"') == 5  # no sixth start

        platform.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        # Retried: the engine starts (and, still broken, exits) again. Wait for that exit, not only
        # for the "retried" line, which comes first.
        while platform.log.read_text().count('msg="engine exited"') <= 5 and time.monotonic() < deadline:
            time.sleep(0.2)
        log = platform.log.read_text()
        assert 'msg="engine retried"' in log and log.count('msg="engine exited"') > 5
    finally:
        stop_platform(platform)
    assert platform.process.returncode == 0
