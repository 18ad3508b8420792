"""The ledger guarantee with the real engine: a completed answer is in the ledger even when the
gateway is SIGKILLed the moment the client has it."""

import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import TOKEN, start_platform, stop_platform

pytestmark = pytest.mark.engine
HEADERS = {"authorization": f"Bearer {TOKEN}"}
CHAT = {"model": "smollm2", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8}


def ledger_rows(tmp_path: Path) -> list[tuple[object, ...]]:
    """What the ledger holds, after `sovra usage` replayed the killed gateway's journal."""
    subprocess.run(
        [sys.executable, "-m", "sovra", "usage", "-c", str(tmp_path / "sovra.yaml")],
        check=True,
        capture_output=True,
    )
    with sqlite3.connect(tmp_path / "sovra.db") as db:
        return db.execute(
            "SELECT status, input_tokens, output_tokens, endpoint, tenant FROM usage"
        ).fetchall()


def test_a_completed_answer_survives_sigkill(llama_server: Path, smollm2: Path, tmp_path: Path) -> None:
    platform = start_platform(tmp_path)
    try:
        answer = httpx.post(
            f"{platform.base_url}/v1/chat/completions", json=CHAT, headers=HEADERS, timeout=60
        )
        platform.process.send_signal(signal.SIGKILL)
        platform.process.wait(10)
    finally:
        stop_platform(platform)
    usage = answer.json()["usage"]
    assert ledger_rows(tmp_path) == [
        (200, usage["prompt_tokens"], usage["completion_tokens"], "/v1/chat/completions", "env")
    ]


def test_a_completed_stream_survives_sigkill(llama_server: Path, smollm2: Path, tmp_path: Path) -> None:
    platform = start_platform(tmp_path)
    events = []
    try:
        body = {**CHAT, "stream": True}
        url = f"{platform.base_url}/v1/chat/completions"
        with httpx.Client() as http, http.stream("POST", url, json=body, headers=HEADERS) as response:
            for line in response.iter_lines():
                if line:
                    events.append(line)
                if line == "data: [DONE]":
                    platform.process.send_signal(signal.SIGKILL)
                    break
        platform.process.wait(10)
    finally:
        stop_platform(platform)
    assert not any('"usage"' in e for e in events)  # Sovra asked for usage; the client did not get it
    content_events = [e for e in events if '"content":"' in e]
    ((status, prompt_tokens, completion_tokens, endpoint, _),) = ledger_rows(tmp_path)
    assert (status, endpoint) == (200, "/v1/chat/completions")
    # A multi-token character (an emoji) arrives as one event: events ≤ tokens ≤ max_tokens.
    assert prompt_tokens > 5 and 1 <= len(content_events) <= completion_tokens <= 8
