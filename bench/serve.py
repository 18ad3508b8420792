"""Gateway overhead and warm start, side by side in one run.

1. Starts `sovra up` on the default catalog, finds the llama-server it supervises, and sends the same
   streamed chat request alternately straight to that llama-server and through the gateway:
   time to first token and generated tokens/s, one stream at a time and with all slots busy.
2. Times a fresh `sovra up` (weights and engine cached) from launch to its first answered request.

Prints medians and ratios (gateway / direct). Targets: throughput >= 0.97 of direct, TTFT within +2 ms,
second `sovra up` answers within 5 s.

    python bench/serve.py [--rounds 30] [--tokens 64] [--starts 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).parents[1]
TOKEN = "sk-sovra-bench-" + "0" * 16
PROMPT = [{"role": "user", "content": "Write a short story about a lighthouse keeper."}]


@dataclass
class Sample:
    ttft_ms: float
    tokens_per_s: float


def start_sovra(port: int) -> subprocess.Popen[bytes]:
    # Its own database, so benchmark requests never land in the user's usage ledger.
    config = Path(tempfile.mkdtemp(prefix="sovra-bench-")) / "sovra.yaml"
    config.write_text(f"database: {{url: 'sqlite:///{config.parent / 'sovra.db'}'}}\n")
    command = [sys.executable, "-m", "sovra", "--log-level", "warning", "up", "-f", str(REPO / "catalog"),
               "-c", str(config), "--port", str(port)]  # fmt: skip
    env = {**os.environ, "SOVRA_API_KEY": TOKEN}
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_sovra(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    process.wait(30)


def engine_address(process: subprocess.Popen[bytes]) -> tuple[int, str]:
    """The engine's port, and its per-start key (from its environment: only root or we may read it)."""
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    argv = Path(f"/proc/{children[0]}/cmdline").read_bytes().decode().split("\0")
    environ = Path(f"/proc/{children[0]}/environ").read_bytes().decode().split("\0")
    (key,) = [v.removeprefix("LLAMA_API_KEY=") for v in environ if v.startswith("LLAMA_API_KEY=")]
    return int(argv[argv.index("--port") + 1]), key


async def first_answer(client: httpx.AsyncClient, base: str, deadline: float) -> float:
    body = {"model": "smollm2", "messages": PROMPT, "max_tokens": 1}
    while time.monotonic() < deadline:
        try:
            response = await client.post(f"{base}/v1/chat/completions", json=body)
            if response.status_code == 200:
                return time.monotonic()
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.02)
    raise RuntimeError("no answer before the deadline")


async def one_stream(client: httpx.AsyncClient, url: str, tokens: int, dropped: list[str]) -> Sample:
    """One streamed request; llama-server at times drops a reused keep-alive connection before
    answering, so (like the gateway) retry once on a fresh one, and note it."""
    try:
        return await _stream(client, url, tokens)
    except httpx.RemoteProtocolError:
        dropped.append(url)
        return await _stream(client, url, tokens)


KEYS: dict[str, str] = {}  # base URL → its bearer token (the gateway's, the engine's own)


async def _stream(client: httpx.AsyncClient, url: str, tokens: int) -> Sample:
    body = {"model": "smollm2", "messages": PROMPT, "max_tokens": tokens, "temperature": 0,
            "ignore_eos": True, "stream": True}  # fmt: skip
    started = time.perf_counter()
    first = 0.0
    generated = 0
    key = next(token for base, token in KEYS.items() if url.startswith(base))
    async with client.stream("POST", url, json=body, headers={"authorization": f"Bearer {key}"}) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            choices = json.loads(line[6:]).get("choices") or [{}]
            if choices[0].get("delta", {}).get("content"):
                generated += 1
                first = first or time.perf_counter()
    ended = time.perf_counter()
    return Sample((first - started) * 1000, generated / (ended - started))


async def compare(direct: str, gateway: str, rounds: int, tokens: int, concurrency: int) -> None:
    headers = {"authorization": f"Bearer {TOKEN}"}
    samples: dict[str, list[Sample]] = {"direct": [], "gateway": []}
    dropped: list[str] = []
    async with httpx.AsyncClient(timeout=120, headers=headers) as client:
        for base in (direct, gateway):  # warm both paths
            await one_stream(client, f"{base}/v1/chat/completions", 8, dropped)
        for round_ in range(rounds):
            order = [("direct", direct), ("gateway", gateway)]
            for target, base in order if round_ % 2 == 0 else order[::-1]:
                batch = await asyncio.gather(
                    *(
                        one_stream(client, f"{base}/v1/chat/completions", tokens, dropped)
                        for _ in range(concurrency)
                    )
                )
                samples[target] += batch
    report(f"{concurrency} concurrent stream(s), {tokens} tokens each, {rounds} rounds", samples, concurrency)
    print(f"  connections dropped before an answer (retried): direct {sum(direct in u for u in dropped)}, "
          f"gateway {sum(gateway in u for u in dropped)}")  # fmt: skip


def report(title: str, samples: dict[str, list[Sample]], concurrency: int) -> None:
    def median(target: str, field: str) -> float:
        return float(statistics.median(getattr(s, field) for s in samples[target]))

    d_tps, g_tps = (
        median("direct", "tokens_per_s") * concurrency,
        median("gateway", "tokens_per_s") * concurrency,
    )
    d_ttft, g_ttft = median("direct", "ttft_ms"), median("gateway", "ttft_ms")
    print(f"\n{title}")
    print(f"  {'':<24}{'direct':>12}{'gateway':>12}{'ratio/delta':>14}")
    print(f"  {'tokens/s (median, sum)':<24}{d_tps:>12.1f}{g_tps:>12.1f}{g_tps / d_tps:>13.3f}x")
    print(f"  {'TTFT ms (median)':<24}{d_ttft:>12.2f}{g_ttft:>12.2f}{g_ttft - d_ttft:>+13.2f}ms")


async def warm_starts(starts: int, port: int) -> None:
    times = []
    async with httpx.AsyncClient(timeout=30, headers={"authorization": f"Bearer {TOKEN}"}) as client:
        for _ in range(starts):
            launched = time.monotonic()
            process = start_sovra(port)
            try:
                answered = await first_answer(client, f"http://127.0.0.1:{port}", launched + 60)
                times.append(answered - launched)
            finally:
                stop_sovra(process)
    print(f"\nwarm `sovra up` → first answer: median {statistics.median(times):.2f} s "
          f"(runs: {', '.join(f'{t:.2f}' for t in times)}; target ≤ 5 s)")  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()

    process = start_sovra(args.port)
    try:
        gateway = f"http://127.0.0.1:{args.port}"
        async with httpx.AsyncClient(headers={"authorization": f"Bearer {TOKEN}"}) as client:
            await first_answer(client, gateway, time.monotonic() + 120)
        port, key = engine_address(process)
        direct = f"http://127.0.0.1:{port}"
        KEYS.update({direct: key, gateway: TOKEN})
        print(f"gateway {gateway} → llama-server {direct} (same engine for both paths)")
        await compare(direct, gateway, args.rounds, args.tokens, concurrency=1)
        await compare(direct, gateway, args.rounds, args.tokens, concurrency=4)
    finally:
        stop_sovra(process)
    await warm_starts(args.starts, args.port)


if __name__ == "__main__":
    asyncio.run(main())
