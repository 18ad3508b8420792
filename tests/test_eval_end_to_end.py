"""`sovra eval` with the real engine: the shipped smoke suite against `sovra up` (llama-server +
SmolLM2), model-graded assertions graded by SmolLM2 itself. What is checked is the plumbing —
every test ran, the results file, the history, the metrics — not SmolLM2's wisdom."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TOKEN, RunningPlatform

pytestmark = pytest.mark.engine
SUITE = Path(__file__).parent.parent / "evals" / "smoke" / "promptfooconfig.yaml"


def test_the_smoke_suite_runs_against_the_real_gateway(platform: RunningPlatform, tmp_path: Path) -> None:
    results, metrics = tmp_path / "results.json", tmp_path / "eval.prom"
    done = subprocess.run(
        [sys.executable, "-m", "sovra", "eval", str(SUITE), "-c", str(platform.config), "--base-url",
         f"{platform.base_url}/v1", "--api-key", TOKEN, "--no-progress", "-j", "2", "-o", str(results),
         "--metrics-file", str(metrics), "--pass-rate", "0"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(results.read_text())["results"]["results"]
    assert len(rows) == 6  # 3 tests, 2 prompts each (one text, one chat-style JSON)
    assert all(r["failureReason"] != 2 for r in rows), [r["error"] for r in rows]  # no transport errors
    assert all(r["response"]["output"] for r in rows)  # SmolLM2 answered every one
    graded = [c for r in rows if r["testCase"]["description"].startswith("a greeting")
              for c in r["gradingResult"]["componentResults"] if c["assertion"]["type"] == "assert-set"]  # fmt: skip
    assert len(graded) == 2 and all(len(g["componentResults"]) == 2 for g in graded)  # the rubric was asked
    assert 'promptfoo_test_total{suite="smoke"} 6.0' in metrics.read_text()
    history = subprocess.run([sys.executable, "-m", "sovra", "eval", "history", "-c", str(platform.config)],
                             capture_output=True, text=True, check=True)  # fmt: skip
    assert "smoke" in history.stdout and "smollm2@0.1.2" in history.stdout
