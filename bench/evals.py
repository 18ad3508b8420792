"""`sovra eval`'s speed: a 100-test deterministic suite against the real engine (`sovra up`,
llama-server + SmolLM2), at concurrency 1 and 8, and the runner's own cost per test (wall time
not spent waiting for the model).

    python bench/evals.py [--tests 100] [--max-tokens 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

from sovra.evals.runner import RunOptions, run_suite
from sovra.evals.suite import load_suite
from sovra.inference.launcher import free_port

TOKEN = "sk-bench-evals-0000000000000000"


def suite_file(directory: Path, tests: int, max_tokens: int) -> Path:
    document = {
        "description": "bench",
        "prompts": ["Repeat this number and nothing else: {{n}}"],
        "providers": [{"id": "openai:chat:smollm2", "config": {"temperature": 0, "max_tokens": max_tokens}}],
        "defaultTest": {
            "assert": [
                {"type": "regex", "value": r"\S"},
                {"type": "word-count", "value": {"min": 1, "max": 50}},
                {"type": "not-is-json"},
                {"type": "latency", "threshold": 60000},
            ]
        },
        "tests": [
            {
                "description": f"number {n}",
                "vars": {"n": n},
                "assert": [{"type": "contains-any", "value": [str(n), "number"]}],
            }
            for n in range(tests)
        ],
    }
    path = directory / "promptfooconfig.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def start_platform(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    config = directory / "sovra.yaml"
    config.write_text(f"database: {{url: 'sqlite:///{directory / 'sovra.db'}'}}\n")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sovra",
            "--log-level",
            "warning",
            "up",
            "-c",
            str(config),
            "--port",
            str(port),
        ],
        env={**os.environ, "SOVRA_API_KEY": TOKEN},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    process.kill()
    raise RuntimeError("sovra up did not become healthy")


def measure(path: Path, base: str, concurrency: int) -> tuple[float, float, int]:
    suite = load_suite(path, f"{base}/v1", TOKEN)
    started = time.perf_counter()
    outcomes = asyncio.run(run_suite(suite, RunOptions(concurrency=concurrency, progress=False)))
    wall = time.perf_counter() - started
    waiting = sum(o.response.latency_ms for o in outcomes if o.response) / 1000
    errors = sum(1 for o in outcomes if o.error)
    return wall, waiting, errors


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tests", type=int, default=100)
    parser.add_argument("--max-tokens", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        path = suite_file(directory, args.tests, args.max_tokens)
        process, base = start_platform(directory)
        try:
            measure(path, base, 4)  # warm the engine's prompt cache and the connections
            rows = {c: measure(path, base, c) for c in (1, 8)}
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(30)
    print(
        f"{args.tests} deterministic tests (5 assertions each), SmolLM2 via sovra up, max_tokens {args.max_tokens}"
    )
    for concurrency, (wall, _waiting, errors) in rows.items():
        print(
            f"  concurrency {concurrency}: wall {wall:6.2f} s  ({args.tests / wall:5.1f} tests/s)  errors {errors}"
        )
    wall1, waiting1, _ = rows[1]
    print(f"  concurrency 8 vs 1: {rows[1][0] / rows[8][0]:.2f}x faster")
    overhead = (wall1 - waiting1) / args.tests * 1000
    print(
        f"  runner overhead per test at concurrency 1 (wall - time waiting for the model): {overhead:.2f} ms"
    )


if __name__ == "__main__":
    main()
