"""Token usage in each API's shape: what is read is what is written back."""

import json

from sovra.access.dialects.openai import _public
from sovra.access.dialects.usage import TokenUsage


def test_openai_and_anthropic_count_cached_tokens_differently_and_both_round_trip() -> None:
    tokens = TokenUsage(input=20, output=7, cached=4)
    assert tokens.openai()["prompt_tokens"] == 20 and tokens.openai()["total_tokens"] == 27
    assert tokens.anthropic() == {"input_tokens": 16, "output_tokens": 7, "cache_read_input_tokens": 4}
    assert TokenUsage.from_openai(tokens.openai()) == tokens
    assert TokenUsage.from_anthropic(tokens.anthropic()) == tokens


def test_anthropic_cache_writes_are_input_and_infill_has_its_own_names() -> None:
    written = {
        "input_tokens": 3,
        "cache_creation_input_tokens": 10,
        "cache_read_input_tokens": 2,
        "output_tokens": 1,
    }
    assert TokenUsage.from_anthropic(written) == TokenUsage(15, 1, 2)
    assert TokenUsage.from_infill({"tokens_evaluated": 9, "tokens_predicted": 2}) == TokenUsage(9, 2, 0)


def test_missing_or_null_counts_are_zero_and_engines_anthropic_names_are_read() -> None:
    assert TokenUsage.from_openai({"prompt_tokens": None, "prompt_tokens_details": None}) == TokenUsage()
    assert TokenUsage.from_openai({"input_tokens": 5, "output_tokens": 2}) == TokenUsage(5, 2, 0)


def test_llama_servers_own_fields_do_not_reach_openai_clients() -> None:
    body = (
        b'{"choices":[],"created":1,"model":"m","system_fingerprint":"b0-unknown","object":"chat.completion",'
        b'"usage":{"prompt_tokens":3},"id":"x","timings":{"cache_n":0,"prompt_n":3,"prompt_ms":4.5}}'
    )
    public = json.loads(_public(body))
    assert set(public) == {"choices", "created", "model", "object", "usage", "id"}
    provider = b'{"id":"x","system_fingerprint":"fp_44709d6fcb","choices":[]}'  # OpenAI's own: kept
    assert _public(provider) == provider
