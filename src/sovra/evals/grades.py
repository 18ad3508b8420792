"""What an assertion looks at (`Context`) and what it concludes (`Grade`): the types the
deterministic checks (assertions.py), the model-graded ones (graders.py), the runner and the
reports share — in a module of their own, so none of those import each other to agree on them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Context", "Grade"]


@dataclass(frozen=True)
class Grade:
    passed: bool
    score: float
    reason: str
    assertion: str = ""
    metric: str | None = None
    weight: float = 1.0
    children: tuple[Grade, ...] = ()


@dataclass
class Context:
    """What an assertion may look at besides the output."""

    output: str
    vars: dict[str, Any]
    prompt: str
    latency_ms: float = 0.0
    cost: float = 0.0
    finish_reason: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    suite_dir: Path = Path()
    # Model-graded checks: ask the grader model, or embed texts (set by the runner).
    complete: Callable[[str], Awaitable[str]] | None = None
    embed: Callable[[list[str]], Awaitable[list[list[float]]]] | None = None
