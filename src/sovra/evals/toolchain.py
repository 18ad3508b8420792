"""The tool-calling stress test: how many sequential tool calls a model chains before it breaks.

The model is given one tool, `next_key(key)`, and asked to follow a trail: each call returns the key
for the next call, until the tool says the trail ends after N steps, when the model must answer with
the last key. A chain breaks when the model stops calling, calls with a wrong key, or answers
wrongly. Depths double until a chain breaks, then the last depth that held is refined by bisection.
Agents (OpenCode, Claude Code style) live on exactly this.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import aiohttp

from sovra.evals import providers
from sovra.evals.suite import ProviderSpec

__all__ = ["ChainResult", "chain", "max_chain"]

TOOL = {
    "type": "function",
    "function": {
        "name": "next_key",
        "description": "Returns the key to use in the next call, or says that the trail ends.",
        "parameters": {"type": "object", "properties": {"key": {"type": "string"}}, "required": ["key"]},
    },
}
_TASK = (
    "Follow the trail: call next_key with the key 'start', then call it again with each key it returns, "
    "one call at a time, until it says the trail ends. Then answer with only the last key it returned."
)


def _key(step: int) -> str:
    return hashlib.sha256(f"sovra-trail-{step}".encode()).hexdigest()[:8]


@dataclass(frozen=True)
class ChainResult:
    depth: int  # the trail's length
    completed: int  # calls made correctly in order
    held: bool
    reason: str


async def chain(session: aiohttp.ClientSession, provider: ProviderSpec, depth: int) -> ChainResult:
    """One trail of `depth` calls."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": _TASK}]
    spec = ProviderSpec(provider.id, provider.label, {**provider.config, "tools": [TOOL], "temperature": 0})
    expected = "start"
    for step in range(depth + 1):
        answer = await providers.call(session, spec, messages, _TASK)
        if answer.error:
            return ChainResult(depth, step, False, answer.error)
        if step == depth:  # the trail ended: the answer must be the last key
            held = _key(depth - 1) in answer.output and not answer.tool_calls
            return ChainResult(
                depth, step, held, "answered the last key" if held else f"final answer {answer.output[:40]!r}"
            )
        if not answer.tool_calls:
            return ChainResult(depth, step, False, f"stopped calling at step {step + 1}")
        call = answer.tool_calls[0]
        try:
            key = json.loads(call["function"]["arguments"] or "{}").get("key")
        except (ValueError, KeyError, AttributeError):
            return ChainResult(depth, step, False, f"unreadable arguments at step {step + 1}")
        if key != expected:
            return ChainResult(
                depth, step, False, f"called with {key!r} instead of {expected!r} at step {step + 1}"
            )
        result = (
            f"The trail ends here. The last key is {_key(step)}."
            if step == depth - 1
            else f"Next key: {_key(step)}"
        )
        messages += [
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call.get("id", f"call-{step}"), "content": result},
        ]
        expected = _key(step)
    raise AssertionError("unreachable")


async def max_chain(
    session: aiohttp.ClientSession, provider: ProviderSpec, limit: int = 64
) -> tuple[int, list[ChainResult]]:
    """The longest trail that held (0 if none): doubling, then bisection."""
    trials: list[ChainResult] = []
    held, depth = 0, 1
    while depth <= limit:
        result = await chain(session, provider, depth)
        trials.append(result)
        if not result.held:
            break
        held, depth = depth, depth * 2
    low, high = held, min(depth, limit + 1)
    while high - low > 1:
        middle = (low + high) // 2
        result = await chain(session, provider, middle)
        trials.append(result)
        low, high = (middle, high) if result.held else (low, middle)
    return low, trials
