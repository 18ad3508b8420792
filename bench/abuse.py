"""Hostile and careless clients against `sovra up`, in one run, with the figures that matter.

Starts `sovra up` as a newcomer would (auth on, SQLite ledger, metrics) on the default catalog with
the real llama-server and SmolLM2, limits in a Redis of its own (so it can be stopped), and replays,
on loopback only, bounded in count and time:

  bad input (deep JSON, lone surrogates, UTF-16, NUL and 5 MB model names, images, bad tool_use),
  answers multiplied (top_logprobs, 20,000 messages), engine parameters against a budget, concurrent
  requests against a tokens-per-minute limit, abandoned streams with long prompts, a refusal flood,
  a metrics-label flood, idle and slowloris connections, 24 concurrent clients (health flaps), a
  Redis outage under load, a direct request to the engine, a killed engine.

Prints, per case, then in total: 5xx answers (target 0), hung requests (0), peak gateway RSS against
a stated bound, ledger rows expected vs found, tokens charged vs what the engine processed, overshoot
per limit against its bound, and the time to recover from each fault.

    python bench/abuse.py            (needs redis-server, as on this project's machines)
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).parents[1]
TOKEN = "sk-sovra-abuse-" + "0" * 16
RSS_BOUND_MB = 400
HUNG_AFTER_S = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Tally:
    statuses: Counter[int] = field(default_factory=Counter)
    hung: int = 0
    answered: Counter[str] = field(default_factory=Counter)  # key id → answers that must have a row

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)


class Platform:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.redis_port = free_port()
        self.port = free_port()
        self.redis: subprocess.Popen[bytes] | None = None
        self.config = work / "sovra.yaml"
        self.config.write_text(
            f"database: {{url: 'sqlite:///{work / 'sovra.db'}'}}\n"
            f"limits: {{redisUrl: 'redis://127.0.0.1:{self.redis_port}/0'}}\n"
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.base = f"http://127.0.0.1:{self.port}"
        self.peak_rss_mb = 0.0

    def start_redis(self) -> None:
        self.redis = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        time.sleep(0.3)

    def stop_redis(self) -> None:
        if self.redis is not None:
            self.redis.kill()
            self.redis.wait()
            self.redis = None

    def start(self) -> None:
        command = [sys.executable, "-m", "sovra", "up", "-f", str(REPO / "catalog"), "-c", str(self.config),
                   "--port", str(self.port)]  # fmt: skip
        log = (self.work / "sovra-up.log").open("w")
        self.process = subprocess.Popen(
            command, env={**os.environ, "SOVRA_API_KEY": TOKEN}, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/health", timeout=2).status_code == 200:
                    threading.Thread(target=self._watch_rss, daemon=True).start()
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("sovra up did not become healthy")

    def _watch_rss(self) -> None:
        while self.process is not None and self.process.poll() is None:
            try:
                for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        self.peak_rss_mb = max(self.peak_rss_mb, int(line.split()[1]) / 1024)
            except OSError:
                return
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(60)

    def cli(self, *args: str) -> str:
        result = subprocess.run([sys.executable, "-m", "sovra", *args, "-c", str(self.config)],
                                capture_output=True, text=True, check=True)  # fmt: skip
        return result.stdout

    def key(self, *args: str) -> tuple[str, str]:
        token = self.cli("keys", "create", *args).strip().splitlines()[-1]
        return token, token.split("-")[2]

    def engine(self) -> tuple[str, dict[str, str], int]:
        assert self.process is not None
        (pid,) = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        environ = Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
        (key,) = [v.removeprefix("LLAMA_API_KEY=") for v in environ if v.startswith("LLAMA_API_KEY=")]
        return (
            f"http://127.0.0.1:{argv[argv.index('--port') + 1]}",
            {"authorization": f"Bearer {key}"},
            int(pid),
        )

    def engine_tokens(self) -> tuple[float, float]:
        url, headers, _ = self.engine()
        text = httpx.get(f"{url}/metrics", headers=headers, timeout=10).text
        values = {
            line.split()[0]: float(line.split()[1]) for line in text.splitlines() if line and line[0] != "#"
        }
        return values.get("llamacpp:prompt_tokens_total", 0.0), values.get(
            "llamacpp:tokens_predicted_total", 0.0
        )

    def ledger(self, key_id: str) -> tuple[int, int, Counter[int]]:
        with sqlite3.connect(self.work / "sovra.db") as db:
            rows = db.execute(
                "SELECT input_tokens, output_tokens, status FROM usage WHERE key_id = ?", (key_id,)
            ).fetchall()
        return sum(r[0] for r in rows), sum(r[1] for r in rows), Counter(r[2] for r in rows)


async def send(
    http: httpx.AsyncClient, tally: Tally, key_id: str, method: str, path: str, **kwargs: Any
) -> httpx.Response | None:
    try:
        response = await http.request(method, path, timeout=HUNG_AFTER_S, **kwargs)
    except httpx.TimeoutException:
        tally.hung += 1
        return None
    tally.statuses[response.status_code] += 1
    if response.status_code == 200:
        tally.answered[key_id] += 1
    return response


async def many(count: int, workers: int, call: Callable[[int], Awaitable[object]]) -> None:
    """`count` calls, `workers` at a time (thousands of tasks queued on one httpx pool spin in it)."""
    numbers = iter(range(count))

    async def worker() -> None:
        for n in numbers:
            await call(n)

    await asyncio.gather(*(worker() for _ in range(workers)))


def chat(content: str, **extra: Any) -> dict[str, Any]:
    return {"model": "smollm2", "messages": [{"role": "user", "content": content}], **extra}


def report(case: str, text: str) -> None:
    print(f"  {case:<28} {text}", flush=True)


async def bad_input(p: Platform, tally: Tally, auth: dict[str, str]) -> None:
    bodies = {
        "nested 5000": '{"model": "smollm2", "messages": ' + "[" * 5000 + "]" * 5000 + "}",
        "surrogate content": '{"model": "smollm2", "messages": [{"role": "user", "content": "a\\ud800"}]}',
        "surrogate model": '{"model": "\\ud800", "messages": [{"role": "user", "content": "a"}]}',
        "NUL model": '{"model": "smollm2\\u0000", "messages": [{"role": "user", "content": "a"}]}',
        "5 MB model": json.dumps(chat("a") | {"model": "x" * 5_000_000}),
        "image, no projector": json.dumps(
            chat("a")
            | {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
                        ],
                    }
                ]
            }
        ),
    }
    async with httpx.AsyncClient(base_url=p.base, headers=auth) as http:
        statuses = {}
        for name, body in bodies.items():
            answer = await send(http, tally, "ops", "POST", "/v1/chat/completions", content=body)
            statuses[name] = answer.status_code if answer else "hung"
        utf16 = json.dumps(chat("hi")).encode("utf-16")
        answer = await send(http, tally, "ops", "POST", "/v1/chat/completions", content=utf16)
        statuses["UTF-16"] = answer.status_code if answer else "hung"
        tool = {
            "model": "smollm2",
            "max_tokens": 5,
            "messages": [
                {"role": "user", "content": "hi"},
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": 7, "name": ["x"], "input": "y"}],
                },
            ],
        }
        answer = await send(http, tally, "ops", "POST", "/v1/messages", json=tool)
        statuses["tool_use id 7"] = answer.status_code if answer else "hung"
        good = await send(
            http, tally, "ops", "POST", "/v1/chat/completions", json=chat("Say hi.", max_tokens=4)
        )
    report("bad input", f"{statuses}; a good request after them: {good.status_code if good else 'hung'}")


async def multiplied(p: Platform, tally: Tally, auth: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=p.base, headers=auth) as http:
        answer = await send(
            http,
            tally,
            "ops",
            "POST",
            "/v1/chat/completions",
            json=chat("hi", logprobs=True, top_logprobs=100_000, max_tokens=20),
        )
        many = chat("x") | {"messages": [{"role": "user", "content": "hello"}] * 20_000}
        started = time.monotonic()
        refused = await send(http, tally, "ops", "POST", "/v1/chat/completions", json=many)
        seconds = time.monotonic() - started
    report("answers multiplied", f"top_logprobs=100000 → {answer.status_code if answer else 'hung'}; "
           f"20,000 messages → {refused.status_code if refused else 'hung'} in {seconds:.2f} s")  # fmt: skip


async def against_budget(p: Platform, tally: Tally) -> dict[str, str]:
    token, key_id = p.key("--tenant", "budget", "--budget", "400", "--period", "day")
    await asyncio.sleep(2.5)  # gateways read new keys every 2 s
    before = p.engine_tokens()
    body = chat("Write a poem about the sea.", max_tokens=1, n_predict=60, ignore_eos=True)
    async with httpx.AsyncClient(base_url=p.base, headers={"authorization": f"Bearer {token}"}) as http:
        await asyncio.gather(
            *(send(http, tally, key_id, "POST", "/v1/chat/completions", json=body) for _ in range(12))
        )
    after = p.engine_tokens()
    engine = int(after[0] - before[0] + after[1] - before[1])
    return {"key": key_id, "limit": "400", "engine": str(engine)}


async def against_tpm(p: Platform, tally: Tally) -> dict[str, str]:
    token, key_id = p.key("--tenant", "tpm", "--tpm", "600")
    await asyncio.sleep(2.5)
    started = time.monotonic()
    body = chat("Name three colours.", max_tokens=40)
    async with httpx.AsyncClient(base_url=p.base, headers={"authorization": f"Bearer {token}"}) as http:
        await asyncio.gather(
            *(send(http, tally, key_id, "POST", "/v1/chat/completions", json=body) for _ in range(12))
        )
    refill = 600 * (time.monotonic() - started) / 60
    return {"key": key_id, "limit": f"{600 + refill:.0f}"}


async def abandoned_streams(p: Platform) -> tuple[str, int]:
    """4 streams with ~500-token prompts (prompt processing runs at ~115 tokens/s on two cores),
    cut after two events: (their key, prompt tokens the engine processed meanwhile)."""
    token, key_id = p.key("--tenant", "streams")
    await asyncio.sleep(2.5)
    before = p.engine_tokens()
    prompt = "The history of lighthouses, told at length. " * 45  # ~500 tokens
    body = chat(prompt, max_tokens=400, stream=True)

    async def cut_after_two() -> None:
        async with (
            httpx.AsyncClient(
                base_url=p.base, headers={"authorization": f"Bearer {token}"}, timeout=HUNG_AFTER_S
            ) as http,
            http.stream("POST", "/v1/chat/completions", json=body) as response,
        ):
            lines = response.aiter_lines()
            seen = 0
            async for line in lines:
                seen += line.startswith("data: ")
                if seen >= 2:
                    break

    await asyncio.gather(*(cut_after_two() for _ in range(4)))
    await asyncio.sleep(3)
    after = p.engine_tokens()
    return key_id, int(after[0] - before[0])


async def refusal_flood(p: Platform, tally: Tally) -> tuple[str, int]:
    token, key_id = p.key("--tenant", "flood", "--rpm", "1")
    await asyncio.sleep(2.5)
    async with httpx.AsyncClient(
        base_url=p.base, headers={"authorization": f"Bearer {token}"}, limits=httpx.Limits(max_connections=50)
    ) as http:
        body = chat("hi", max_tokens=1)
        await many(2000, 50, lambda n: send(http, tally, key_id, "POST", "/v1/chat/completions", json=body))
    return key_id, 2000


async def metrics_flood(p: Platform, tally: Tally) -> None:
    token, key_id = p.key("--tenant", "labels")
    await asyncio.sleep(2.5)
    async with httpx.AsyncClient(
        base_url=p.base, headers={"authorization": f"Bearer {token}"}, limits=httpx.Limits(max_connections=50)
    ) as http:
        bodies = [chat("hi") | {"model": "nope"}, {"model": "smollm2"}, {"model": "smollm2", "messages": []}]
        await many(1200, 50, lambda n: send(
            http, tally, key_id, "POST", "/v1/chat/completions", json=bodies[n % 3], headers={"x-tenant-id": f"t{n % 1000}"}
        ))  # fmt: skip
        started = time.monotonic()
        scrape = asyncio.create_task(http.get("/metrics", timeout=60))
        health = await http.get("/health", timeout=60)
        health_s = time.monotonic() - started
        text = (await scrape).text
    report("metrics-label flood", f"1,200 failing requests over 1,000 x-tenant-id values: /metrics {len(text) / 1e6:.2f} MB, "
           f"{text.count(chr(10))} lines; /health during a scrape {health_s * 1000:.0f} ms ({health.status_code})")  # fmt: skip


async def connections(p: Platform) -> None:
    # From 127.0.0.2 (loopback too): one address, over its per-client cap; the honest client below
    # comes from 127.0.0.1.
    attacker = ("127.0.0.2", 0)
    socks = []
    for _ in range(1200):  # over the default 1,024 per address
        socks.append(socket.create_connection(("127.0.0.1", p.port), source_address=attacker))
    slow = []
    for _ in range(100):
        s = socket.create_connection(("127.0.0.1", p.port), source_address=("127.0.0.3", 0))
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\n")
        slow.append(s)
    await asyncio.sleep(0.5)
    refused = 0
    for s in socks:
        s.setblocking(False)
        try:
            refused += s.recv(1) == b""
        except BlockingIOError:
            pass
        except OSError:
            refused += 1
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=p.base, headers={"authorization": f"Bearer {TOKEN}"}) as http:
        served = (await http.get("/v1/models", timeout=10)).status_code
    open_ = socks + slow
    deadline = time.monotonic() + 30
    while open_ and time.monotonic() < deadline:
        for s in list(open_):
            s.setblocking(False)
            try:
                if s.recv(1) == b"":
                    open_.remove(s)
            except BlockingIOError:
                if s in slow:
                    try:
                        s.sendall(b"X")
                    except OSError:
                        open_.remove(s)
            except OSError:
                open_.remove(s)
        await asyncio.sleep(0.2)
    for s in socks + slow:
        s.close()
    report("idle + slowloris", f"1,200 idle connections from one address ({refused} closed at once: over its cap) "
           f"and 100 slowloris: another client got {served}; all closed after {time.monotonic() - started:.1f} s "
           f"(still open: {len(open_)})")  # fmt: skip


async def load(p: Platform, tally: Tally, clients: int, rounds: int) -> Counter[int]:
    statuses: Counter[int] = Counter()
    async with httpx.AsyncClient(
        base_url=p.base,
        headers={"authorization": f"Bearer {TOKEN}"},
        limits=httpx.Limits(max_connections=clients),
    ) as http:

        async def client() -> None:
            for _ in range(rounds):
                answer = await send(
                    http,
                    tally,
                    "config:env",
                    "POST",
                    "/v1/chat/completions",
                    json=chat("Tell me about the sea.", max_tokens=32),
                )
                statuses[answer.status_code if answer else 0] += 1

        await asyncio.gather(*(client() for _ in range(clients)))
    return statuses


def engine_faults(p: Platform, tally: Tally, auth: dict[str, str]) -> None:
    url, engine_auth, pid = p.engine()
    direct = httpx.post(f"{url}/v1/chat/completions", json=chat("hi", max_tokens=1), timeout=30).status_code
    slots = httpx.get(f"{url}/slots", headers=engine_auth, timeout=10).status_code
    report("engine port, no key", f"{direct} (with the gateway's key: {slots})")
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    meanwhile: Counter[str] = Counter()  # the fault's own answers: 503 + Retry-After while it restarts
    while time.monotonic() - killed < 120:
        answer = httpx.post(
            f"{p.base}/v1/chat/completions", json=chat("hi", max_tokens=1), headers=auth, timeout=30
        )
        if answer.status_code == 200:
            tally.answered["config:env"] += 1
            tally.statuses[200] += 1
            break
        meanwhile[f"{answer.status_code} retry-after={answer.headers.get('retry-after')}"] += 1
        time.sleep(0.2)
    report(
        "engine SIGKILLed",
        f"answering again after {time.monotonic() - killed:.1f} s; meanwhile {dict(meanwhile)}",
    )


async def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="sovra-abuse-"))
    p = Platform(work)
    p.start_redis()
    p.start()
    tally = Tally()
    auth = {"authorization": f"Bearer {TOKEN}"}
    print(f"sovra up at {p.base} (log: {work / 'sovra-up.log'})\n")
    try:
        await bad_input(p, tally, auth)
        await multiplied(p, tally, auth)
        budget = await against_budget(p, tally)
        tpm = await against_tpm(p, tally)
        streams_key, engine_prompt = await abandoned_streams(p)
        flood_key, flood_sent = await refusal_flood(p, tally)
        await metrics_flood(p, tally)
        await connections(p)
        statuses = await load(p, tally, clients=24, rounds=4)
        report("24 concurrent clients", f"statuses {dict(statuses)} (503 = a replica wrongly taken out)")

        outage = asyncio.create_task(load(p, tally, clients=12, rounds=6))
        await asyncio.sleep(1)
        p.stop_redis()
        await asyncio.sleep(10)
        p.start_redis()
        during = await outage
        report("Redis down 10 s under load", f"statuses {dict(during)}")

        await asyncio.to_thread(engine_faults, p, tally, auth)
    finally:
        p.stop()
        p.stop_redis()

    print("\nledger and limits")
    charged_in, charged_out, _ = p.ledger(budget["key"])
    charged = charged_in + charged_out
    report(
        "budget 400 + n_predict",
        f"charged {charged}, engine evaluated {budget['engine']} (the rest from its prompt cache), "
        f"overshoot {max(0, charged - 400)} (bound 0)",
    )
    tpm_in, tpm_out, _ = p.ledger(tpm["key"])
    report(
        "tpm 600, 12 at once",
        f"used {tpm_in + tpm_out} against {tpm['limit']} (limit + refill meanwhile): overshoot {max(0, tpm_in + tpm_out - float(tpm['limit'])):.0f} (bound 0)",
    )
    streams_in, _, stream_rows = p.ledger(streams_key)
    report(
        "4 abandoned streams",
        f"prompt tokens charged {streams_in}, engine evaluated {engine_prompt}; rows {dict(stream_rows)}",
    )
    _, _, flood_rows = p.ledger(flood_key)
    report(
        "refusal flood (rpm=1)",
        f"{flood_sent} requests → {sum(flood_rows.values())} ledger rows ({dict(flood_rows)})",
    )
    expected = sum(tally.answered.values())
    with sqlite3.connect(work / "sovra.db") as db:
        found = db.execute("SELECT COUNT(*) FROM usage WHERE status = 200").fetchone()[0]
    print("\ntotals")
    report(
        "5xx answers", f"{tally.server_errors} (target 0); statuses {dict(sorted(tally.statuses.items()))}"
    )
    report("hung requests", f"{tally.hung} (target 0; > {HUNG_AFTER_S:.0f} s)")
    report("peak gateway RSS", f"{p.peak_rss_mb:.0f} MB (bound {RSS_BOUND_MB} MB)")
    report("ledger rows, answered", f"expected {expected}, found {found}")


if __name__ == "__main__":
    asyncio.run(main())
