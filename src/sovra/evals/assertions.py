"""promptfoo's assertions, and how their results combine into a test's score.

Each check takes the output (after transforms) and what the provider said about it, and returns a
`Grade`: pass or fail, a score in [0, 1], and a reason. `not-` inverts pass and score. A test's
score is the weighted average of its assertions'; it passes when every assertion passes, or, with
a `threshold`, when the score reaches it. `assert-set` is the same rule one level down.
Model-graded checks live in graders.py and ask a model through the gateway.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import jsonschema  # type: ignore[import-untyped]

from sovra.evals.graders import model_graded
from sovra.evals.grades import Context, Grade
from sovra.evals.template import render
from sovra.evals.transforms import apply_transform

__all__ = ["KNOWN", "combine", "grade"]

PYTHON_TIMEOUT_SECONDS = 10.0


Check = Callable[[Any, Context, float | None], Grade]


def _grade(passed: bool, reason: str, score: float | None = None) -> Grade:
    return Grade(passed, (1.0 if passed else 0.0) if score is None else score, reason)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _items(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    return [part.strip() for part in str(value).split(",")]


def _equals(value: Any, ctx: Context, _: float | None) -> Grade:
    if isinstance(value, dict | list):
        try:
            same = json.loads(ctx.output) == value
        except ValueError:
            same = False
    else:
        same = ctx.output == str(value)
    return _grade(same, "output equals the expected value" if same else f"expected {_text(value)[:80]!r}")


def _contains(case: bool, mode: str) -> Check:
    def check(value: Any, ctx: Context, _: float | None) -> Grade:
        output = ctx.output if case else ctx.output.lower()
        needles = [n if case else n.lower() for n in (_items(value) if mode != "one" else [str(value)])]
        found = [n for n in needles if n in output]
        passed = bool(found) if mode in ("one", "any") else len(found) == len(needles)
        missing = [n for n in needles if n not in found]
        return _grade(passed, f"found {found}" if passed else f"missing {missing}")

    return check


def _starts_with(value: Any, ctx: Context, _: float | None) -> Grade:
    passed = ctx.output.startswith(str(value))
    return _grade(
        passed, "output starts with the prefix" if passed else f"does not start with {str(value)!r}"
    )


def _regex(value: Any, ctx: Context, _: float | None) -> Grade:
    try:
        found = re.search(str(value), ctx.output)
    except re.error as exc:
        return _grade(False, f"invalid regular expression: {exc}")
    return _grade(found is not None, "matches" if found else f"no match for /{value}/")


def _schema(value: Any, ctx: Context) -> dict[str, Any] | None:
    if isinstance(value, str) and value.startswith("file://"):
        return json.loads((ctx.suite_dir / value.removeprefix("file://")).read_text())  # type: ignore[no-any-return]
    return value if isinstance(value, dict) else None


def _json_grade(document: Any, value: Any, ctx: Context) -> Grade:
    schema = _schema(value, ctx)
    if schema is None:
        return _grade(True, "valid JSON")
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(document), key=str)
    return _grade(not errors, "matches the schema" if not errors else f"schema: {errors[0].message}")


def _is_json(value: Any, ctx: Context, _: float | None) -> Grade:
    try:
        document = json.loads(ctx.output)
    except ValueError as exc:
        return _grade(False, f"not JSON: {exc}")
    return _json_grade(document, value, ctx)


def _json_candidates(text: str) -> list[Any]:
    """Every JSON object or array embedded in `text` (as models write them, inside prose or fences)."""
    decoder, found, position = json.JSONDecoder(), [], 0
    while (match := re.compile(r"[\[{]").search(text, position)) is not None:
        try:
            document, end = decoder.raw_decode(text, match.start())
        except ValueError:
            position = match.start() + 1
            continue
        found.append(document)
        position = end
    return found


def _contains_json(value: Any, ctx: Context, _: float | None) -> Grade:
    candidates = _json_candidates(ctx.output)
    if not candidates:
        return _grade(False, "no JSON found in the output")
    grades = [_json_grade(c, value, ctx) for c in candidates]
    return next((g for g in grades if g.passed), grades[0])


def _tool_calls(ctx: Context) -> list[dict[str, Any]]:
    if ctx.tool_calls:
        return ctx.tool_calls
    try:
        parsed = json.loads(ctx.output)
    except ValueError:
        return []
    return parsed if isinstance(parsed, list) else []


def _openai_tools_call(value: Any, ctx: Context, _: float | None) -> Grade:
    calls = _tool_calls(ctx)
    if not calls:
        return _grade(False, "no tool calls in the output")
    tools = {
        t["function"]["name"]: t["function"] for t in (value or []) if isinstance(t, dict) and "function" in t
    }
    for call in calls:
        function = call.get("function") or {}
        try:
            arguments = json.loads(function.get("arguments") or "{}")
        except ValueError:
            return _grade(False, f"{function.get('name')}: arguments are not JSON")
        if tools:
            if function.get("name") not in tools:
                return _grade(False, f"{function.get('name')!r} is not one of the tools offered")
            errors = list(
                jsonschema.Draft202012Validator(tools[function["name"]].get("parameters") or {}).iter_errors(
                    arguments
                )
            )
            if errors:
                return _grade(False, f"{function['name']}: {errors[0].message}")
    return _grade(True, f"{len(calls)} valid tool call(s)")


def _finish_reason(value: Any, ctx: Context, _: float | None) -> Grade:
    passed = ctx.finish_reason == str(value)
    return _grade(passed, f"finish reason {ctx.finish_reason!r}")


def levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def _levenshtein(value: Any, ctx: Context, threshold: float | None) -> Grade:
    distance, limit = levenshtein(ctx.output, str(value)), 5 if threshold is None else threshold
    return _grade(distance <= limit, f"edit distance {distance} (at most {limit:g})")


def _word_count(value: Any, ctx: Context, _: float | None) -> Grade:
    count = len(ctx.output.split())
    if isinstance(value, dict):
        low, high = value.get("min", 0), value.get("max", float("inf"))
        return _grade(low <= count <= high, f"{count} words (between {low} and {high})")
    return _grade(count == int(value), f"{count} words (expected {value})")


def _latency(value: Any, ctx: Context, threshold: float | None) -> Grade:
    limit = threshold if threshold is not None else float(value)
    return _grade(ctx.latency_ms <= limit, f"{ctx.latency_ms:.0f} ms (at most {limit:g})")


def _cost(value: Any, ctx: Context, threshold: float | None) -> Grade:
    limit = threshold if threshold is not None else float(value)
    return _grade(ctx.cost <= limit, f"cost {ctx.cost:.6f} (at most {limit:g})")


_PYTHON_RUNNER = r"""
import json, sys, importlib.util
request = json.load(sys.stdin)
output, context = request["output"], request["context"]
if request["file"]:
    spec = importlib.util.spec_from_file_location("assertion", request["file"])
    module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)
    result = getattr(module, request["function"] or "get_assert")(output, context)
