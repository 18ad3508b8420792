"""Prefix affinity vs no affinity, on two real llama-server replicas, in one run.

An IDE-autocomplete workload: FILES source files of ~PREFIX_LINES lines each; every request sends one
file's start plus a varying cursor line (as Continue and friends do), files visited in a shuffled
order. Each replica has 4 slots, fewer than the files, so where a request lands decides whether the
engine finds the file already in its KV cache. `sovra up` is started twice on the same catalog (two
replicas of SmolLM2), once with `gateway.balancing.affinity: true` and once with `false` (least
outstanding requests, which alternates replicas for sequential requests).

Prints, per mode: the share of prompt tokens served from the engines' cache (llama-server's
`prompt_tokens_details.cached_tokens`) and the median/p90 time to first token; then the ratios.

    python bench/affinity.py [--files 8] [--visits 5] [--seed 7]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).parents[1]
TOKEN = "sk-sovra-bench-" + "0" * 16
PREFIX_LINES = 60


@dataclass
class Result:
    cached: int
    prompt: int
    ttft_ms: float


def source_file(number: int) -> str:
    rng = random.Random(number)
    names = ["total", "count", "value", "items", "result", "index", "buffer", "offset"]
    lines = [f"# module_{number}.py: synthetic source for the benchmark", f"def handler_{number}(request):"]
    for line in range(PREFIX_LINES):
        a, b = rng.sample(names, 2)
        lines.append(f"    {a}_{line} = {b}_{max(line - 1, 0)} + {rng.randint(1, 999)}  # step {line}")
    return "\n".join(lines) + "\n"


def write_setup(directory: Path, affinity: bool) -> tuple[Path, Path]:
    catalog = (REPO / "catalog" / "smollm2.yaml").read_text()
    catalog = catalog.replace(
        "scaling: {minReplicas: 1, maxReplicas: 1}", "scaling: {minReplicas: 2, maxReplicas: 2}"
    )
    (directory / "catalog.yaml").write_text(catalog)
    config = directory / "sovra.yaml"
    config.write_text(
        f"database: {{url: 'sqlite:///{directory / 'sovra.db'}'}}\n"
        f"gateway: {{balancing: {{affinity: {str(affinity).lower()}}}}}\n"
    )
    return directory / "catalog.yaml", config


async def wait_ready(base: str) -> None:
    """Until every replica is ready: measuring with one would make both modes look alike."""
    async with httpx.AsyncClient() as client:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                health = (await client.get(f"{base}/health")).json()
                if all(s["ready"] == s["replicas"] for s in health["services"].values()):
                    return  # every replica, not just one per service
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError("sovra up did not become ready")


async def complete(client: httpx.AsyncClient, base: str, prompt: str) -> Result:
    body = {"model": "smollm2", "prompt": prompt, "max_tokens": 4, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}  # fmt: skip
    started = time.perf_counter()
    first = 0.0
    usage: dict[str, object] = {}
    async with client.stream("POST", f"{base}/v1/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            first = first or time.perf_counter()
            usage = json.loads(line[6:]).get("usage") or usage
    details = usage.get("prompt_tokens_details") or {}
    cached = int(details.get("cached_tokens", 0)) if isinstance(details, dict) else 0
    return Result(cached, int(str(usage.get("prompt_tokens", 0))), (first - started) * 1000)


async def run_mode(affinity: bool, files: int, visits: int, seed: int, port: int) -> list[Result]:
    with tempfile.TemporaryDirectory() as tmp:
        catalog, config = write_setup(Path(tmp), affinity)
        command = [sys.executable, "-m", "sovra", "--log-level", "warning", "up", "-f", str(catalog),
                   "-c", str(config), "--port", str(port)]  # fmt: skip
        env = {**os.environ, "SOVRA_API_KEY": TOKEN}
        process = await asyncio.create_subprocess_exec(
            *command, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        try:
            base = f"http://127.0.0.1:{port}"
            await wait_ready(base)
            order = [(f, v) for f in range(files) for v in range(visits)]
            random.Random(seed).shuffle(order)
            results = []
            async with httpx.AsyncClient(timeout=120, headers={"authorization": f"Bearer {TOKEN}"}) as client:
                for number, visit in order:
                    cursor = f"    cursor_{visit} = "  # the line being typed changes; the file start does not
                    results.append(await complete(client, base, source_file(number) + cursor))
            return results
        finally:
            process.send_signal(signal.SIGINT)
            await asyncio.wait_for(process.wait(), 30)


def summary(results: list[Result]) -> tuple[float, float, float]:
    reuse = sum(r.cached for r in results) / max(1, sum(r.prompt for r in results))
    ttfts = sorted(r.ttft_ms for r in results)
    return reuse, statistics.median(ttfts), ttfts[int(0.9 * (len(ttfts) - 1))]


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--visits", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args()
    rows = {}
    for affinity in (True, False):
        rows[affinity] = summary(await run_mode(affinity, args.files, args.visits, args.seed, args.port))
    print(f"\n{args.files} files x {args.visits} visits, 2 replicas x 4 slots, {PREFIX_LINES}-line prefixes")
    print(f"  {'':<26}{'affinity':>12}{'no affinity':>14}{'ratio':>10}")
    (a_reuse, a_p50, a_p90), (n_reuse, n_p50, n_p90) = rows[True], rows[False]
    reuse_ratio = a_reuse / max(n_reuse, 1e-9)
    print(f"  {'prompt tokens from cache':<26}{a_reuse:>11.1%}{n_reuse:>14.1%}{reuse_ratio:>9.2f}x")
    print(f"  {'TTFT p50 (ms)':<26}{a_p50:>12.1f}{n_p50:>14.1f}{a_p50 / n_p50:>9.2f}x")
    print(f"  {'TTFT p90 (ms)':<26}{a_p90:>12.1f}{n_p90:>14.1f}{a_p90 / n_p90:>9.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
