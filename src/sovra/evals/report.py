"""What a run leaves behind: promptfoo's results file (its viewer opens it), a JUnit XML for CI, and
the table at the end of the run."""

from __future__ import annotations

import datetime
import json
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sovra.evals.grades import Grade
from sovra.evals.runner import Outcome
from sovra.evals.suite import Suite

__all__ = ["Summary", "junit", "output_file", "summarise", "table"]

# promptfoo's ResultFailureReason
_NONE, _ASSERT, _ERROR = 0, 1, 2


@dataclass(frozen=True)
class Summary:
    total: int
    passed: int
    failed: int
    errors: int

    @property
    def pass_rate(self) -> float:
        return self.passed / self.total if self.total else 1.0


def summarise(outcomes: list[Outcome]) -> Summary:
    errors = sum(1 for o in outcomes if o.error is not None)
    passed = sum(1 for o in outcomes if o.passed)
    return Summary(len(outcomes), passed, len(outcomes) - passed - errors, errors)


def _component(grade: Grade) -> dict[str, Any]:
    return {
        "pass": grade.passed,
        "score": grade.score,
        "reason": grade.reason,
        "assertion": {"type": grade.assertion, "metric": grade.metric, "weight": grade.weight},
        **({"componentResults": [_component(c) for c in grade.children]} if grade.children else {}),
    }


def _result(outcome: Outcome, index: int) -> dict[str, Any]:
    response = outcome.response
    usage = response.token_usage if response else {}
    failure = _ERROR if outcome.error else _NONE if outcome.passed else _ASSERT
    result: dict[str, Any] = {
        "id": f"{outcome.test_index}-{outcome.prompt_index}-{index}",
        "promptIdx": outcome.prompt_index,
        "testIdx": outcome.test_index,
        "testCase": {"description": outcome.test.description, **outcome.test.raw},
        "promptId": f"prompt-{outcome.prompt_index}",
        "provider": {"id": outcome.provider.id, "label": outcome.provider.label},
        "prompt": {"raw": outcome.rendered_prompt, "label": outcome.prompt.label},
        "vars": outcome.vars,
        "response": {
            "output": response.output if response else "",
            "finishReason": response.finish_reason if response else None,
            "tokenUsage": {**usage, "numRequests": 1},
        }
        if response
        else None,
        "error": outcome.error,
        "failureReason": failure,
        "success": outcome.passed,
        "score": outcome.score,
        "latencyMs": round(response.latency_ms) if response else 0,
        "namedScores": outcome.named_scores,
        "cost": 0,
        "metadata": {"servedModel": response.model if response else None, "attempts": outcome.attempts},
    }
    if outcome.grade is not None:
        result["gradingResult"] = {
            "pass": outcome.grade.passed,
            "score": outcome.grade.score,
            "reason": outcome.grade.reason,
            "namedScores": outcome.named_scores,
            "componentResults": [_component(c) for c in outcome.grade.children],
        }
    return result


def output_file(suite: Suite, outcomes: list[Outcome], run_id: str | None = None) -> dict[str, Any]:
    """promptfoo's OutputFile (results version 3), which `promptfoo view` can open."""
    summary = summarise(outcomes)
    totals = {"total": 0, "prompt": 0, "completion": 0, "cached": 0, "numRequests": 0}
    for outcome in outcomes:
        for key in ("total", "prompt", "completion"):
            totals[key] += outcome.response.token_usage.get(key, 0) if outcome.response else 0
        totals["numRequests"] += 1 if outcome.response else 0
    prompts = [
        {"raw": p.raw, "label": p.label, "provider": provider.label}
        for p in suite.prompts
        for provider in suite.providers
    ]
    return {
        "evalId": run_id or f"eval-{uuid.uuid4().hex[:12]}",
        "results": {
            "version": 3,
            "timestamp": datetime.datetime.now(datetime.UTC).isoformat(),
            "prompts": prompts,
            "results": [_result(o, i) for i, o in enumerate(outcomes)],
            "stats": {
                "successes": summary.passed,
                "failures": summary.failed,
                "errors": summary.errors,
                "tokenUsage": totals,
            },
        },
        "config": suite.raw,
        "shareableUrl": None,
    }


def junit(suite: Suite, outcomes: list[Outcome]) -> bytes:
    """One testsuite per provider, one testcase per test and prompt."""
    root = ET.Element("testsuites", name=suite.description)
    for provider in suite.providers:
        mine = [o for o in outcomes if o.provider is provider]
        summary = summarise(mine)
        element = ET.SubElement(
            root,
            "testsuite",
            name=provider.label,
            tests=str(summary.total),
            failures=str(summary.failed),
            errors=str(summary.errors),
        )
        for outcome in mine:
            case = ET.SubElement(
                element,
                "testcase",
                classname=provider.label,
                name=f"{outcome.test.description} [{outcome.prompt.label}]",
                time=f"{(outcome.response.latency_ms if outcome.response else 0) / 1000:.3f}",
            )
            if outcome.error is not None:
                ET.SubElement(case, "error", message=outcome.error)
            elif not outcome.passed and outcome.grade is not None:
                ET.SubElement(case, "failure", message=outcome.grade.reason[:500])
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document


def table(outcomes: list[Outcome]) -> list[list[str]]:
    rows = [["test", "prompt", "provider", "result", "score", "ms", "reason"]]
    for o in outcomes:
        verdict = "ERROR" if o.error else "PASS" if o.passed else "FAIL"
        reason = o.error or (o.grade.reason if o.grade else "")
        latency = f"{o.response.latency_ms:.0f}" if o.response else "-"
        rows.append(
            [
                o.test.description[:40],
                o.prompt.label[:24],
                o.provider.label[:28],
                verdict,
                f"{o.score:.2f}",
                latency,
                reason[:60].replace("\n", " "),
            ]
        )
    return rows


def by_model(outcomes: list[Outcome]) -> list[list[str]]:
    """The models side by side: pass rate, mean score, mean latency."""
    rows = [["model", "tests", "passed", "pass rate", "mean score", "mean ms"]]
    labels = list(dict.fromkeys(o.provider.label for o in outcomes))
    for label in labels:
        mine = [o for o in outcomes if o.provider.label == label]
        summary = summarise(mine)
        latencies = [o.response.latency_ms for o in mine if o.response]
        mean_ms = f"{sum(latencies) / len(latencies):.0f}" if latencies else "-"
        rows.append(
            [
                label,
                str(summary.total),
                str(summary.passed),
                f"{summary.pass_rate:.1%}",
                f"{sum(o.score for o in mine) / len(mine):.2f}",
                mean_ms,
            ]
        )
    return rows


def write(path: Path, suite: Suite, outcomes: list[Outcome], run_id: str | None = None) -> None:
    path.write_text(json.dumps(output_file(suite, outcomes, run_id), indent=2, default=str))
