"""`sovra eval` end to end against a scripted OpenAI-compatible API on loopback (the runner's own
logic: retries, timeouts, exit codes, files, history, metrics); the real engine is in
tests/test_eval_end_to_end.py."""

import asyncio
import json
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from threading import Thread
from typing import Any

import jsonschema
import pytest
from aiohttp import web

from sovra.cli import main
from sovra.evals import export
from sovra.evals.runner import RunOptions, run_suite
from sovra.evals.suite import ProviderSpec, load_suite

SUITE = """
description: capitals
prompts: ["Capital of {{country}}?"]
providers: [{id: "openai:chat:scripted", config: {temperature: 0}}]
tests:
  - description: france
    vars: {country: France}
    assert: [{type: icontains, value: paris, metric: accuracy}]
  - description: italy
    vars: {country: Italy}
    assert: [{type: icontains, value: rome, metric: accuracy}]
  - description: flaky
    vars: {country: Flakyland}
    assert: [{type: contains, value: ok}]
"""
# promptfoo's OutputFile (results version 3), the fields its viewer reads (from promptfoo's types).
OUTPUT_SCHEMA = {
    "type": "object",
    "required": ["evalId", "results", "config"],
    "properties": {
        "evalId": {"type": "string"},
        "config": {"type": "object"},
        "results": {
            "type": "object",
            "required": ["version", "timestamp", "prompts", "results", "stats"],
            "properties": {
                "version": {"const": 3},
                "prompts": {"type": "array", "items": {"type": "object", "required": ["raw", "label"]}},
                "stats": {"type": "object", "required": ["successes", "failures", "errors", "tokenUsage"]},
                "results": {"type": "array", "items": {
                    "type": "object",
                    "required": ["promptIdx", "testIdx", "testCase", "provider", "prompt", "vars", "success",
                                 "score", "latencyMs", "namedScores", "failureReason"],
                    "properties": {
                        "provider": {"type": "object", "required": ["id"]},
                        "failureReason": {"enum": [0, 1, 2]},
                        "success": {"type": "boolean"},
                        "gradingResult": {"type": "object", "required": ["pass", "score", "reason", "componentResults"]},
                    },
                }},
            },
        },
    },
}  # fmt: skip


