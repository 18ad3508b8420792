"""The catalog reloaded while `sovra up` runs (the real engine, the OpenAI SDK): a bad edit is refused
and changes nothing; a changed declaration is replaced with no failed request under load; a new
declaration is served and a removed one stops."""

import threading
import time
from pathlib import Path

import openai
import pytest

from tests.conftest import CATALOG, TOKEN, RunningPlatform, start_platform, stop_platform

pytestmark = pytest.mark.engine


def until(condition: object, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"not within {within:g} s: {what}")


def logged(platform: RunningPlatform, text: str) -> bool:
    return text in platform.log.read_text(errors="replace")


def ask(client: openai.OpenAI, model: str = "smollm2") -> str:
    answer = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=4
    )
    return answer.choices[0].finish_reason or ""


def test_the_catalog_reloads_without_a_restart(llama_server: Path, smollm2: Path, tmp_path: Path) -> None:
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    declared = (CATALOG / "smollm2.yaml").read_text()
    (catalog / "smollm2.yaml").write_text(declared)
    platform = start_platform(tmp_path, catalog=catalog)
    client = openai.OpenAI(base_url=f"{platform.base_url}/v1", api_key=TOKEN, max_retries=0, timeout=120)
    try:
        (first,) = platform.engine_pids()
        (catalog / "smollm2.yaml").write_text(declared.replace("maxNumSeqs: 4", "maxNumSeqs: 0"))
        until(lambda: logged(platform, "catalog reload refused"), 20, "the bad edit refused")
        assert "maxNumSeqs" in platform.log.read_text()  # file: field: reason
        assert ask(client) and platform.engine_pids() == [first]  # untouched

        answers: list[str] = []
        failures: list[Exception] = []
        stop = threading.Event()

        def keep_asking() -> None:
            while not stop.is_set():
                try:
                    answers.append(ask(client))
                except Exception as error:
                    failures.append(error)

        load = [threading.Thread(target=keep_asking) for _ in range(3)]
        for thread in load:
            thread.start()
        time.sleep(1)
        (catalog / "smollm2.yaml").write_text(declared.replace("maxNumSeqs: 4", "maxNumSeqs: 2"))
        until(lambda: logged(platform, "replica replaced"), 60, "the changed declaration applied")
        time.sleep(1)
        stop.set()
        for thread in load:
            thread.join()
        assert failures == [] and len(answers) > 3  # held while it restarted, never failed
        (second,) = platform.engine_pids()
        assert second != first

        (catalog / "other.yaml").write_text(declared.replace("name: smollm2", "name: smollm2-b"))
        until(lambda: "smollm2-b" in [m.id for m in client.models.list()], 60, "the new service listed")
        assert ask(client, "smollm2-b") and len(platform.engine_pids()) == 2
        (catalog / "other.yaml").unlink()
        until(lambda: len(platform.engine_pids()) == 1, 60, "the removed service stopped")
        assert "smollm2-b" not in [m.id for m in client.models.list()]
        assert ask(client)
    finally:
        stop_platform(platform)
