"""The word-at-a-time tokenizer the router serves with, against the tokenizer itself."""

import json
from pathlib import Path

import pytest

from sovra.routing.classifier import MODELS, TOKENIZER
from sovra.routing.embeddings import WordPieces, load_tokenizer
from sovra.routing.features import clipped

ROOT = Path(__file__).resolve().parents[2]
ODD = [
    "",
    "   ",
    "naïve café, Ærøskøbing and e\u0301",
    "中文字符test 😀 🎉x",
    "\uff21\uff22\uff23 full width",
    "a\x1cb c\x85d e\x0bf",
    "x\u2028y\u2029z\u00a0w",
    "zero\u200bwidth \u200b",
    "tab\there\r\nnew",
    "x" * 150 + " a word too long to split",
    "snake_case, kebab-case; C++ & $5.00!",
    "\x00\x01zz",
    "\U000e0069\U000e0067nore hidden tags",
    "word " * 3000 + "tail",
]


def _texts() -> list[str]:
    texts = list(ODD)
    for path in [
        *sorted((ROOT / "bench" / "data").glob("*.jsonl")),
        ROOT / "data" / "router" / "domain_questions.jsonl",
    ]:
        texts += [str(json.loads(row).get("text", "")) for row in path.read_text().splitlines()]
    return texts


@pytest.mark.parametrize("remembered", [50_000, 20])  # 20: the memory is emptied again and again
def test_word_pieces_are_the_tokenizers_own_ids(remembered: int) -> None:
    tokenizer = load_tokenizer(MODELS / TOKENIZER)
    pieces = WordPieces(tokenizer, remembered)
    texts = _texts()
    assert len(texts) > 500
    for _ in range(2):  # once learning the words, once from memory
        for text in texts:
            expected = tokenizer.encode(clipped(text), add_special_tokens=False).ids
            assert pieces.ids(text).tolist() == expected, text[:80]


def test_the_memory_stays_bounded() -> None:
    pieces = WordPieces(load_tokenizer(MODELS / TOKENIZER), remembered=100)
    for n in range(30):
        pieces.ids(" ".join(f"w{n}x{m}" for m in range(40)))
        assert len(pieces._known) <= 100
