"""The gateway's own cost, per core: direct vs through Sovra vs through LiteLLM proxy, in one run.

The upstream is nginx answering instantly with a fixed chat completion, or a fixed 20-chunk SSE stream
(not Python, so it is never the bottleneck). The load generator is wrk. nginx and wrk are pinned to
core 0 and the gateway under test to core 1 (`taskset`), so the figures are per gateway core. Sovra
runs as a newcomer's `sovra up` in gateway-only mode (the upstream declared as an external
provider): a bearer key, the usage ledger on SQLite, metrics, the default log level (a line per
request); LiteLLM proxy runs with one worker and no database. With `--before`, the gateway of an
earlier checkout runs beside this one and each scenario is run on each in turn, `--rounds` times
(the median is reported), so a noisy machine's drift does not land on one side of the comparison.

Then: 1,000 concurrent streaming connections through Sovra (all must succeed), and a memory soak
(the gateway's resident memory sampled under steady load; flat means within ±10 %).

Needs nginx, wrk and a LiteLLM virtualenv: `make bench-gateway` installs them and runs this.

    python bench/gateway.py [--seconds 5] [--rounds 3] [--soak 600] [--before CHECKOUT/src]
                            [--litellm .bench/litellm/bin/litellm]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from sovra.inference.launcher import free_port

TOKEN = "sk-sovra-bench-" + "0" * 16
LITELLM_KEY = "sk-litellm-bench-0000"
PLAIN = {
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1700000000, "model": "fixed",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello from nginx."}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
}  # fmt: skip
BODY = {"model": "fixed", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 32}


def sse_body() -> str:
    events = []
    for n in range(20):
        delta = {"role": "assistant", "content": f"t{n} "} if n == 0 else {"content": f"t{n} "}
        events.append({"id": "c", "object": "chat.completion.chunk", "created": 1700000000, "model": "fixed",
                       "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})  # fmt: skip
    events.append({"id": "c", "object": "chat.completion.chunk", "created": 1700000000, "model": "fixed",
                   "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 20, "total_tokens": 32}})  # fmt: skip
    return "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"


def nginx_config(directory: Path, port: int) -> Path:
    # `return` rather than static files: nginx answers POST to a static file with 405.
    config = directory / "nginx.conf"
    config.write_text(f"""
daemon off; worker_processes 1; pid {directory}/nginx.pid; error_log {directory}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off; keepalive_requests 1000000; keepalive_timeout 75s;
  client_body_temp_path {directory}; proxy_temp_path {directory}; fastcgi_temp_path {directory};
  uwsgi_temp_path {directory}; scgi_temp_path {directory};
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location = /plain/v1/chat/completions {{ default_type application/json; return 200 '{json.dumps(PLAIN)}'; }}
    location = /stream/v1/chat/completions {{ default_type text/event-stream; return 200 '{sse_body()}'; }}
  }}
}}
""")
    return config


@dataclass
class Run:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int


def wrk(url: str, headers: dict[str, str], body: dict[str, object], connections: int, seconds: int) -> Run:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write('wrk.method = "POST"\n')
        script.write(f"wrk.body = {json.dumps(json.dumps(body))}\n")
        for name, value in {"content-type": "application/json", **headers}.items():
            script.write(f'wrk.headers["{name}"] = "{value}"\n')
    command = ["taskset", "-c", "0", "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
               "--timeout", "10s", "-s", script.name, url]  # fmt: skip
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    Path(script.name).unlink()
    return Run(_number(r"Requests/sec:\s+([\d.]+)", output), _ms(r"50%\s+([\d.]+\w+)", output),
               _ms(r"99%\s+([\d.]+\w+)", output), _errors(output))  # fmt: skip


def _number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    return float(match.group(1)) if match else 0.0


def _ms(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    if not match:
        return float("nan")
    value, unit = re.match(r"([\d.]+)(\w+)", match.group(1)).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def _errors(text: str) -> int:
    non_2xx = int(_number(r"Non-2xx or 3xx responses:\s+(\d+)", text))
    socket_errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", text))
    return non_2xx + socket_errors


def wait_http(url: str, headers: dict[str, str], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.post(url, json=BODY, headers=headers, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} never answered")


def start(
    command: list[str], env: dict[str, str] | None = None, log: Path | None = None
) -> subprocess.Popen[bytes]:
    out = log.open("wb") if log else subprocess.DEVNULL
    return subprocess.Popen(["taskset", "-c", "1", *command], env=env, stdout=out, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]


def start_sovra(
    directory: Path, upstream: str, src: Path | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """`sovra up` from this checkout, or from another one's `src` (an earlier commit, to compare)."""
    port = free_port()
    directory.mkdir(exist_ok=True)
    (directory / "catalog").mkdir(exist_ok=True)
    config = directory / "sovra.yaml"
    config.write_text(
        f"database: {{url: 'sqlite:///{directory / 'sovra.db'}'}}\n"
        "providers:\n"
        f"  - {{name: nginx, baseUrl: '{upstream}/plain/v1', models: {{fixed: fixed}}}}\n"
        f"  - {{name: nginx-sse, baseUrl: '{upstream}/stream/v1', models: {{fixed-stream: fixed}}}}\n"
    )
    # A newcomer's `sovra up`: default log level (a line per request), auth, SQLite ledger, metrics.
    command = [sys.executable, "-m", "sovra", "up", "-f", str(directory / "catalog"), "-c", str(config),
               "--port", str(port)]  # fmt: skip
    env = {**os.environ, "SOVRA_API_KEY": TOKEN, "SOVRA_HOME": str(directory / "home")}
    if src is not None:
        env["PYTHONPATH"] = str(src)
    process = start(command, env, directory / "sovra.log")
    return process, f"http://127.0.0.1:{port}"


