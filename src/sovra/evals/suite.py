"""A promptfoo configuration, read as promptfoo reads it, for `sovra eval`.

Supported: `description`, `prompts` (strings, `file://` text or chat-style JSON, lists of them),
`providers` (`openai:chat:<model>`, `openai:completion:<model>`, with `config.apiBaseUrl`, `apiKey`,
`temperature`, `max_tokens`, `tools`, …), `tests` (a list, or `file://` YAML/JSON/CSV-less lists)
with `description`, `vars`, `assert`, `threshold`, `options.transform`, `metadata`; `defaultTest`;
assertions with `type`, `value`, `threshold`, `weight`, `metric`, `transform`, `not-` prefixes,
`assert-set`. Anything else is reported by name — never ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sovra.errors import ConfigError, Problem

__all__ = ["Assertion", "Prompt", "ProviderSpec", "Suite", "TestCase", "load_suite"]

_SUITE_KEYS = {
    "description",
    "prompts",
    "providers",
    "tests",
    "defaultTest",
    "outputPath",
    "evaluateOptions",
    "sharing",
    "env",
    "writeLatestResults",
    "tags",
}
_IGNORED_HARMLESS = {"outputPath", "sharing", "writeLatestResults", "tags", "evaluateOptions"}
_TEST_KEYS = {"description", "vars", "assert", "threshold", "options", "metadata", "provider"}
_ASSERT_KEYS = {"type", "value", "threshold", "weight", "metric", "transform", "assert", "provider", "config"}
_OPTION_KEYS = {"transform", "provider"}


@dataclass(frozen=True)
class Assertion:
    type: str  # without the `not-` prefix
    value: Any = None
    negate: bool = False
    threshold: float | None = None
    weight: float = 1.0
    metric: str | None = None
    transform: str | None = None
    children: tuple[Assertion, ...] = ()  # assert-set
    provider: str | None = None  # the grader, for model-graded assertions

    @property
    def label(self) -> str:
        return ("not-" if self.negate else "") + self.type


@dataclass(frozen=True)
class Prompt:
    raw: str  # the template: text, or a JSON list of chat messages
    label: str

    @property
    def is_chat(self) -> bool:
        text = self.raw.strip()
        if not text.startswith("["):
            return False
        try:
            messages = json.loads(text)
        except ValueError:
            return False
        return isinstance(messages, list) and all(isinstance(m, dict) and "role" in m for m in messages)


@dataclass(frozen=True)
class ProviderSpec:
    id: str  # openai:chat:<model> or openai:completion:<model>
    label: str
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.id.split(":")[1]

    @property
    def model(self) -> str:
        return self.id.split(":", 2)[2]


@dataclass(frozen=True)
class TestCase:
    description: str
    vars: dict[str, Any]
    asserts: tuple[Assertion, ...]
    threshold: float | None = None
    transform: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)  # as written, for the results file


@dataclass(frozen=True)
class Suite:
    path: Path
    description: str
    prompts: tuple[Prompt, ...]
    providers: tuple[ProviderSpec, ...]
    tests: tuple[TestCase, ...]
    raw: dict[str, Any]


class _Reader:
    """Collects every problem of a config before giving up, as `sovra validate` does."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[Problem] = []

    def problem(self, where: str, reason: str) -> None:
        self.problems.append(Problem(str(self.path), where, reason))

    def unknown(self, mapping: dict[str, Any], known: set[str], where: str) -> None:
        for key in sorted(set(mapping) - known):
            self.problem(f"{where}.{key}" if where else key, "not supported by sovra eval")

    def listed(self, value: Any, where: str, what: str) -> list[Any]:
        """A list, or one item standing alone (promptfoo accepts both); at least one."""
        items = value if isinstance(value, list) else [value] if value else []
        if not items:
            self.problem(where, f"at least one {what} is needed")
        return items

    def file(self, reference: str, where: str) -> str | None:
        target = (self.path.parent / reference.removeprefix("file://")).resolve()
        try:
            return target.read_text(encoding="utf-8")
        except OSError as exc:
            self.problem(where, f"cannot read {reference}: {exc.strerror}")
            return None


