"""Model-graded assertions, asked of a grader model through the gateway: `llm-rubric`,
`factuality`, `model-graded-closedqa`, `g-eval`, `answer-relevance`, `similar` (embeddings).

The grader's answer is parsed defensively: a grader that does not answer in the asked shape fails
the assertion with that reason, it never crashes the run.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from sovra.evals.errors import EvalError, TransportError
from sovra.evals.grades import Context, Grade

__all__ = ["model_graded"]

_RUBRIC = """You are grading an AI's output against a rubric.
<Output>
{output}
</Output>
<Rubric>
{rubric}
</Rubric>
Answer with only a JSON object:
{{"reason": "<one sentence>", "pass": true or false, "score": <0.0 to 1.0>}}"""

_FACTUALITY = """Compare a submitted answer to an expert answer on the same question.
<Question>{question}</Question>
<Expert>{expert}</Expert>
<Submission>{output}</Submission>
Choose one: (A) the submission is a subset of the expert answer and consistent with it; (B) a
superset, consistent; (C) the same details; (D) it disagrees with the expert answer; (E) they differ
but the differences do not matter for factuality. Answer with only the letter."""

_CLOSEDQA = """Does the submission meet the criterion?
<Submission>{output}</Submission>
<Criterion>{criterion}</Criterion>
Answer with only Y or N."""

_GEVAL = """Rate the output against the criteria on a scale of 1 to 10.
<Input>{question}</Input>
<Output>{output}</Output>
<Criteria>{criteria}</Criteria>
Answer with only the number."""

_QUESTIONS = """Write three questions that the following text answers, one per line, nothing else.
<Text>{output}</Text>"""


async def _ask(ctx: Context, prompt: str) -> str:
    if ctx.complete is None:
        raise EvalError("no grader model (give --grader or defaultTest.options.provider)")
    return await ctx.complete(prompt)


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def _question(ctx: Context) -> str:
    return str(ctx.vars.get("question") or ctx.vars.get("query") or ctx.prompt)


async def _rubric(value: Any, ctx: Context, threshold: float | None) -> Grade:
    answer = await _ask(ctx, _RUBRIC.format(output=ctx.output, rubric=value))
    match = re.search(r"\{.*\}", answer, re.DOTALL)
    try:
        verdict = json.loads(match.group(0)) if match else None
    except ValueError:
        verdict = None
    if not isinstance(verdict, dict) or "pass" not in verdict:
        return Grade(False, 0.0, f"the grader did not answer with a verdict: {answer[:120]!r}")
    score = float(verdict.get("score", 1.0 if verdict["pass"] else 0.0))
    passed = bool(verdict["pass"]) and (threshold is None or score >= threshold)
    return Grade(passed, score, str(verdict.get("reason", "")))


async def _factuality(value: Any, ctx: Context, _: float | None) -> Grade:
    answer = await _ask(ctx, _FACTUALITY.format(question=_question(ctx), expert=value, output=ctx.output))
    match = re.search(r"\(?([A-E])\)?", answer.strip().upper())
    if not match:
        return Grade(False, 0.0, f"the grader did not choose A-E: {answer[:80]!r}")
    choice = match.group(1)
    return Grade(choice != "D", 0.0 if choice == "D" else 1.0, f"grader chose ({choice})")


async def _closedqa(value: Any, ctx: Context, _: float | None) -> Grade:
    answer = (await _ask(ctx, _CLOSEDQA.format(output=ctx.output, criterion=value))).strip().upper()
    if answer[:1] not in ("Y", "N"):
        return Grade(False, 0.0, f"the grader did not answer Y or N: {answer[:80]!r}")
    return Grade(
        answer.startswith("Y"), 1.0 if answer.startswith("Y") else 0.0, f"grader answered {answer[:1]}"
    )


async def _geval(value: Any, ctx: Context, threshold: float | None) -> Grade:
    answer = await _ask(ctx, _GEVAL.format(question=_question(ctx), output=ctx.output, criteria=value))
    match = re.search(r"\d+(\.\d+)?", answer)
    if not match:
        return Grade(False, 0.0, f"the grader gave no score: {answer[:80]!r}")
    score = min(1.0, max(0.0, float(match.group(0)) / 10))
    limit = 0.7 if threshold is None else threshold
    return Grade(score >= limit, score, f"grader scored {score * 10:g}/10")


async def _similar(value: Any, ctx: Context, threshold: float | None) -> Grade:
    if ctx.embed is None:
        raise EvalError("no embedding model for `similar`")
    expected = value if isinstance(value, list) else [value]
    vectors = await ctx.embed([ctx.output, *map(str, expected)])
    score = max(_cosine(vectors[0], v) for v in vectors[1:])
    limit = 0.75 if threshold is None else threshold
    return Grade(score >= limit, score, f"cosine similarity {score:.3f} (at least {limit:g})")


async def _relevance(value: Any, ctx: Context, threshold: float | None) -> Grade:
    if ctx.embed is None:
        raise EvalError("no embedding model for `answer-relevance`")
    questions = [
        q.strip() for q in (await _ask(ctx, _QUESTIONS.format(output=ctx.output))).splitlines() if q.strip()
    ][:3]
    if not questions:
        return Grade(False, 0.0, "the grader wrote no questions")
    vectors = await ctx.embed([_question(ctx), *questions])
    score = sum(_cosine(vectors[0], v) for v in vectors[1:]) / len(questions)
    limit = 0.7 if threshold is None else threshold
    return Grade(score >= limit, score, f"relevance {score:.3f} (at least {limit:g})")


_GRADERS = {
    "llm-rubric": _rubric,
    "factuality": _factuality,
    "model-graded-closedqa": _closedqa,
    "g-eval": _geval,
    "similar": _similar,
    "answer-relevance": _relevance,
}


async def model_graded(kind: str, value: Any, ctx: Context, threshold: float | None) -> Grade:
    try:
        return await _GRADERS[kind](value, ctx, threshold)
    except TransportError:
        raise  # the grader did not answer: the test is an error, not a failure
    except EvalError as exc:
        return Grade(False, 0.0, str(exc))
