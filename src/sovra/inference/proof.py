"""Proving a llama-server binary on this machine: load a model and decode a few tokens for real.

`--version` executes no kernel, so it proves nothing about the instruction set a build uses: a build
for the wrong CPU dies (SIGILL) only when the first matrix kernel runs, in the warm-up decode. The
proof therefore starts the server on a real model, waits for /health (which follows the warm-up) and
asks for a short greedy completion.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from sovra.inference.exits import describe_exit, died_by_signal
from sovra.inference.launcher import die_with_parent, free_port

__all__ = ["Proof", "prove_llama_server"]

_PROMPT = "The capital of France is"
_TOKENS = 8


@dataclass(frozen=True)
class Proof:
    """The outcome of one proof run."""

    passed: bool
    seconds: float
    reason: str = ""  # why it failed, in words
    signal: signal.Signals | None = None  # set when the engine died by a signal
    output: str = ""  # the engine's last output lines, for a failure report
    tokens: int = 0  # tokens decoded

    @property
    def crashed(self) -> bool:
        """Died by a fault signal: a build for another instruction set may run where this one cannot."""
        return self.signal in (signal.SIGILL, signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE)


def prove_llama_server(binary: Path, model: Path, timeout: float = 180.0) -> Proof:
    """Run `binary` on `model` until it has decoded a few tokens, then stop it."""
    started = time.monotonic()
    port = free_port()
    secret = secrets.token_urlsafe(24)
    argv = [
        str(binary), "--model", str(model), "--host", "127.0.0.1", "--port", str(port),
        "--ctx-size", "512", "--parallel", "1", "--no-webui",
    ]  # fmt: skip
    with tempfile.TemporaryFile() as output:
        try:
            process = subprocess.Popen(
                argv,
                env={**os.environ, "LLAMA_API_KEY": secret},  # nobody else may use it meanwhile
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent(os.getpid()),
            )
        except OSError as exc:
            return Proof(False, 0.0, f"could not be started: {exc.strerror or exc}")
        try:
            tokens, problem = _decode(process, f"http://127.0.0.1:{port}", secret, timeout)
        finally:
            _stop(process)
        output.seek(0)
        tail = _tail(output.read())
    seconds = time.monotonic() - started
    if problem is None:
        return Proof(True, seconds, tokens=tokens)
    caught = died_by_signal(process.returncode) if problem == "exited" else None
    reason = describe_exit(process.returncode) if problem == "exited" else problem
    return Proof(False, seconds, reason, caught, tail)


def _decode(
    process: subprocess.Popen[bytes], base: str, secret: str, timeout: float
) -> tuple[int, str | None]:
    """(tokens decoded, None) once the engine answered; (0, what went wrong) otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return 0, "exited"
        if _get(f"{base}/health") == 200:
            break
        time.sleep(0.1)
    else:
        return 0, f"not healthy within {timeout:.0f} s"
    body = {"prompt": _PROMPT, "n_predict": _TOKENS, "temperature": 0, "cache_prompt": False}
    try:
        answer = _post(f"{base}/completion", body, secret, max(1.0, deadline - time.monotonic()))
    except (OSError, ValueError) as exc:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)  # a crash mid-decode shows as a reset connection: find out why
        return 0, "exited" if process.returncode is not None else f"the decode failed: {exc}"
    tokens = answer.get("tokens_predicted")
    if not isinstance(tokens, int):
        tokens = 0
    if tokens < 1:
        return 0, f"the decode produced no tokens: {json.dumps(answer)[:200]}"
    return tokens, None


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return 0


def _post(url: str, body: dict[str, object], secret: str, timeout: float) -> dict[str, object]:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {secret}"}
    request = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        answer = json.loads(response.read())
    if not isinstance(answer, dict):
        raise ValueError("the completion is not a JSON object")
    return answer


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _tail(raw: bytes, lines: int = 20) -> str:
    return "\n".join(raw.decode(errors="replace").rstrip().splitlines()[-lines:])