def load_suite(path: Path, default_base_url: str, default_api_key: str | None = None) -> Suite:
    """Read a promptfoo config; providers without `apiBaseUrl` go to `default_base_url` (the gateway)."""
    reader = _Reader(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError([Problem(str(path), "", f"cannot read the suite: {exc}")]) from exc
    if not isinstance(document, dict):
        raise ConfigError([Problem(str(path), "", "a suite is a YAML mapping")])
    reader.unknown(document, _SUITE_KEYS, "")
    prompts = _prompts(reader, document.get("prompts"))
    providers = _providers(reader, document.get("providers"), default_base_url, default_api_key)
    default = document.get("defaultTest") or {}
    tests = _tests(reader, document.get("tests"), default)
    if reader.problems:
        raise ConfigError(reader.problems)
    description = str(document.get("description") or path.stem)
    return Suite(path, description, tuple(prompts), tuple(providers), tuple(tests), document)


def _prompts(reader: _Reader, value: Any) -> list[Prompt]:
    items = reader.listed(value, "prompts", "prompt")
    prompts = []
    for index, item in enumerate(items):
        where = f"prompts.{index}"
        raw, label = (
            (item.get("raw") or item.get("id"), item.get("label")) if isinstance(item, dict) else (item, None)
        )
        if not isinstance(raw, str):
            reader.problem(where, "a prompt is a string, a file:// reference, or {raw, label}")
            continue
        text = reader.file(raw, where) if raw.startswith("file://") else raw
        if text is not None:
            prompts.append(Prompt(text, label or raw[:60]))
    return prompts


def _providers(reader: _Reader, value: Any, base_url: str, api_key: str | None) -> list[ProviderSpec]:
    items = reader.listed(value, "providers", "provider")
    providers = []
    for index, item in enumerate(items):
        where = f"providers.{index}"
        spec: dict[str, Any] = (
            {"id": item} if isinstance(item, str) else item if isinstance(item, dict) else {}
        )
        identifier = spec.get("id")
        parts = identifier.split(":", 2) if isinstance(identifier, str) else []
        if len(parts) != 3 or parts[0] != "openai" or parts[1] not in ("chat", "completion"):
            reader.problem(
                f"{where}.id",
                f"{identifier!r} is not supported (openai:chat:<model> or openai:completion:<model>)",
            )
            continue
        reader.unknown(spec, {"id", "label", "config"}, where)
        config = {
            "apiBaseUrl": base_url,
            **({"apiKey": api_key} if api_key else {}),
            **(spec.get("config") or {}),
        }
        providers.append(ProviderSpec(str(identifier), str(spec.get("label") or identifier), config))
    return providers


def _tests(reader: _Reader, value: Any, default: dict[str, Any]) -> list[TestCase]:
    if isinstance(value, str) and value.startswith("file://"):
        text = reader.file(value, "tests")
        value = yaml.safe_load(text) if text else []
    if not isinstance(value, list):
        reader.problem("tests", "a list of tests (or a file:// reference to one)")
        return []
    reader.unknown(default, _TEST_KEYS, "defaultTest")
    base_asserts = _asserts(reader, default.get("assert") or [], "defaultTest.assert")
    tests = []
    for index, raw in enumerate(value):
        where = f"tests.{index}"
        if not isinstance(raw, dict):
            reader.problem(where, "a test is a mapping")
            continue
        reader.unknown(raw, _TEST_KEYS, where)
        options = {**(default.get("options") or {}), **(raw.get("options") or {})}
        reader.unknown(options, _OPTION_KEYS, f"{where}.options")
        tests.append(
            TestCase(
                description=str(raw.get("description") or f"test {index + 1}"),
                vars={**(default.get("vars") or {}), **(raw.get("vars") or {})},
                asserts=(*base_asserts, *_asserts(reader, raw.get("assert") or [], f"{where}.assert")),
                threshold=raw.get("threshold", default.get("threshold")),
                transform=options.get("transform"),
                metadata=raw.get("metadata") or {},
                raw=raw,
            )
        )
    return tests


def _asserts(reader: _Reader, items: Any, where: str) -> list[Assertion]:
    from sovra.evals.assertions import KNOWN  # the registry knows which types exist

    if not isinstance(items, list):
        reader.problem(where, "a list of assertions")
        return []
    asserts = []
    for index, raw in enumerate(items):
        here = f"{where}.{index}"
        if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
            reader.problem(f"{here}.type", "required")
            continue
        reader.unknown(raw, _ASSERT_KEYS, here)
        kind, negate = raw["type"], False
        if kind.startswith("not-"):
            kind, negate = kind[4:], True
        if kind != "assert-set" and kind not in KNOWN:
            reader.problem(f"{here}.type", f"{raw['type']!r} is not supported by sovra eval")
            continue
        children = _asserts(reader, raw.get("assert") or [], f"{here}.assert") if kind == "assert-set" else []
        asserts.append(
            Assertion(
                type=kind,
                value=raw.get("value"),
                negate=negate,
                threshold=raw.get("threshold"),
                weight=float(raw.get("weight", 1.0)),
                metric=raw.get("metric"),
                transform=raw.get("transform"),
                children=tuple(children),
                provider=raw.get("provider"),
            )
        )
    return asserts
