"""Every assertion type, passing and failing; `not-`; scoring, weights, thresholds, assert-set."""

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from sovra.evals.assertions import combine, grade
from sovra.evals.grades import Context, Grade
from sovra.evals.suite import Assertion

TOOLS = [{"type": "function", "function": {"name": "get_weather",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]  # fmt: skip


def check(kind: str, value: Any, output: str, threshold: float | None = None, **context: Any) -> Grade:
    negate = kind.startswith("not-")
    assertion = Assertion(kind.removeprefix("not-"), value, negate, threshold)
    return asyncio.run(grade(assertion, Context(output=output, vars={}, prompt="p", **context)))


@pytest.mark.parametrize(
    ("kind", "value", "good", "bad"),
    [
        ("equals", "Paris", "Paris", "paris"),
        ("equals", {"a": 1}, '{"a": 1}', '{"a": 2}'),
        ("contains", "Par", "Paris", "Lyon"),
        ("icontains", "PAR", "paris", "lyon"),
        ("contains-any", ["x", "Par"], "Paris", "Lyon"),
        ("contains-all", "Pa,is", "Paris", "Pa"),
        ("icontains-any", ["PAR", "zz"], "paris", "lyon"),
        ("icontains-all", ["PA", "IS"], "paris", "pa"),
        ("starts-with", "The", "The end", "An end"),
        ("regex", r"\d{3}-\d{4}", "call 555-1234", "call me"),
        ("is-json", None, '{"ok": true}', "{ok}"),
        ("is-json", {"type": "object", "required": ["name"]}, '{"name": "x"}', '{"nom": "x"}'),
        ("contains-json", {"type": "array"}, 'Here: [1, 2] done', 'Here: {"a": 1}'),
        ("word-count", 3, "one two three", "one two"),
        ("word-count", {"min": 2, "max": 4}, "one two three", "one"),
        ("levenshtein", "kitten", "sitting", "a completely different sentence"),
    ],
)  # fmt: skip
def test_deterministic_assertions_pass_and_fail(kind: str, value: Any, good: str, bad: str) -> None:
    assert check(kind, value, good).passed, check(kind, value, good).reason
    assert not check(kind, value, bad).passed


def test_not_inverts_pass_and_score() -> None:
    result = check("not-contains", "Lyon", "Paris")
    assert (result.passed, result.score, result.assertion) == (True, 1.0, "not-contains")
    assert not check("not-contains", "Par", "Paris").passed


def test_provider_facts_latency_cost_finish_reason_and_tool_calls() -> None:
    assert check("latency", None, "x", threshold=500, latency_ms=120).passed
    assert not check("latency", None, "x", threshold=100, latency_ms=120).passed
    assert (
        check("cost", None, "x", threshold=0.01, cost=0.001).passed
        and not check("cost", None, "x", threshold=0.0001, cost=0.001).passed
    )
    assert (
        check("finish-reason", "stop", "x", finish_reason="stop").passed
        and not check("finish-reason", "length", "x", finish_reason="stop").passed
    )
    call = {
        "id": "c",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Lyon"}'},
    }
    assert check("is-valid-openai-tools-call", TOOLS, "", tool_calls=[call]).passed
    wrong = {"function": {"name": "get_weather", "arguments": '{"town": "Lyon"}'}}
    assert "city" in check("is-valid-openai-tools-call", TOOLS, "", tool_calls=[wrong]).reason
    assert not check("is-valid-openai-tools-call", TOOLS, "no tools here").passed


def test_python_assertions_expression_block_file_and_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert check("python", "output.upper() == 'PARIS'", "paris").passed
    assert not check("python", "len(output) > 10", "paris").passed
    block = "words = output.split()\nreturn {'pass': len(words) == 2, 'score': 0.5, 'reason': 'two words'}"
    result = check("python", block, "hello there")
    assert (result.passed, result.score, result.reason) == (True, 0.5, "two words")
    (tmp_path / "grader.py").write_text(
        "def get_assert(output, context):\n    return 0.9 if 'x' in output else 0.1\n"
    )
    assert check("python", "file://grader.py", "xyz", suite_dir=tmp_path).passed
    assert not check("python", "file://grader.py", "abc", suite_dir=tmp_path).passed
    assert "failed" in check("python", "1/0", "x").reason
    monkeypatch.setattr("sovra.evals.assertions.PYTHON_TIMEOUT_SECONDS", 0.5)
    assert "timed out" in check("python", "__import__('time').sleep(5)", "x").reason


def test_an_assertion_transform_applies_before_it() -> None:
    assertion = Assertion("equals", "PARIS", transform="output.toUpperCase()")
    assert asyncio.run(grade(assertion, Context(output="paris", vars={}, prompt=""))).passed


def test_values_are_templated_with_the_test_vars() -> None:
    assertion = Assertion("contains", "{{ city }}")
    assert asyncio.run(
        grade(assertion, Context(output="I love Lyon", vars={"city": "Lyon"}, prompt=""))
    ).passed


def test_scores_are_weighted_and_thresholds_decide() -> None:
    good, bad = Grade(True, 1.0, "", weight=3.0), Grade(False, 0.0, "nope", assertion="contains", weight=1.0)
    plain = combine([good, bad], None)
    assert (plain.passed, plain.score) == (False, 0.75) and "contains: nope" in plain.reason
    assert combine([good, bad], 0.7).passed and not combine([good, bad], 0.8).passed
    informational = Grade(True, 0.0, "", weight=0.0)
    assert combine([good, informational], None).score == 1.0  # weight 0 does not count in the score


def test_assert_set_combines_its_children() -> None:
    children = (Assertion("contains", "a"), Assertion("contains", "zzz"))
    at_half = Assertion("assert-set", children=children, threshold=0.5)
    all_needed = Assertion("assert-set", children=children)
    context = Context(output="abc", vars={}, prompt="")
    assert asyncio.run(grade(at_half, context)).passed
    result = asyncio.run(grade(all_needed, context))
    assert not result.passed and len(result.children) == 2


def test_model_graded_assertions_parse_the_graders_answer() -> None:
    answers = iter([
        json.dumps({"reason": "friendly", "pass": True, "score": 0.9}), "I cannot grade this",
        "(D)", "B", "Y", "N", "8", "nothing",
    ])  # fmt: skip

    async def complete(prompt: str) -> str:
        return next(answers)

    async def embed(texts: list[str]) -> list[list[float]]:
        return [[1.0, 0.0] if "Paris" in t else [0.0, 1.0] for t in texts]

    def run(kind: str, value: Any, output: str = "Paris") -> Grade:
        context = Context(
            output=output, vars={"question": "capital?"}, prompt="p", complete=complete, embed=embed
        )
        return asyncio.run(grade(Assertion(kind, value), context))

    assert run("llm-rubric", "is friendly").passed
    assert "did not answer with a verdict" in run("llm-rubric", "is friendly").reason
    assert not run("factuality", "Paris").passed and run("factuality", "Paris").passed
    assert (
        run("model-graded-closedqa", "mentions a city").passed
        and not run("model-graded-closedqa", "x").passed
    )
    assert run("g-eval", "correct").score == 0.8 and "no score" in run("g-eval", "correct").reason
    assert run("similar", "Paris is the capital").passed and not run("similar", "Lyon").passed
