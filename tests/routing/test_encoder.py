"""The sentence encoder: its ONNX graph computes what `distil.encode` computes (on a tiny BERT; the
real one is written by `make train-router`), and the domain cascade sends only short prompts to it."""

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from sovra.errors import SovraError
from sovra.routing.classifier import Cascade, Features, Head, LinearClassifier
from sovra.routing.datasets import DOMAIN_DESCRIPTIONS, Example
from sovra.routing.distil import encode, load_weights
from sovra.routing.embeddings import StaticEmbeddings, WordPieces
from sovra.routing.encoder import SentenceEncoder
from sovra.routing.export import POOLED, export
from sovra.routing.router import sentence_encoder, shipped_classifiers
from sovra.routing.train import DESCRIPTION_WEIGHT, LONG_WEIGHT, SHORT_TOKENS, _described, fit_domain
from tests.routing.test_distil import HEADS, HIDDEN, LAYERS, WORDS, stored, tiny_tokenizer

pytest.importorskip("onnx")


def _pooled(weights: dict[str, npt.NDArray[np.float32]], ids: list[int]) -> npt.NDArray[np.float32]:
    """The unit mean of each pooled hidden state, side by side: the encoder run to that depth."""
    units = []
    for state in POOLED:
        depth = LAYERS + 1 + state  # hidden states count the embeddings as 0
        kept = {k: v for k, v in weights.items()
                if not k.startswith("encoder.layer.") or int(k.split(".")[2]) < depth}  # fmt: skip
        hidden = encode(kept, np.array([ids]), np.ones((1, len(ids)), np.float32), HEADS)[0].mean(axis=0)
        units.append(hidden / np.linalg.norm(hidden))
    return np.concatenate(units)


@pytest.mark.parametrize("quantise", [False, True])
def test_the_graph_computes_the_encoders_pooled_vector(tmp_path: Path, quantise: bool) -> None:
    weights = load_weights(*stored(tmp_path))
    export(weights, tmp_path / "encoder.onnx", heads=HEADS, quantise=quantise)
    encoder = SentenceEncoder.load(tmp_path / "encoder.onnx", tiny_tokenizer())
    for ids in ([5, 6, 7], [8, 9, 10, 11, 4], [4]):
        vector = encoder.embed(np.array(ids, dtype=np.int64))
        expected = _pooled(weights, [2, *ids, 3])  # framed by [CLS] and [SEP]
        assert vector.shape == expected.shape == (len(POOLED) * HIDDEN,)
        for half, wanted in zip(np.split(vector, len(POOLED)), np.split(expected, len(POOLED)), strict=True):
            assert abs(float(np.linalg.norm(half)) - 1.0) < 1e-4
            # int8 weights move the vector a little (all-MiniLM-L6-v2: cosine ~0.97), never elsewhere
            assert float(half @ wanted) > (0.9 if quantise else 0.9999)


class _Session:
    """Stands in for ONNX Runtime: a vector that says which label, and counts its runs."""

    def __init__(self) -> None:
        self.runs = 0

    def run(self, _outputs: None, feeds: dict[str, npt.NDArray[np.int64]]) -> list[npt.NDArray[np.float32]]:
        self.runs += 1
        return [np.array([1.0, 0.0], dtype=np.float32)]


def _cascade(
    session: _Session, max_tokens: int = 4, trust_long: float = 0.999, long_weight: float = 0.0
) -> Cascade:
    tokenizer = tiny_tokenizer()
    vocabulary = tokenizer.get_vocab_size()
    embeddings = StaticEmbeddings(
        tokenizer, np.ones((vocabulary, 2), np.int8), np.ones(vocabulary, np.float32)
    )
    # The long classifier says "law" whatever it reads; the head over the encoder says "biology".
    labels = ("biology", "law", "other")
    long = LinearClassifier(
        labels, np.zeros((1 << 17, 3), np.float32), np.array([0.0, 5.0, 0.0], np.float32),
        np.zeros((2, 3), np.float32), embeddings,
    )  # fmt: skip
    head = Head(labels, np.array([[5.0, 0.0, 0.0], [0.0, 0.0, 0.0]], np.float32), np.zeros(3, np.float32))
    return Cascade(long, head, max_tokens, SentenceEncoder(session, cls=2, sep=3), trust_long, long_weight)


def test_a_short_prompt_is_read_by_the_encoder_and_a_long_one_never() -> None:
    session = _Session()
    cascade = _cascade(session)
    short = Features("the gene cell", cascade.long.embeddings, cascade.encoder)
    assert cascade.read(short)[0] == "sentence encoder"
    scores = cascade.classify(short)
    assert max(scores, key=scores.__getitem__) == "biology"
    long = Features("the judge of the court of the law", cascade.long.embeddings, cascade.encoder)
    assert cascade.read(long)[0] == "n-grams + static embeddings"
    scores = cascade.classify(long)
    assert max(scores, key=scores.__getitem__) == "law"
    assert session.runs == 1  # the long prompt paid nothing for the encoder


def test_a_short_prompt_the_long_classifier_is_sure_of_keeps_its_answer() -> None:
    session = _Session()
    cascade = _cascade(session, trust_long=0.9)  # the long classifier says "law" at 0.987
    short = Features("the gene cell", cascade.long.embeddings, cascade.encoder)
    assert cascade.read(short)[0] == "n-grams + static embeddings"
    scores = cascade.classify(short)
    assert max(scores, key=scores.__getitem__) == "law" and session.runs == 0