else:
    code = request["code"]
    if "\n" in code.strip() or code.lstrip().startswith("return"):
        scope = {}
        body = "\n".join("    " + line for line in code.splitlines())
        exec("def _assert(output, context):\n" + body, scope)
        result = scope["_assert"](output, context)
    else:
        result = eval(code, {"output": output, "context": context, "json": json})
print(json.dumps(result))
"""


def _python(value: Any, ctx: Context, threshold: float | None) -> Grade:
    """An expression or a file (`file://check.py[:function]`), run in a child Python with a timeout:
    a suite's code cannot hang or crash the runner."""
    code, file, function = str(value), None, None
    if code.startswith("file://"):
        file, _, function = code.removeprefix("file://").partition(":")
        file = str((ctx.suite_dir / file).resolve())
    request = {
        "output": ctx.output,
        "context": {"vars": ctx.vars, "prompt": ctx.prompt},
        "code": code,
        "file": file,
        "function": function or None,
    }
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PYTHON_RUNNER],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=PYTHON_TIMEOUT_SECONDS,
        )
    except subprocess.TimeoutExpired:
        return _grade(False, f"python assertion timed out after {PYTHON_TIMEOUT_SECONDS:g} s")
    if done.returncode != 0:
        return _grade(False, f"python assertion failed: {done.stderr.strip().splitlines()[-1:]}")
    result = json.loads(done.stdout)
    if isinstance(result, dict):
        return Grade(
            bool(result.get("pass")),
            float(result.get("score", 1.0 if result.get("pass") else 0.0)),
            str(result.get("reason", "")),
        )
    if isinstance(result, bool):
        return _grade(result, f"returned {result}")
    score = float(result)
    return _grade(score >= (threshold if threshold is not None else 0.5), f"score {score:.3f}", score)


