"""Running a suite: every test, prompt and provider combination, with bounded concurrency, a per-test timeout,
transport retries (never retries of a wrong answer), and a progress bar."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from tqdm import tqdm

from sovra.evals import providers
from sovra.evals.assertions import combine, grade
from sovra.evals.errors import EvalError, TransportError
from sovra.evals.grades import Context, Grade
from sovra.evals.providers import ProviderResponse
from sovra.evals.suite import Prompt, ProviderSpec, Suite, TestCase
from sovra.evals.template import chat_messages, render
from sovra.evals.transforms import apply_transform

__all__ = ["Outcome", "RunOptions", "run_suite"]


@dataclass(frozen=True)
class RunOptions:
    concurrency: int = 4
    retries: int = 2  # extra attempts after a transport error
    timeout_seconds: float = 120.0  # per test, retries included
    grader: ProviderSpec | None = None  # model-graded assertions ask this model
    progress: bool = True


@dataclass
class Outcome:
    """One test against one prompt and one provider."""

    test_index: int
    prompt_index: int
    test: TestCase
    prompt: Prompt
    provider: ProviderSpec
    vars: dict[str, Any]
    rendered_prompt: str = ""
    response: ProviderResponse | None = None
    grade: Grade | None = None
    error: str | None = None  # could not be run or graded: counted as an error, not a failure
    attempts: int = 0
    named_scores: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.error is None and self.grade is not None and self.grade.passed

    @property
    def score(self) -> float:
        return self.grade.score if self.grade is not None else 0.0


async def run_suite(
    suite: Suite, options: RunOptions, on_done: Callable[[Outcome], None] | None = None
) -> list[Outcome]:
    outcomes = [
        Outcome(t, p, test, prompt, provider, dict(test.vars))
        for t, test in enumerate(suite.tests)
        for p, prompt in enumerate(suite.prompts)
        for provider in suite.providers
    ]
    limit = asyncio.Semaphore(options.concurrency)
    bar = tqdm(total=len(outcomes), desc=suite.description[:40], unit="test", disable=not options.progress)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=options.timeout_seconds)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def one(outcome: Outcome) -> None:
            async with limit:
                try:
                    await asyncio.wait_for(
                        _run_one(session, suite, outcome, options), options.timeout_seconds
                    )
                except TimeoutError:
                    outcome.error = f"timed out after {options.timeout_seconds:g} s"
            bar.update(1)
            if on_done is not None:
                on_done(outcome)

        await asyncio.gather(*(one(o) for o in outcomes))
    bar.close()
    return outcomes


async def _with_retries(options: RunOptions, outcome: Outcome, attempt: Callable[[], Any]) -> Any:
    delay = 0.5
    for tries in range(options.retries + 1):
        outcome.attempts = tries + 1
        try:
            return await attempt()
        except TransportError:
            if tries == options.retries:
                raise
            await asyncio.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


async def _run_one(
    session: aiohttp.ClientSession, suite: Suite, outcome: Outcome, options: RunOptions
) -> None:
    try:
        messages = chat_messages(outcome.prompt.raw, outcome.vars, outcome.prompt.is_chat)
        outcome.rendered_prompt = render(outcome.prompt.raw, outcome.vars)
        response = await _with_retries(
            options,
            outcome,
            lambda: providers.call(session, outcome.provider, messages, outcome.rendered_prompt),
        )
    except EvalError as exc:
        outcome.error = str(exc)
        return
    outcome.response = response
    if response.error:
        outcome.error = response.error
        return
    output: Any = response.output
    if outcome.test.transform:
        try:
            output = apply_transform(outcome.test.transform, output, outcome.vars, suite.path.parent)
        except EvalError as exc:
            outcome.error = str(exc)
            return
    context = Context(
        output=output if isinstance(output, str) else json.dumps(output),
        vars=outcome.vars,
        prompt=outcome.rendered_prompt,
        latency_ms=response.latency_ms,
        cost=_cost(outcome.provider, response),
        finish_reason=response.finish_reason,
        tool_calls=response.tool_calls,
        suite_dir=suite.path.parent,
        complete=_grader_call(session, options, outcome),
        embed=_embedder(session, options, outcome),
    )
    try:
        grades = [await grade(assertion, context) for assertion in outcome.test.asserts]
    except TransportError as exc:  # a grader or embedding model that did not answer
        outcome.error = str(exc)
        return
    outcome.grade = _test_grade(grades, outcome.test.threshold)
    outcome.named_scores = _named_scores(grades)


def _test_grade(grades: list[Grade], threshold: float | None) -> Grade:
    if not grades:
        return Grade(True, 1.0, "no assertions")
    combined = combine(grades, threshold)
    return Grade(combined.passed, combined.score, combined.reason, children=tuple(grades))


def _named_scores(grades: list[Grade]) -> dict[str, float]:
    scores: dict[str, list[float]] = {}
    for g in grades:
        if g.metric:
            scores.setdefault(g.metric, []).append(g.score)
    return {name: sum(values) / len(values) for name, values in scores.items()}


def _cost(provider: ProviderSpec, response: ProviderResponse) -> float:
    """promptfoo's `config.cost` (per token), else nothing: a self-hosted model has no price list."""
    per_token = provider.config.get("cost")
    return float(per_token) * response.token_usage.get("total", 0) if per_token else 0.0


def _grader(options: RunOptions, outcome: Outcome) -> ProviderSpec:
    return options.grader or outcome.provider


def _grader_call(
    session: aiohttp.ClientSession, options: RunOptions, outcome: Outcome
) -> Callable[[str], Any]:
    async def complete(prompt: str) -> str:
        grader = _grader(options, outcome)
        chat = ProviderSpec(f"openai:chat:{grader.model}", grader.label, {**grader.config, "temperature": 0})
        messages = [{"role": "user", "content": prompt}]
        answer = await _with_retries(
            options, outcome, lambda: providers.call(session, chat, messages, prompt)
        )
        if answer.error:
            raise EvalError(f"grader: {answer.error}")
        return str(answer.output)

    return complete


def _embedder(
    session: aiohttp.ClientSession, options: RunOptions, outcome: Outcome
) -> Callable[[list[str]], Any]:
    async def embed(texts: list[str]) -> list[list[float]]:
        grader = _grader(options, outcome)
        vectors: list[list[float]] = await _with_retries(
            options, outcome, lambda: providers.embed(session, grader, texts)
        )
        return vectors

    return embed
