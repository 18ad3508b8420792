"""`options.transform` and an assertion's `transform`: turn the output before it is graded.

promptfoo's inline transforms are JavaScript; Sovra runs no JavaScript, so an inline transform is a
Python expression over `output` and `context` (`output.strip()`, `json.loads(output)["answer"]`),
and the common JavaScript idioms are read as their Python twins (`output.trim()`,
`.toLowerCase()`, `.toUpperCase()`, `JSON.parse(...)`, `JSON.stringify(...)`). A file
(`file://transform.py[:function]`, default `get_transform(output, context)`) is imported.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

from sovra.evals.errors import EvalError

__all__ = ["apply_transform"]

_JS_IDIOMS = (
    (re.compile(r"\.trim\(\)"), ".strip()"),
    (re.compile(r"\.toLowerCase\(\)"), ".lower()"),
    (re.compile(r"\.toUpperCase\(\)"), ".upper()"),
    (re.compile(r"\bJSON\.parse\("), "json.loads("),
    (re.compile(r"\bJSON\.stringify\("), "json.dumps("),
)


def apply_transform(transform: str, output: Any, variables: dict[str, Any], suite_dir: Path) -> Any:
    context = {"vars": variables}
    if transform.startswith("file://"):
        path, _, function = transform.removeprefix("file://").partition(":")
        spec = importlib.util.spec_from_file_location("sovra_transform", suite_dir / path)
        if spec is None or spec.loader is None:
            raise EvalError(f"cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
            return getattr(module, function or "get_transform")(output, context)
        except Exception as exc:  # the suite's own code: its failure is the test's, not Sovra's
            raise EvalError(f"transform {transform!r} failed: {exc}") from exc
    expression = transform
    for pattern, replacement in _JS_IDIOMS:
        expression = pattern.sub(replacement, expression)
    try:
        return eval(expression, {"json": json, "re": re}, {"output": output, "context": context})
    except Exception as exc:
        raise EvalError(f"transform {transform!r} failed: {exc}") from exc
