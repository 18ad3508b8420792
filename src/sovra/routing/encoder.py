"""A short prompt → the sentence encoder's vector of it, on one core, in a few milliseconds.

Static embeddings and character n-grams read words one at a time; a short natural question ("Why
did the Roman Empire fall?") has too few of them to outweigh the style the training sets share, and
the classifiers fall back on `other`. The encoder (all-MiniLM-L6-v2 with int8 weights, run by ONNX
Runtime, `routing/export.py`) reads the words in context. It costs about 0.2 ms a token on one core
(AVX2), so only short prompts pay for it, where n-grams are weakest: the domain classifier's of at
most 32 tokens (`classifier.Cascade`) and the jailbreak signal's of at most 64
(`classifier.SecondOpinion`), both reading one vector of the first 32 tokens; longer prompts never
do. The vector is two unit vectors side by side, the mean token states of the last layer and of
one two below it (`export.POOLED`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

__all__ = ["MAX_TOKENS", "SentenceEncoder"]

MAX_TOKENS = 510  # what BERT's 512 positions hold besides [CLS] and [SEP]


@dataclass(frozen=True)
class SentenceEncoder:
    session: Any  # onnxruntime.InferenceSession, one thread
    cls: int
    sep: int

    def embed(self, ids: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """The vector of a text's token ids (without [CLS]/[SEP]; the first MAX_TOKENS are read)."""
        framed = np.concatenate(([self.cls], ids[:MAX_TOKENS], [self.sep])).astype(np.int64)
        vector: npt.NDArray[np.float32] = self.session.run(None, {"ids": framed})[0]
        return vector

    @classmethod
    def load(cls, model: Path, tokenizer: Tokenizer) -> SentenceEncoder:
        import onnxruntime  # type: ignore[import-untyped]

        options = onnxruntime.SessionOptions()
        # One thread, no spinning: the gateway's event loop and the engines own the other cores.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # errors only: its warnings are about graph rewrites
        session = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        return cls(session, _token(tokenizer, "[CLS]"), _token(tokenizer, "[SEP]"))


def _token(tokenizer: Tokenizer, token: str) -> int:
    found = tokenizer.token_to_id(token)
    if found is None:
        raise ValueError(f"the tokenizer has no {token} token")
    return int(found)