_CHECKS: dict[str, Check] = {
    "equals": _equals,
    "contains": _contains(True, "one"),
    "icontains": _contains(False, "one"),
    "contains-any": _contains(True, "any"),
    "contains-all": _contains(True, "all"),
    "icontains-any": _contains(False, "any"),
    "icontains-all": _contains(False, "all"),
    "starts-with": _starts_with,
    "regex": _regex,
    "is-json": _is_json,
    "contains-json": _contains_json,
    "is-valid-openai-tools-call": _openai_tools_call,
    "finish-reason": _finish_reason,
    "levenshtein": _levenshtein,
    "word-count": _word_count,
    "latency": _latency,
    "cost": _cost,
    "python": _python,
}
MODEL_GRADED = ("llm-rubric", "factuality", "model-graded-closedqa", "answer-relevance", "g-eval", "similar")
KNOWN = frozenset(_CHECKS) | frozenset(MODEL_GRADED)


async def grade(assertion: Any, ctx: Context) -> Grade:
    """One assertion (an `Assertion` from suite.py), negation and transform applied."""
    if assertion.type == "assert-set":
        children = [await grade(child, ctx) for child in assertion.children]
        combined = combine(children, assertion.threshold)
        result = Grade(combined.passed, combined.score, combined.reason, children=tuple(children))
    else:
        local = ctx
        if assertion.transform:
            transformed = apply_transform(assertion.transform, ctx.output, ctx.vars, ctx.suite_dir)
            local = Context(**{**ctx.__dict__, "output": _text(transformed)})
        value = assertion.value
        if isinstance(value, str) and "{{" in value:
            value = render(value, ctx.vars)
        if assertion.type in MODEL_GRADED:
            result = await model_graded(assertion.type, value, local, assertion.threshold)
        else:
            result = _CHECKS[assertion.type](value, local, assertion.threshold)
    if assertion.negate:
        result = Grade(
            not result.passed, 1.0 - result.score, f"not: {result.reason}", children=result.children
        )
    return Grade(
        result.passed,
        result.score,
        result.reason,
        assertion.label,
        assertion.metric,
        assertion.weight,
        result.children,
    )


def combine(grades: list[Grade], threshold: float | None) -> Grade:
    """promptfoo's rule: weighted average score; all must pass, or the score must reach `threshold`."""
    weighted = [g for g in grades if g.weight > 0]
    total = sum(g.weight for g in weighted)
    score = sum(g.score * g.weight for g in weighted) / total if total else 1.0
    if threshold is not None:
        passed = score >= threshold
        reason = f"score {score:.2f} {'>=' if passed else '<'} threshold {threshold:g}"
    else:
        failed = [g for g in grades if not g.passed]
        passed = not failed
        reason = (
            "all assertions passed" if passed else "; ".join(f"{g.assertion}: {g.reason}" for g in failed)
        )
    return Grade(passed, score, reason)
