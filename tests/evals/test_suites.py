"""Reading promptfoo configs: what is supported runs unchanged, what is not is named; templating
and transforms."""

from pathlib import Path

import pytest

from sovra.errors import ConfigError
from sovra.evals.errors import EvalError
from sovra.evals.suite import load_suite
from sovra.evals.template import chat_messages, render
from sovra.evals.transforms import apply_transform

ROOT = Path(__file__).parent.parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "promptfooconfig.yaml"
    path.write_text(text)
    return path


def test_the_shipped_suite_loads_with_its_defaults() -> None:
    suite = load_suite(ROOT / "evals" / "smoke" / "promptfooconfig.yaml", "http://gw/v1", "sk")
    assert [p.is_chat for p in suite.prompts] == [False, True]
    assert (
        suite.providers[0].config["apiBaseUrl"] == "http://gw/v1"
        and suite.providers[0].config["apiKey"] == "sk"
    )
    assert suite.providers[0].config["max_tokens"] == 24 and suite.providers[0].model == "smollm2"
    first = suite.tests[0]
    assert [a.type for a in first.asserts] == ["latency", "icontains"]  # defaultTest's come first
    assert suite.tests[1].asserts[-1].negate and suite.tests[2].transform == "output.strip()"


def test_unsupported_things_are_named_not_ignored(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
prompts: ["{{q}}"]
providers: [anthropic:messages:claude, {id: "openai:chat:m", config: {}, transformResponse: x}]
redteam: {}
tests:
  - vars: {q: hi}
    assert: [{type: javascript, value: "output.length > 2"}, {type: contains}]
    options: {rubricPrompt: x}
""",
    )
    with pytest.raises(ConfigError) as caught:
        load_suite(path, "http://gw/v1")
    found = {(p.field, p.reason.split(" (")[0]) for p in caught.value.problems}
    assert found == {
        ("redteam", "not supported by sovra eval"),
        ("providers.0.id", "'anthropic:messages:claude' is not supported"),
        ("providers.1.transformResponse", "not supported by sovra eval"),
        ("tests.0.assert.0.type", "'javascript' is not supported by sovra eval"),
        ("tests.0.options.rubricPrompt", "not supported by sovra eval"),
    }


def test_tests_and_prompts_from_files(tmp_path: Path) -> None:
    (tmp_path / "tests.yaml").write_text("- vars: {q: a}\n- vars: {q: b}\n  threshold: 0.5\n")
    (tmp_path / "prompt.txt").write_text("Q: {{ q }}")
    suite = load_suite(
        write(
            tmp_path,
            "prompts: [file://prompt.txt]\nproviders: [openai:completion:m]\ntests: file://tests.yaml\n",
        ),
        "http://gw/v1",
    )
    assert [t.vars["q"] for t in suite.tests] == ["a", "b"] and suite.tests[1].threshold == 0.5
    assert suite.prompts[0].raw == "Q: {{ q }}" and suite.providers[0].kind == "completion"
    with pytest.raises(ConfigError, match=r"cannot read file://missing\.txt"):
        load_suite(
            write(tmp_path, "prompts: [file://missing.txt]\nproviders: [openai:chat:m]\ntests: []\n"),
            "http://gw/v1",
        )


def test_templating_follows_nunjucks() -> None:
    assert render("Hi {{ name | upper }}{% if n > 1 %}s{% endif %}", {"name": "ada", "n": 2}) == "Hi ADAs"
    assert render("[{{ missing }}]", {}) == "[]"  # undefined renders empty, as in promptfoo
    assert render("{{ items | dump }}", {"items": [1, 2]}) == "[1, 2]"
    messages = chat_messages('[{"role": "system", "content": "be {{tone}}"}, {"role": "user", "content": "hi"}]',
                             {"tone": "brief"}, is_chat=True)  # fmt: skip
    assert messages[0] == {"role": "system", "content": "be brief"}
    assert chat_messages("plain {{x}}", {"x": 1}, is_chat=False) == [{"role": "user", "content": "plain 1"}]


def test_transforms_python_javascript_idioms_and_files(tmp_path: Path) -> None:
    assert apply_transform("output.trim().toLowerCase()", "  HI ", {}, tmp_path) == "hi"
    assert apply_transform("JSON.parse(output)['a']", '{"a": 3}', {}, tmp_path) == 3
    assert apply_transform("output + context['vars']['x']", "a", {"x": "b"}, tmp_path) == "ab"
    (tmp_path / "t.py").write_text("def shout(output, context):\n    return output.upper() + '!'\n")
    assert apply_transform("file://t.py:shout", "hey", {}, tmp_path) == "HEY!"
    with pytest.raises(EvalError, match="transform"):
        apply_transform("output.nope()", "x", {}, tmp_path)
    (tmp_path / "broken.py").write_text("def get_transform(output, context):\n    return 1 / 0\n")
    with pytest.raises(EvalError, match="division by zero"):  # the suite's code failed, not Sovra
        apply_transform("file://broken.py", "x", {}, tmp_path)
