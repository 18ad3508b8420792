"""The real OpenAI Codex CLI through Sovra's Responses API: `codex exec` end to end, offline.

1. Against a scripted OpenAI-compatible upstream (declared as a provider, so Sovra translates the
   Responses API to chat completions for it): Codex sends its whole prompt (~30 KB, its tools
   included); the upstream asks for one `exec_command` call; Codex runs it in the work directory
   and sends the result back; the upstream answers with what the command printed. Passes when
   Codex exits 0, the command's file exists, and the final message carries its output.
2. Against SmolLM2 on llama-server (the default catalog; `make setup` first): Codex's prompt does not
   fit a 4,096-token window, and Codex must say so (`context_length_exceeded`), not hang or crash.

Sovra runs as a newcomer starts it (auth on, SQLite ledger, metrics). Codex is installed from npm
into `.bench/codex` (npm needed); its plugin and app features are switched off in its config so it
never reaches outside hosts. A scripted upstream is named as such: it tests Sovra's translation,
not a model.

    python bench/codex.py [--codex-version 0.171.0] [--skip-smollm2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from sovra.inference.launcher import free_port

ROOT = Path(__file__).parents[1]
TOKEN = "sk-sovra-bench-codex-0000000000"
PROOF = "sovra-codex-proof"
FEATURES_OFF = (
    "plugins", "remote_plugin", "apps", "plugin_sharing", "skill_mcp_dependency_install", "tool_suggest",
    "image_generation", "computer_use", "browser_use", "browser_use_external", "in_app_updates",
    "enable_request_compression", "daemon_auto_start",
)  # fmt: skip


def install_codex(version: str) -> Path:
    directory = ROOT / ".bench" / "codex"
    binary = directory / "node_modules" / ".bin" / "codex"
    if (
        binary.exists()
        and version in subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    ):
        return binary
    if not shutil.which("npm"):
        sys.exit("npm is needed to install the Codex CLI (Debian: apt-get install npm)")
    directory.mkdir(parents=True, exist_ok=True)
    print(f"installing @openai/codex@{version} from npm into {directory} …", flush=True)
    subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(directory),
                    f"@openai/codex@{version}"], check=True)  # fmt: skip
    return binary


def scripted_upstream(port: int, log: Path) -> None:
    """An OpenAI-compatible chat endpoint: a tool call first, then the tool's output as the answer."""
    from aiohttp import web

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        delta: dict[str, object]
        tools = [tool["function"]["name"] for tool in body.get("tools", [])]
        results = [m for m in body["messages"] if m["role"] == "tool"]
        with log.open("a") as out:
            out.write(
                json.dumps({"bytes": len(await request.read()), "tools": tools, "tool_results": len(results)})
                + "\n"
            )
        if results:
            delta = {
                "role": "assistant",
                "content": f"The command printed: {results[-1]['content'].strip()[-200:]}",
            }
        else:
            command = f"echo {PROOF} > proof.txt && cat proof.txt"
            call = {"index": 0, "id": "call_bench_1", "type": "function",
                    "function": {"name": "exec_command", "arguments": json.dumps({"cmd": command})}}  # fmt: skip
            delta = {"role": "assistant", "tool_calls": [call]}
        events = [{"choices": [{"index": 0, "delta": delta}]},
                  {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls" if not results else "stop"}]},
                  {"choices": [], "usage": {"prompt_tokens": len(json.dumps(body)) // 4, "completion_tokens": 12}}]  # fmt: skip
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for event in events:
            await response.write(f"data: {json.dumps(event)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        return response

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/chat/completions", chat)
    web.run_app(app, host="127.0.0.1", port=port, print=None)


def start_sovra(
    directory: Path, config: str, catalog: Path, home: Path | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """`sovra up` on `catalog`; `home`: its SOVRA_HOME (default: the user's, with its engine)."""
    port = free_port()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sovra.yaml").write_text(
        f"database: {{url: 'sqlite:///{directory / 'sovra.db'}'}}\n{config}"
    )
    command = [sys.executable, "-m", "sovra", "up", "-f", str(catalog), "-c", str(directory / "sovra.yaml"),
               "--port", str(port)]  # fmt: skip
    env = {**os.environ, "SOVRA_API_KEY": TOKEN, **({"SOVRA_HOME": str(home)} if home else {})}
    log = (directory / "sovra.log").open("wb")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            break
        time.sleep(0.5)
    stop(process)
    sys.exit(f"sovra up did not become healthy; see {directory / 'sovra.log'}")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()


def codex_exec(
    binary: Path, home: Path, work: Path, url: str, model: str, prompt: str
) -> subprocess.CompletedProcess[str]:
    home.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    features = "\n".join(f"{name} = false" for name in FEATURES_OFF)
    (home / "config.toml").write_text(f"""model = "{model}"
model_provider = "sovra"
approval_policy = "never"
sandbox_mode = "workspace-write"

[model_providers.sovra]
name = "Sovra"
base_url = "{url}/v1"
env_key = "SOVRA_API_KEY"
wire_api = "responses"

[features]
{features}
""")
    env = {**os.environ, "CODEX_HOME": str(home), "SOVRA_API_KEY": TOKEN}
    command = [str(binary), "exec", "--skip-git-repo-check", prompt]
    return subprocess.run(
        command, cwd=work, env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL
    )


def gateway_rows(directory: Path) -> list[str]:
    return [line for line in (directory / "sovra.log").read_text().splitlines() if "msg=request " in line]


def against_scripted(binary: Path, tmp: Path) -> bool:
    port, log = free_port(), tmp / "upstream.jsonl"
    upstream = subprocess.Popen([sys.executable, __file__, "--upstream", str(port), str(log)])
    provider = f"providers:\n  - {{name: scripted, baseUrl: 'http://127.0.0.1:{port}/v1', models: {{coder: coder}}}}\n"
    (tmp / "catalog").mkdir(parents=True)
    sovra, url = start_sovra(tmp, provider, tmp / "catalog", tmp / "home")
    try:
        started = time.monotonic()
        result = codex_exec(
            binary,
            tmp / "codex-home",
            tmp / "work",
            url,
            "coder",
            "Write the proof file and tell me what it says.",
        )
        seconds = time.monotonic() - started
    finally:
        stop(sovra)
        upstream.terminate()
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    proof = (tmp / "work" / "proof.txt").read_text().strip() if (tmp / "work" / "proof.txt").exists() else ""
    rows = gateway_rows(tmp)
    print("\n1. codex exec → Sovra /v1/responses → scripted chat upstream")
    print(f"   exit {result.returncode} in {seconds:.1f} s; {len(rows)} requests through Sovra "
          f"({', '.join(sorted({r.split('path=')[1].split()[0] for r in rows}))}), statuses "
          f"{sorted({r.split('status=')[1].split()[0] for r in rows})}")  # fmt: skip
    if calls:
        print(f"   upstream saw {len(calls)} chat requests, the first {calls[0]['bytes']:,} bytes with "
              f"{len(calls[0]['tools'])} function tools ({', '.join(calls[0]['tools'])}); tool round trips: "
              f"{sum(1 for c in calls if c['tool_results'])}")  # fmt: skip
    print(f"   the command Codex ran wrote: {proof!r}")
    ok = result.returncode == 0 and proof == PROOF and PROOF in result.stdout
    print(
        f"   {'PASS' if ok else 'FAIL'}: final message: {result.stdout.strip().splitlines()[-1:] if result.stdout.strip() else result.stderr[-500:]}"
    )
    return ok


def against_smollm2(binary: Path, tmp: Path) -> bool:
    sovra, url = start_sovra(tmp, "", ROOT / "catalog")
    try:
        result = codex_exec(binary, tmp / "codex-home", tmp / "work", url, "smollm2", "Say hello.")
    finally:
        stop(sovra)
    said = result.stdout + result.stderr
    rows = gateway_rows(tmp)
    statuses = sorted({r.split("status=")[1].split()[0] for r in rows})
    ok = result.returncode != 0 and "context window" in said
    print("\n2. codex exec → Sovra → SmolLM2 (4,096-token window)")
    print(f"   exit {result.returncode}; {len(rows)} requests through Sovra, statuses {statuses}")
    line = next((line for line in said.splitlines() if "context" in line), said.strip()[-300:])
    print(f"   {'PASS' if ok else 'FAIL'}: Codex says: {line.strip()}")
    return ok


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--upstream":
        scripted_upstream(int(sys.argv[2]), Path(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--codex-version", default="0.171.0")
    parser.add_argument("--skip-smollm2", action="store_true", help="only the scripted upstream")
    args = parser.parse_args()
    binary = install_codex(args.codex_version)
    with tempfile.TemporaryDirectory(prefix="sovra-bench-codex-") as tmp:
        ok = against_scripted(binary, Path(tmp) / "scripted")
        if not args.skip_smollm2:
            ok = against_smollm2(binary, Path(tmp) / "smollm2") and ok
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