def test_a_short_prompts_answer_takes_the_long_classifiers_as_much_as_it_is_weighted() -> None:
    texts = "the gene cell"  # the head says biology at 0.987, the long classifier law at 0.987
    for weight, expected in ((0.0, "biology"), (0.5, "biology"), (2.0, "law")):
        cascade = _cascade(_Session(), long_weight=weight)
        reader, scores = cascade.read(Features(texts, cascade.long.embeddings, cascade.encoder))
        assert max(scores, key=scores.__getitem__) == expected
        assert sum(scores.values()) == pytest.approx(1.0)
        assert reader == (
            "sentence encoder" if weight == 0 else "sentence encoder + n-grams + static embeddings"
        )


def test_the_short_head_is_stored_with_its_bound_and_must_share_the_labels(tmp_path: Path) -> None:
    cascade = _cascade(_Session(), max_tokens=7, trust_long=0.95, long_weight=0.1)
    cascade.save_short(tmp_path / "short.npz")
    loaded = Cascade.load(cascade.long, tmp_path / "short.npz", cascade.encoder)
    assert (loaded.max_tokens, loaded.trust_long, loaded.long_weight) == (
        7,
        pytest.approx(0.95),
        pytest.approx(0.1),
    )
    assert loaded.short.labels == ("biology", "law", "other")
    other = LinearClassifier(("a", "b", "c"), cascade.long.weights, cascade.long.bias, cascade.long.dense)
    with pytest.raises(SovraError, match="labels"):
        Cascade.load(other, tmp_path / "short.npz", cascade.encoder)


@pytest.mark.parametrize(
    ("text", "domain"),
    [
        ("Is a handshake deal enforceable as a contract?", "law"),
        ("What led to the collapse of the Western Roman Empire?", "history"),
        ("Is it safe to give aspirin to a child?", "health"),
        ("What does a central bank do when inflation rises?", "economics"),
    ],
)
def test_the_shipped_cascade_reads_short_questions_by_their_meaning(text: str, domain: str) -> None:
    classifier = shipped_classifiers().domain
    assert isinstance(classifier, Cascade)
    scores = classifier.probabilities(text)
    assert max(scores, key=scores.__getitem__) == domain


class _Hashing:
    """Stands in for ONNX Runtime: a vector from the token ids, so texts with the same words agree."""

    def run(self, _outputs: None, feeds: dict[str, npt.NDArray[np.int64]]) -> list[npt.NDArray[np.float32]]:
        vector = np.zeros(len(WORDS), np.float32)
        np.add.at(vector, feeds["ids"][1:-1], 1.0)
        return [vector / np.linalg.norm(vector)]


def test_training_fits_the_short_head_on_short_prompts_only(tmp_path: Path) -> None:
    tokenizer = tiny_tokenizer()
    vocabulary = tokenizer.get_vocab_size()
    embeddings = StaticEmbeddings(
        tokenizer, np.ones((vocabulary, 2), np.int8), np.ones(vocabulary, np.float32)
    )
    examples = [Example("the court judge law", "law", "t"), Example("the judge of law", "law", "t"),
                Example("the gene cell enzyme", "biology", "t"), Example("the enzyme of the cell", "biology", "t"),
                Example("the court " * 20, "other", "t")] * 3  # fmt: skip
    encoder = SentenceEncoder(_Hashing(), cls=2, sep=3)
    fitted = fit_domain(examples, embeddings, encoder)
    fitted.save_short(tmp_path / "short.npz")
    cascade = Cascade.load(fitted.long, tmp_path / "short.npz", encoder)
    assert cascade.max_tokens == SHORT_TOKENS and cascade.short.labels == fitted.long.labels
    assert cascade.long_weight == pytest.approx(LONG_WEIGHT)
    # only the 40-token prompt was `other`: the long classifier's, so the head never answers it
    assert cascade.short.bias[cascade.labels.index("other")] < -1e3
    scores = cascade.short.classify(encoder.embed(np.array([9, 10], dtype=np.int64)))  # "gene enzyme"
    assert max(scores, key=scores.__getitem__) == "biology"


def test_without_onnx_runtime_the_router_reads_short_prompts_by_n_grams(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def missing() -> SentenceEncoder:
        raise ImportError("No module named 'onnxruntime'")

    assert sentence_encoder(missing) is None
    (record,) = caplog.records
    assert (
        "sentence encoder unavailable" in record.getMessage() and "onnxruntime" in record.__dict__["reason"]
    )
    encoder = SentenceEncoder(_Session(), cls=2, sep=3)
    assert sentence_encoder(lambda: encoder) is encoder


def test_the_heads_prior_adds_each_described_domains_vector_and_nothing_else() -> None:
    tokenizer = tiny_tokenizer()
    pieces = WordPieces(tokenizer)
    encoder = SentenceEncoder(_Hashing(), cls=2, sep=3)
    labels = ("biology", "law", "undescribed")
    blank = Head(labels, np.zeros((len(WORDS), 3), np.float32), np.zeros(3, np.float32))
    described = _described(blank, pieces, encoder)
    for column, label in enumerate(labels[:2]):
        expected = DESCRIPTION_WEIGHT * encoder.embed(pieces.ids(DOMAIN_DESCRIPTIONS[label]))
        np.testing.assert_allclose(described.weights[:, column], expected, rtol=1e-6)
    assert not described.weights[:, 2].any() and not blank.weights.any()  # the head given is unchanged
