"""The sentence encoder as an ONNX graph with int8 weights (training only; serving runs the result).

all-MiniLM-L6-v2 (Apache-2.0), the BERT whose token vectors `distil.py` already reads, written out
node by node from its safetensors weights — one sequence of token ids in, one vector out — then
its weights quantised to int8 by ONNX Runtime's dynamic quantisation (a quarter of the size, about
twice as fast on one core; cosine ≈ 0.97 to the float model). Building the graph needs the `onnx`
package (`sovra[train]`); no PyTorch, no download: the weights come through the weight store like
the static embeddings'.
`tests/routing/test_encoder.py` checks the graph against `distil.encode` on a tiny BERT.

The vector is two unit vectors side by side: the mean of the last layer's token states (the
sentence vector sentence-transformers pools) and the mean of the states two layers below it
(`POOLED`). The middle layers keep more of how a thing is asked, the last of what it is about; on
validation both heads gained from the second half (routing/models/README.md). One pass, the same
cost: the earlier states are computed on the way anyway.
"""

from __future__ import annotations

import logging
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from sovra.routing.distil import HEADS, Weights, layers

__all__ = ["OPSET", "POOLED", "export"]

OPSET = 18  # ReduceMean's axes as an input
# Which hidden states are mean-pooled into the vector, in its order, counted as Hugging Face's
# `hidden_states` are (0 the embeddings, then one per layer): the last, and two below it (all-MiniLM-
# L6-v2's fourth layer of six).
POOLED = (-1, -3)


class _Graph:
    """Nodes and initialisers, each output named in turn."""

    def __init__(self, weights: Weights) -> None:
        self.weights = weights
        self.nodes: list[Any] = []
        self.constants: list[Any] = []

    def constant(self, name: str, value: Any) -> str:
        from onnx import numpy_helper

        self.constants.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, *inputs: str, **attributes: Any) -> str:
        from onnx import helper

        out = f"{op.lower()}{len(self.nodes)}"
        self.nodes.append(helper.make_node(op, list(inputs), [out], **attributes))
        return out

    def linear(self, x: str, name: str) -> str:
        weight = self.constant(f"{name}.weight", self.weights[f"{name}.weight"].T.copy())
        return self.node(
            "Add", self.node("MatMul", x, weight), self.constant(f"{name}.bias", self.weights[f"{name}.bias"])
        )

    def layer_norm(self, x: str, name: str) -> str:
        scale = self.constant(f"{name}.weight", self.weights[f"{name}.weight"])
        shift = self.constant(f"{name}.bias", self.weights[f"{name}.bias"])
        return self.node("LayerNormalization", x, scale, shift, axis=-1, epsilon=1e-12)


def _attention(g: _Graph, x: str, prefix: str, heads: int) -> str:
    hidden = g.weights[f"{prefix}.query.weight"].shape[0]
    split = g.constant(f"{prefix}.heads", np.array([-1, heads, hidden // heads], np.int64))

    def per_head(name: str, order: list[int]) -> str:
        return g.node("Transpose", g.node("Reshape", g.linear(x, f"{prefix}.{name}"), split), perm=order)

    scale = g.constant(f"{prefix}.scale", np.float32(1.0 / math.sqrt(hidden // heads)))
    scores = g.node("Mul", g.node("MatMul", per_head("query", [1, 0, 2]), per_head("key", [1, 2, 0])), scale)
    attended = g.node("MatMul", g.node("Softmax", scores, axis=-1), per_head("value", [1, 0, 2]))
    joined = g.constant(f"{prefix}.joined", np.array([-1, hidden], np.int64))
    return g.node("Reshape", g.node("Transpose", attended, perm=[1, 0, 2]), joined)


def _gelu(g: _Graph, x: str, name: str) -> str:
    """x · ½(1 + erf(x/√2)): BERT's exact GELU, as `distil.encode` computes it."""
    inner = g.node("Erf", g.node("Mul", x, g.constant(f"{name}.rsqrt2", np.float32(1 / math.sqrt(2)))))
    half = g.node("Mul", x, g.constant(f"{name}.half", np.float32(0.5)))
    return g.node("Mul", half, g.node("Add", inner, g.constant(f"{name}.one", np.float32(1.0))))


def _model(weights: Weights, heads: int) -> Any:
    from onnx import TensorProto, helper

    g = _Graph(weights)
    ids = "ids"  # (tokens,) int64, [CLS] … [SEP]
    count = g.node("Gather", g.node("Shape", ids), g.constant("first", np.array(0, np.int64)))
    positions = g.node(
        "Range", g.constant("zero", np.array(0, np.int64)), count, g.constant("step", np.array(1, np.int64))
    )
    words = g.node("Gather", g.constant("words", weights["embeddings.word_embeddings.weight"]), ids)
    where = g.node(
        "Gather", g.constant("positions", weights["embeddings.position_embeddings.weight"]), positions
    )
    x = g.node("Add", words, where)
    x = g.node("Add", x, g.constant("segment", weights["embeddings.token_type_embeddings.weight"][0]))
    states = [g.layer_norm(x, "embeddings.LayerNorm")]
    for layer in range(layers(weights)):
        x, p = states[-1], f"encoder.layer.{layer}"
        attended = g.linear(_attention(g, x, f"{p}.attention.self", heads), f"{p}.attention.output.dense")
        x = g.layer_norm(g.node("Add", x, attended), f"{p}.attention.output.LayerNorm")
        inner = _gelu(g, g.linear(x, f"{p}.intermediate.dense"), p)
        x = g.layer_norm(g.node("Add", x, g.linear(inner, f"{p}.output.dense")), f"{p}.output.LayerNorm")
        states.append(x)
    tokens = g.constant("tokens", np.array([0], np.int64))
    units = [g.node("LpNormalization", g.node("ReduceMean", states[i], tokens, keepdims=1), axis=-1, p=2)
             for i in POOLED]  # fmt: skip
    g.nodes.append(helper.make_node("Squeeze", [g.node("Concat", *units, axis=-1), "tokens"], ["embedding"]))
    size = len(POOLED) * weights["embeddings.word_embeddings.weight"].shape[1]
    graph = helper.make_graph(
        g.nodes, "sentence-encoder", [helper.make_tensor_value_info(ids, TensorProto.INT64, [None])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [size])], g.constants,
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="sovra")


def export(weights: Weights, out: Path, heads: int = HEADS, quantise: bool = True) -> None:
    """Write the encoder to `out` as ONNX: int8 weights, or float32 with `quantise=False`."""
    import onnx

    model = _model(weights, heads)
    onnx.checker.check_model(model)
    if not quantise:
        onnx.save(model, out)
        return
    from onnxruntime.quantization import QuantType, quantize_dynamic  # type: ignore[import-untyped]

    with tempfile.TemporaryDirectory() as scratch:
        plain = Path(scratch) / "float.onnx"
        onnx.save(model, plain)
        # The quantiser narrates every tensor it leaves alone at INFO on the root logger, and advises
        # a pre-processing pass (shape inference) at WARNING that changes nothing here.
        logging.disable(logging.WARNING)
        try:
            quantize_dynamic(plain, out, weight_type=QuantType.QInt8)
        finally:
            logging.disable(logging.NOTSET)
