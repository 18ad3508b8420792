"""One machine, operated: loading on demand, memory, and the scaler — side by side in one run.

Starts `sovra up` as a newcomer would (auth on, SQLite ledger, metrics) with SmolLM2 declared
`minReplicas: 0, maxReplicas: 2` (and `engines.cooldownSeconds` / `pollingIntervalSeconds` shortened),
then, against the real llama-server:

1. Cold vs warm: time to the first streamed token of a request that finds the model unloaded (weights
   in the page cache) against the same request to the loaded replica, `--rounds` times (unloaded in
   between with `POST /v1/status/smollm2/unload`). Medians.
2. The overhead Sovra adds to a cold request: the client's cold TTFT, minus the engine's own start
   (from "engine starting" to "engine ready" in the log), minus a warm TTFT.
3. Memory, predicted from the GGUF header against measured (resident, once ready) for contexts of
   1,024, 4,096 and 8,192 tokens a slot (4 slots).
4. The scaler's reaction: from sustained load that fills every slot (4 streams) to the decision to
   add a replica, and to that replica being ready.

    python bench/lifecycle.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
TOKEN = "sk-sovra-bench-" + "0" * 16
AUTH = {"authorization": f"Bearer {TOKEN}"}
PROMPT = [{"role": "user", "content": "Name three colours."}]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_sovra(directory: Path, port: int) -> subprocess.Popen[bytes]:
    declared = (REPO / "catalog" / "smollm2.yaml").read_text()
    catalog = directory / "catalog.yaml"
    catalog.write_text(declared.replace("minReplicas: 1, maxReplicas: 1", "minReplicas: 0, maxReplicas: 2"))
    config = directory / "sovra.yaml"
    config.write_text(
        f"database: {{url: 'sqlite:///{directory / 'sovra.db'}'}}\n"
        "engines: {cooldownSeconds: 5, pollingIntervalSeconds: 1}\n"
    )
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
    ]
    log = (directory / "sovra-up.log").open("wb")
    env = {**os.environ, "SOVRA_API_KEY": TOKEN}
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


def stop_sovra(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    process.wait(60)


async def ttft(client: httpx.AsyncClient, base: str) -> float:
    """Seconds from sending a streamed chat request to its first content token."""
    body = {"model": "smollm2", "messages": PROMPT, "max_tokens": 8, "stream": True}
    started = time.monotonic()
    async with client.stream("POST", f"{base}/v1/chat/completions", json=body, headers=AUTH) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if line.startswith("data: ") and '"content"' in line:
                return time.monotonic() - started
    raise RuntimeError("no token")


def log_times(log: Path, message: str, **fields: str) -> list[float]:
    """Epoch seconds of every log line with this message (and these fields)."""
    times = []
    for line in log.read_text(errors="replace").splitlines():
        if f'msg="{message}"' not in line and f"msg={message} " not in line:
            continue
        if all(f"{k}={v}" in line for k, v in fields.items()):
            stamp = re.search(r"ts=(\S+)", line)
            if stamp:
                times.append(datetime.fromisoformat(stamp.group(1).replace("Z", "+00:00")).timestamp())
    return times


async def cold_and_warm(base: str, log: Path, rounds: int) -> None:
    cold, warm, engine_start, overhead = [], [], [], []
    async with httpx.AsyncClient(timeout=300) as client:
        for _ in range(rounds):
            (await client.post(f"{base}/v1/status/smollm2/unload", headers=AUTH)).raise_for_status()
            sent = time.time()
            cold.append(await ttft(client, base))
            warm.append(await ttft(client, base))
            started = [t for t in log_times(log, "engine starting", replica="0") if t >= sent - 0.01]
            ready = [t for t in log_times(log, "engine ready", replica="0") if t >= sent - 0.01]
            engine_start.append(ready[0] - started[0])
            overhead.append(cold[-1] - engine_start[-1] - warm[-1])
    med = statistics.median
    print(f"cold vs warm ({rounds} rounds, medians; weights in the page cache)")
    print(f"  first token, model unloaded      {med(cold) * 1e3:8.1f} ms")
    print(
        f"  first token, replica loaded      {med(warm) * 1e3:8.1f} ms   cold/warm {med(cold) / med(warm):.1f}x"
    )
    print(f"  the engine's own start           {med(engine_start) * 1e3:8.1f} ms   (log: starting -> ready)")
    print(f"  Sovra's overhead on a cold start {med(overhead) * 1e3:8.1f} ms   (cold - engine start - warm)")


def memory() -> None:
    from sovra.config import load_platform_config
    from sovra.inference.drivers import llama_server_argv
    from sovra.inference.memory import resident_bytes
    from sovra.runtime.engines import build_store, engine_binary, predicted_memory, preload
    from sovra.spec import load_catalog

    config = load_platform_config(None)
    catalog = load_catalog(REPO / "catalog")
    weights = preload(catalog, build_store(config))["smollm2"]
    binary = engine_binary(config).path
    (declared,) = catalog.services
    print("\nmemory of one replica, 4 slots: predicted from the GGUF header vs resident once ready")
    for context in (1024, 4096, 8192):
        model = declared.spec.model.model_copy(update={"context_window": context})
        service = declared.model_copy(update={"spec": declared.spec.model_copy(update={"model": model})})
        argv = llama_server_argv(service, binary, weights, free_port()).argv
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port = argv[argv.index("--port") + 1]
        wait_healthy(f"http://127.0.0.1:{port}")
        measured = resident_bytes(process.pid) or 0
        process.terminate()
        process.wait(10)
        predicted = predicted_memory(service, weights)
        mib = 2**20
        print(f"  context {context:>5} x 4: predicted {predicted.total / mib:7.1f} MiB "
              f"(weights {predicted.weights / mib:.0f}, KV {predicted.kv_cache / mib:.0f}, "
              f"compute {predicted.compute / mib:.0f})   measured {measured / mib:7.1f} MiB   "
              f"predicted/measured {predicted.total / measured:.3f}")  # fmt: skip


async def scaler(base: str, log: Path) -> None:
    async with httpx.AsyncClient(timeout=300) as client:
        await ttft(client, base)  # loaded, one replica
        await asyncio.sleep(2)
        stop = asyncio.Event()

        async def keep_busy() -> None:
            body = {"model": "smollm2", "messages": PROMPT, "max_tokens": 64, "temperature": 1.0}
            while not stop.is_set():
                await client.post(f"{base}/v1/chat/completions", json=body, headers=AUTH)

        began = time.time()
        load = [asyncio.create_task(keep_busy()) for _ in range(4)]
        for _ in range(1200):  # up to 120 s
            if log_times(log, "engine ready", replica="1"):
                break
            await asyncio.sleep(0.1)
        stop.set()
        await asyncio.gather(*load)
    decided = [t for t in log_times(log, "scaling", to="2") if t >= began]
    ready = [t for t in log_times(log, "engine ready", replica="1") if t >= began]
    print("\nscaler: 4 streams on 4 slots (1.0 running per slot, threshold 0.7), polling every 1 s")
    if decided and ready:
        print(f"  load begins -> decision to add a replica   {(decided[0] - began) * 1e3:8.0f} ms")
        print(f"  load begins -> second replica ready        {(ready[0] - began) * 1e3:8.0f} ms")
    else:
        print("  no second replica within 120 s")


def wait_healthy(base: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{base} did not become healthy")


async def run(rounds: int) -> None:
    directory = Path(tempfile.mkdtemp(prefix="sovra-lifecycle-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = start_sovra(directory, port)
    try:
        await asyncio.to_thread(wait_healthy, base)
        await cold_and_warm(base, directory / "sovra-up.log", rounds)
        await scaler(base, directory / "sovra-up.log")
        async with httpx.AsyncClient() as client:
            status = (await client.get(f"{base}/v1/status", headers=AUTH)).json()["services"]["smollm2"]
        print(f"  last decision: {status.get('last_scaling')}")
    finally:
        stop_sovra(process)
    memory()
    print(
        f"\n(log: {directory / 'sovra-up.log'}; memory in /v1/status at the end: {json.dumps(status.get('memory'))})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    asyncio.run(run(parser.parse_args().rounds))


if __name__ == "__main__":
    main()