class Scripted:
    """Answers like a model that knows two capitals; the first two calls for Flakyland get a 503."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.flaky = 2
        self.capitals = {"France": "Paris"}  # Italy: it answers "ok", and fails
        self.pushed: list[bytes] = []

    async def chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.calls.append(body)
        question = body["messages"][-1]["content"]
        if body["model"] == "down":  # a grader that never answers
            return web.json_response({"error": {"message": "down"}}, status=503)
        if "Flakyland" in question and self.flaky:
            self.flaky -= 1
            return web.json_response({"error": {"message": "busy"}}, status=503)
        answer = next((c for country, c in self.capitals.items() if country in question), "ok")
        return web.json_response(
            {
                "model": body["model"],
                "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
                "choices": [{"message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
            }
        )

    async def push(self, request: web.Request) -> web.Response:
        self.pushed.append(await request.read())
        return web.Response(status=204)


@pytest.fixture
def api() -> Iterator[tuple[str, Scripted]]:
    """The scripted API in a thread of its own (the CLI runs its own event loop)."""
    scripted, loop, started = Scripted(), asyncio.new_event_loop(), threading.Event()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", scripted.chat)
    app.router.add_post("/api/v1/import/prometheus", scripted.push)
    runner = web.AppRunner(app, access_log=None)
    port: list[int] = []

    async def start() -> None:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port.append(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        started.set()

    thread = Thread(target=lambda: (loop.run_until_complete(start()), loop.run_forever()), daemon=True)
    thread.start()
    assert started.wait(10)
    yield f"http://127.0.0.1:{port[0]}", scripted
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def config(tmp_path: Path) -> Path:
    path = tmp_path / "sovra.yaml"
    path.write_text(f"home: {tmp_path}\ndatabase: {{url: 'sqlite:///{tmp_path / 'sovra.db'}'}}\n")
    return path


def run(tmp_path: Path, base: str, *extra: str) -> int:
    (tmp_path / "promptfooconfig.yaml").write_text(SUITE)
    return main(["eval", str(tmp_path / "promptfooconfig.yaml"), "-c", str(config(tmp_path)), "--base-url",
                 f"{base}/v1", "--api-key", "sk", "--no-progress", "-f", str(tmp_path / "none"), *extra])  # fmt: skip


def test_a_run_writes_promptfoos_results_file_junit_and_metrics(
    tmp_path: Path, api: tuple[str, Scripted]
) -> None:
    base, scripted = api
    code = run(tmp_path, base, "-o", str(tmp_path / "results.json"), "--junit", str(tmp_path / "junit.xml"),
               "--metrics-file", str(tmp_path / "textfile" / "eval.prom"), "--push", f"{base}/api/v1/import/prometheus")  # fmt: skip
    assert code == 100  # italy fails: promptfoo's exit code for failed tests
    results = json.loads((tmp_path / "results.json").read_text())
    jsonschema.validate(results, OUTPUT_SCHEMA)
    rows = {r["testCase"]["description"]: r for r in results["results"]["results"]}
    assert rows["france"]["success"] and rows["france"]["namedScores"] == {"accuracy": 1.0}
    assert (rows["italy"]["success"], rows["italy"]["failureReason"]) == (False, 1)
    assert rows["flaky"]["success"] and rows["flaky"]["metadata"]["attempts"] == 3  # two 503s retried
    assert results["results"]["stats"]["successes"] == 2 and results["results"]["stats"]["failures"] == 1
    suites = ET.parse(tmp_path / "junit.xml").getroot()
    assert suites[0].get("tests") == "3" and suites[0].get("failures") == "1"
    textfile = (tmp_path / "textfile" / "eval.prom").read_text()
    assert 'promptfoo_test_pass_rate{suite="capitals"} 0.6666666666666666' in textfile
    assert 'sovra_eval_score{metric="accuracy",model="openai:chat:scripted",suite="capitals"} 0.5' in textfile
    assert scripted.pushed and b"promptfoo_test_total" in scripted.pushed[0]


def test_the_pass_rate_option_decides_the_exit_code(tmp_path: Path, api: tuple[str, Scripted]) -> None:
    assert run(tmp_path, api[0], "--pass-rate", "60") == 0
    assert run(tmp_path, api[0], "--pass-rate", "70") == 100


def test_history_and_regressions_name_the_tests_that_flipped(tmp_path: Path, api: tuple[str, Scripted],
                                                             capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    base, scripted = api
    scripted.capitals["Italy"] = "Rome"
    assert run(tmp_path, base) == 0
    scripted.capitals["France"] = "Lyon"  # the model got worse
    scripted.flaky = 0
    assert run(tmp_path, base) == 100
    err = capsys.readouterr().err
    assert "REGRESSION: capitals pass rate 100.0% → 66.7%" in err
    assert "now failing: 0:france [Capital of {{country}}?] @ openai:chat:scripted" in err
    assert main(["eval", "history", "-c", str(config(tmp_path))]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and "66.7%" in lines[1] and "100.0%" in lines[2]


def test_transport_errors_are_retried_answers_never(tmp_path: Path, api: tuple[str, Scripted]) -> None:
    base, scripted = api
    scripted.flaky = 5  # more 503s than retries
    path = tmp_path / "promptfooconfig.yaml"
    path.write_text(SUITE)
    suite = load_suite(path, f"{base}/v1", "sk")
    outcomes = asyncio.run(run_suite(suite, RunOptions(concurrency=2, retries=1, progress=False)))
    flaky = next(o for o in outcomes if o.test.description == "flaky")
    assert flaky.error is not None and "503" in flaky.error and flaky.attempts == 2
    italy = next(o for o in outcomes if o.test.description == "italy")
    assert italy.attempts == 1 and italy.error is None and not italy.passed  # a wrong answer: no retry
    assert len([c for c in scripted.calls if "Italy" in c["messages"][-1]["content"]]) == 1


def test_a_grader_that_never_answers_makes_the_test_an_error_not_a_failure(
    tmp_path: Path, api: tuple[str, Scripted]
) -> None:
    base, _ = api
    path = tmp_path / "promptfooconfig.yaml"
    path.write_text(SUITE.replace("[{type: icontains, value: paris, metric: accuracy}]",
                                  "[{type: llm-rubric, value: names the capital}]"))  # fmt: skip
    suite = load_suite(path, f"{base}/v1", "sk")
    grader = ProviderSpec("openai:chat:down", "down", {"apiBaseUrl": f"{base}/v1", "apiKey": "sk"})
    outcomes = asyncio.run(run_suite(suite, RunOptions(retries=1, grader=grader, progress=False)))
    france = next(o for o in outcomes if o.test.description == "france")
    assert france.error is not None and "503" in france.error and not france.passed


def test_compare_runs_the_suite_against_each_model(
    tmp_path: Path, api: tuple[str, Scripted], capsys: pytest.CaptureFixture[str]
) -> None:
    base, scripted = api
    run(tmp_path, base, "--compare", "alpha,beta", "-o", str(tmp_path / "r.json"))
    side_by_side = capsys.readouterr().out.split("\n\n")[-1].splitlines()
    assert side_by_side[0].split()[:3] == ["model", "tests", "passed"]
    assert [line.split()[:4] for line in side_by_side[1:]] == [
        ["alpha", "3", "2", "66.7%"],
        ["beta", "3", "2", "66.7%"],
    ]
    results = json.loads((tmp_path / "r.json").read_text())["results"]["results"]
    assert sorted({r["provider"]["label"] for r in results}) == ["alpha", "beta"]
    assert {c["model"] for c in scripted.calls} == {"alpha", "beta"}


def test_a_bad_suite_exits_2_with_the_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "promptfooconfig.yaml").write_text(
        "prompts: [x]\nproviders: [openai:chat:m]\ntests: [{assert: [{type: nope}]}]\n"
    )
    assert main(["eval", str(tmp_path / "promptfooconfig.yaml"), "-c", str(config(tmp_path))]) == 2
    assert "tests.0.assert.0.type: 'nope' is not supported by sovra eval" in capsys.readouterr().err


def test_the_exposition_without_named_metrics() -> None:
    assert b'promptfoo_test_total{suite="empty"} 0.0' in export.exposition("empty", [], 0.0)
