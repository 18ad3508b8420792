"""The test harness itself: a test run that is killed leaves no `sovra up` (nor engine) behind."""

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO

DRIVER = """
import sys, time
from pathlib import Path
from tests.conftest import start_platform
tmp, catalog = Path(sys.argv[1]), Path(sys.argv[2])
config = "providers:\\n  - {name: acme, baseUrl: 'http://127.0.0.1:9/v1', models: {fast: acme-2}}\\n"
platform = start_platform(tmp, catalog=catalog, config_text=config)
print(platform.process.pid, flush=True)
time.sleep(600)
"""


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_a_killed_test_run_leaves_no_sovra_up_behind(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog"
    catalog.mkdir()  # a gateway in front of a provider alone: no engine, no weights needed
    with subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(tmp_path), str(catalog)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    ) as run:
        assert run.stdout is not None
        sovra_up = int(run.stdout.readline())
        assert running(sovra_up)
        run.kill()  # what a CI time-out, or a second Ctrl-C, does to pytest
    deadline = time.monotonic() + 30
    while running(sovra_up) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running(sovra_up), "sovra up outlived the test run that started it"
    assert "sovra: stopping" in (tmp_path / "sovra-up.log").read_text()