def start_litellm(directory: Path, upstream: str, binary: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    config = directory / "litellm.yaml"
    config.write_text(f"""model_list:
  - model_name: fixed
    litellm_params: {{model: openai/fixed, api_base: "{upstream}/plain/v1", api_key: unused}}
  - model_name: fixed-stream
    litellm_params: {{model: openai/fixed, api_base: "{upstream}/stream/v1", api_key: unused}}
general_settings: {{master_key: {LITELLM_KEY}}}
litellm_settings: {{telemetry: false}}
""")
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    command = [binary, "--config", str(config), "--port", str(port), "--num_workers", "1"]
    return start(command, env, directory / "litellm.log"), f"http://127.0.0.1:{port}"


def measure(
    targets: dict[str, tuple[str, dict[str, str]]],
    seconds: int,
    rounds: int,
    results: dict[tuple[str, str, int], Run],
) -> None:
    """Every scenario on every target in turn, `rounds` times; the median round is kept. Taking the
    targets in turn within a scenario keeps a noisy machine's drift out of their comparison."""
    for kind, model in (("plain", "fixed"), ("stream", "fixed-stream")):
        body = {**BODY, "model": model, "stream": kind == "stream"}
        for connections in (1, 64):
            runs: dict[str, list[Run]] = {name: [] for name in targets}
            for _ in range(rounds):
                for name, (url, headers) in targets.items():
                    target = url if name != "direct" else url.replace("/v1/chat", f"/{kind}/v1/chat")
                    runs[name].append(wrk(target, headers, body, connections, seconds))
            for name, measured in runs.items():
                results[(name, kind, connections)] = run = _median(measured)
                print(f"  {name:<8} {kind:<7} c={connections:<3} {run.requests_per_s:>9.0f} req/s  "
                      f"p50 {run.p50_ms:7.2f} ms  p99 {run.p99_ms:7.2f} ms  errors {run.errors}"
                      f"  (median of {len(measured)})", flush=True)  # fmt: skip


def _median(runs: list[Run]) -> Run:
    """The run with the median throughput; errors are those of all runs."""
    middle = sorted(runs, key=lambda run: run.requests_per_s)[len(runs) // 2]
    return Run(middle.requests_per_s, middle.p50_ms, middle.p99_ms, sum(run.errors for run in runs))


def report(results: dict[tuple[str, str, int], Run]) -> None:
    names = [n for n in ("direct", "before", "sovra", "litellm") if any(k[0] == n for k in results)]
    print("\nside by side (per gateway core)")
    print(f"  {'':<20}" + "".join(f"{n:>10}" for n in names) + f"{'sovra/litellm':>15}{'sovra/before':>14}")
    for kind in ("plain", "stream"):
        for connections in (1, 64):
            runs = {n: results.get((n, kind, connections)) for n in names}
            rps = "".join(f"{r.requests_per_s:>10.0f}" if r else f"{'-':>10}" for r in runs.values())
            ratios = [_ratio(runs.get("sovra"), runs.get(other)) for other in ("litellm", "before")]
            print(
                f"  {kind + ' c=' + str(connections) + ' req/s':<20}{rps}{ratios[0]:>14.1f}x{ratios[1]:>13.2f}x"
            )
        for connections in (1, 64):
            direct = results.get(("direct", kind, connections))
            for name in ("before", "sovra"):
                run = results.get((name, kind, connections))
                if direct and run:
                    print(f"  {kind + ' c=' + str(connections) + ' added':<20} {name:<7} p50 +{run.p50_ms - direct.p50_ms:.2f} ms, "
                          f"p99 +{run.p99_ms - direct.p99_ms:.2f} ms over direct")  # fmt: skip


def _ratio(run: Run | None, other: Run | None) -> float:
    return run.requests_per_s / other.requests_per_s if run and other and other.requests_per_s else 0.0


def soak(url: str, pid: int, seconds: int) -> None:
    headers = {"authorization": f"Bearer {TOKEN}"}
    body = {**BODY, "model": "fixed-stream", "stream": True}
    samples = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        wrk(url, headers, body, 32, min(10, max(1, int(end - time.monotonic()))))
        samples.append(rss_mib(pid))
    settled, last, peak = samples[min(2, len(samples) - 1)], samples[-1], max(samples)
    change = (last - settled) / settled
    verdict = "flat" if abs(change) <= 0.10 else "NOT flat"
    print(f"\nsoak {seconds} s, 32 streams: RSS after warm-up {settled:.1f} MiB, end {last:.1f} MiB, "
          f"peak {peak:.1f} MiB ({change:+.1%}: {verdict})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=5, help="per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per scenario and gateway (median)")
    parser.add_argument("--soak", type=int, default=600, help="memory soak duration (0 to skip)")
    parser.add_argument("--litellm", default=".bench/litellm/bin/litellm")
    parser.add_argument(
        "--before", type=Path, help="another checkout's src/ (an earlier commit): measured in the same run"
    )
    args = parser.parse_args()
    for tool in ("nginx", "wrk", "taskset"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            sys.exit(f"{tool} is missing: `make bench-gateway` installs it")
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))  # children inherit it
    with tempfile.TemporaryDirectory(prefix="sovra-bench-gateway-") as tmp:
        directory = Path(tmp)
        upstream_port = free_port()
        nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
        nginx = subprocess.Popen(
            ["taskset", "-c", "0", nginx_bin, "-c", str(nginx_config(directory, upstream_port))]
        )
        upstream = f"http://127.0.0.1:{upstream_port}"
        results: dict[tuple[str, str, int], Run] = {}
        gateways: list[subprocess.Popen[bytes]] = []
        try:
            wait_http(f"{upstream}/plain/v1/chat/completions", {})
            print(f"wrk and nginx on core 0, the gateways on core 1; {args.seconds} s per run")
            sovra_headers = {"authorization": f"Bearer {TOKEN}"}
            targets: dict[str, tuple[str, dict[str, str]]] = {
                "direct": (f"{upstream}/v1/chat/completions", {})
            }
            # The gateway of an earlier commit beside this one: both run, taken in turn per scenario.
            for name, src in (("before", args.before), ("sovra", None)):
                if name == "before" and src is None:
                    continue
                process, url = start_sovra(directory / name, upstream, src)
                gateways.append(process)
                wait_http(f"{url}/v1/chat/completions", sovra_headers)
                targets[name] = (f"{url}/v1/chat/completions", sovra_headers)
            measure(targets, args.seconds, args.rounds, results)
            sovra_url, sovra = targets["sovra"][0], gateways[-1]
            crowd = wrk(sovra_url, sovra_headers, {**BODY, "model": "fixed-stream", "stream": True},
                        1000, args.seconds)  # fmt: skip
            print(f"\n1,000 concurrent streams through Sovra: {crowd.requests_per_s:.0f} streams/s, "
                  f"p99 {crowd.p99_ms:.1f} ms, errors {crowd.errors}")  # fmt: skip
            if args.soak:
                soak(sovra_url, sovra.pid, args.soak)
            for process in gateways:
                stop(process)
            gateways.clear()
            if Path(args.litellm).exists():
                litellm, litellm_url = start_litellm(directory, upstream, args.litellm)
                litellm_headers = {"authorization": f"Bearer {LITELLM_KEY}"}
                try:
                    wait_http(f"{litellm_url}/v1/chat/completions", litellm_headers, seconds=240)
                    target = {"litellm": (f"{litellm_url}/v1/chat/completions", litellm_headers)}
                    measure(target, args.seconds, 1, results)
                finally:
                    stop(litellm)
            else:
                print(f"\n(LiteLLM not found at {args.litellm}: `make bench-gateway` installs it)")
        finally:
            for process in gateways:
                stop(process)
            nginx.send_signal(signal.SIGQUIT)
            nginx.wait(10)
        report(results)


if __name__ == "__main__":
    main()
