"""The static embeddings: distilled from a tiny BERT here (the real encoder is fetched by `make
train-router`), and the shipped ones read as meaning, not spelling."""

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

from sovra.errors import IntegrityError, SovraError
from sovra.routing.classifier import Cascade, Features, LinearClassifier, SecondOpinion
from sovra.routing.datasets import Example
from sovra.routing.distil import distil, encode, load_weights
from sovra.routing.embeddings import StaticEmbeddings
from sovra.routing.router import shipped_classifiers
from sovra.routing.train import fit

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "court", "judge", "law", "cell", "gene", "enzyme", "of"]
HIDDEN, HEADS, INNER, LAYERS = 8, 2, 16, 3


def tiny_tokenizer() -> Tokenizer:
    tokenizer = Tokenizer(models.WordPiece({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return tokenizer


def tiny_bert(seed: int = 0) -> dict[str, np.ndarray]:
    random = np.random.default_rng(seed)

    def tensor(*shape: int) -> np.ndarray:
        return random.normal(0, 0.5, shape).astype(np.float32)

    weights = {
        "bert.embeddings.word_embeddings.weight": tensor(len(WORDS), HIDDEN),
        "bert.embeddings.position_embeddings.weight": tensor(16, HIDDEN),
        "bert.embeddings.token_type_embeddings.weight": tensor(2, HIDDEN),
        "bert.embeddings.LayerNorm.weight": np.ones(HIDDEN, np.float32),
        "bert.embeddings.LayerNorm.bias": np.zeros(HIDDEN, np.float32),
        "bert.embeddings.position_ids": np.arange(16, dtype=np.int64)[None],  # not a float: left out
    }
    for layer in range(LAYERS):
        p = f"bert.encoder.layer.{layer}"
        for name, (out, inp) in {
            "attention.self.query": (HIDDEN, HIDDEN), "attention.self.key": (HIDDEN, HIDDEN),
            "attention.self.value": (HIDDEN, HIDDEN), "attention.output.dense": (HIDDEN, HIDDEN),
            "intermediate.dense": (INNER, HIDDEN), "output.dense": (HIDDEN, INNER),
        }.items():  # fmt: skip
            weights[f"{p}.{name}.weight"], weights[f"{p}.{name}.bias"] = tensor(out, inp), tensor(out)
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            weights[f"{p}.{norm}.weight"] = np.ones(HIDDEN, np.float32)
            weights[f"{p}.{norm}.bias"] = np.zeros(HIDDEN, np.float32)
    return weights


def stored(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "model.safetensors"
    save_file(tiny_bert(), str(path))
    import hashlib

    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_weights_are_refused_unless_they_are_the_upstream_bytes(tmp_path: Path) -> None:
    path, digest = stored(tmp_path)
    with pytest.raises(IntegrityError, match="expected the upstream"):
        load_weights(path)  # the default: all-MiniLM-L6-v2's hash
    weights = load_weights(path, digest)
    assert "embeddings.word_embeddings.weight" in weights and "embeddings.position_ids" not in weights


def test_padding_changes_nothing_for_the_real_tokens(tmp_path: Path) -> None:
    weights = load_weights(*stored(tmp_path))
    ids = np.array([[2, 5, 6, 3]])
    alone = encode(weights, ids, np.ones((1, 4), np.float32), HEADS)
    padded = encode(
        weights, np.array([[2, 5, 6, 3, 0, 0]]), np.array([[1, 1, 1, 1, 0, 0]], np.float32), HEADS
    )
    assert np.allclose(alone[0], padded[0, :4], atol=1e-5)
    unmasked = encode(weights, np.array([[2, 5, 6, 3, 0, 0]]), np.ones((1, 6), np.float32), HEADS)
    assert not np.allclose(alone[0], unmasked[0, :4], atol=1e-3)  # the mask is what keeps them apart


def test_distilled_rows_weigh_frequent_tokens_less(tmp_path: Path) -> None:
    weights = load_weights(*stored(tmp_path))
    corpus = ["the law of the court"] * 50 + ["enzyme"]

    def norms(smoothing: float) -> dict[str, float]:
        embeddings = distil(weights, tiny_tokenizer(), corpus, dimensions=4, smoothing=smoothing, heads=HEADS)
        assert embeddings.vectors.shape == (len(WORDS), 4) and embeddings.vectors.dtype == np.int8
        rows = embeddings.vectors.astype(np.float32) * embeddings.scales[:, None]
        return {w: float(np.linalg.norm(rows[WORDS.index(w)])) for w in ("the", "enzyme")}

    flat, weighted = norms(1e9), norms(1e-2)
    assert weighted["the"] / weighted["enzyme"] < 0.2 * flat["the"] / flat["enzyme"]


def test_static_embeddings_round_trip_and_ignore_case(tmp_path: Path) -> None:
    vectors = np.random.default_rng(1).normal(size=(len(WORDS), 6)).astype(np.float32)
    embeddings = StaticEmbeddings.quantised(tiny_tokenizer(), vectors)
    embeddings.save(tmp_path / "e.npz", tmp_path / "t.json")
    loaded = StaticEmbeddings.load(tmp_path / "e.npz", tmp_path / "t.json")
    vector = loaded.embed("The COURT of law")
    assert abs(float(vector @ vector) - 1.0) < 1e-5
    assert np.allclose(vector, embeddings.embed("the court of law"), atol=1e-6)
    expected = vectors[[4, 5, 11, 7]].sum(0)  # int8 storage keeps the direction
    assert float(vector @ expected) / float(np.linalg.norm(expected)) > 0.999
    assert not loaded.embed("   ").any()


def test_a_classifier_that_reads_meaning_needs_its_embeddings(tmp_path: Path) -> None:
    vectors = np.eye(len(WORDS), 6, dtype=np.float32) + 0.01
    embeddings = StaticEmbeddings.quantised(tiny_tokenizer(), vectors)
    examples = [Example(f"court judge law {n}", "law", "t") for n in range(20)]
    examples += [Example(f"cell gene enzyme {n}", "biology", "t") for n in range(20)]
    classifier = fit(examples, strength=10.0, embeddings=embeddings)
    assert classifier.reads_meaning and classifier.dense.shape == (6, 1)
    classifier.save(tmp_path / "c.npz")
    loaded = LinearClassifier.load(tmp_path / "c.npz", embeddings)
    text = "the judge of the court"
    assert loaded.probabilities(text) == pytest.approx(classifier.probabilities(text), abs=0.01)
    with pytest.raises(SovraError, match="embeddings"):
        LinearClassifier.load(tmp_path / "c.npz")
    with pytest.raises(SovraError, match="none were given"):
        _ = Features(text).meaning


def test_the_shipped_embeddings_read_meaning_not_spelling() -> None:
    embeddings = shipped_classifiers().embeddings
    assert embeddings is not None
    statute, court, cells = (
        embeddings.embed(t)
        for t in ("Is a verbal agreement binding under statute?", "The judge dismissed the lawsuit.",
                  "How do enzymes speed up reactions in cells?")
    )  # fmt: skip
    assert float(statute @ court) > float(statute @ cells) + 0.1  # no word in common with either
    domain = shipped_classifiers().domain
    assert isinstance(domain, Cascade) and domain.long.reads_meaning
    jailbreak = shipped_classifiers().jailbreak
    assert isinstance(jailbreak, SecondOpinion) and not jailbreak.long.reads_meaning
