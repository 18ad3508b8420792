"""Fuzzing the gateway (scripted upstream): whatever a client sends, no 5xx and no hang."""

import asyncio
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.access.test_gateway import AUTH, ScriptedUpstream, client, replica, served

ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/messages")
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
# Bodies that look like real requests, with each known field sometimes present and of any type.
known_fields = st.fixed_dictionaries(
    {},
    optional={
        "model": st.sampled_from(["m", "nope", ""]) | json_values,
        "messages": st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "tool", "x"])}, optional={"content": json_values}), max_size=3) | json_values,
        "prompt": json_values, "suffix": json_values, "input": json_values, "stream": st.booleans() | json_values,
        "max_tokens": st.integers(-5, 100) | json_values, "n": json_values, "temperature": json_values,
        "tools": json_values, "tool_choice": json_values, "system": json_values, "stream_options": json_values,
        "stop": json_values, "stop_sequences": json_values,
    },
)  # fmt: skip


async def post_all(path: str, content: bytes) -> int:
    async with client(ScriptedUpstream(), {"m": served("m", [replica(1001)])}) as gateway:
        headers = {**AUTH, "content-type": "application/json"}
        async with asyncio.timeout(5):  # a hang fails the test
            response = await gateway.post(path, content=content, headers=headers)
            await response.aread()
    return response.status_code


def check(path: str, content: bytes) -> None:
    status = asyncio.run(post_all(path, content))
    assert status < 500, f"{path} answered {status} to {content[:200]!r}"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(ENDPOINTS), body=known_fields)
def test_request_shaped_bodies_never_cause_a_5xx(path: str, body: dict[str, Any]) -> None:
    check(path, json.dumps(body).encode())


@settings(max_examples=100, deadline=None)
@given(
    path=st.sampled_from(ENDPOINTS),
    content=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()),
)
def test_arbitrary_bytes_never_cause_a_5xx(path: str, content: bytes) -> None:
    check(path, content)
