"""Embeddings with the real engine: SmolLM2 served by llama-server with `--embeddings` (mean pooling),
reached through the gateway with the OpenAI SDK, counted in the ledger."""

import math
import sqlite3
import time
from pathlib import Path

import openai
import pytest

from tests.conftest import CATALOG, TOKEN, start_platform, stop_platform

pytestmark = pytest.mark.engine


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def test_embeddings_through_the_gateway(llama_server: Path, smollm2: Path, tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.yaml"
    text = (CATALOG / "smollm2.yaml").read_text()
    catalog.write_text(text + "    - --embeddings\n    - --pooling=mean\n")
    platform = start_platform(tmp_path, catalog=catalog)
    try:
        client = openai.OpenAI(base_url=f"{platform.base_url}/v1", api_key=TOKEN, max_retries=0)
        inputs = ["The cat sat on the mat.", "The cat sat on the mat.", "Quarterly VAT returns are due."]
        # The SDK asks for base64 by default; ask for floats too, so both encodings are relayed.
        packed = client.embeddings.create(model="smollm2", input=inputs)
        plain = client.embeddings.create(model="smollm2", input=inputs[0], encoding_format="float")
        chat = client.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
    finally:
        stop_platform(platform)
    vectors = [item.embedding for item in packed.data]
    assert [item.index for item in packed.data] == [0, 1, 2]
    assert {len(v) for v in vectors} == {576}  # SmolLM2-135M's hidden size
    assert _cosine(vectors[0], vectors[1]) > 0.999  # the same text, the same vector
    assert _cosine(vectors[0], vectors[2]) < 0.99
    assert _cosine(plain.data[0].embedding, vectors[0]) > 0.999
    assert packed.usage.prompt_tokens > 0 and chat.choices[0].message is not None  # chat still served
    deadline = time.monotonic() + 10
    while True:  # rows are written behind the answer; `stop_platform` flushed them
        with sqlite3.connect(tmp_path / "sovra.db") as db:
            rows = db.execute("SELECT input_tokens FROM usage WHERE endpoint = '/v1/embeddings'").fetchall()
        if len(rows) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert [row[0] for row in rows] == [packed.usage.prompt_tokens, plain.usage.prompt_tokens]
