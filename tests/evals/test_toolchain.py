"""The tool-calling stress test against a scripted model that follows a trail for five calls and
then calls with a wrong key (the gateway's and runner's logic; no real model chains tool calls
at SmolLM2's size)."""

import asyncio
import json
from typing import Any

import aiohttp
from aiohttp import web

from sovra.evals import toolchain
from sovra.evals.suite import ProviderSpec
from tests.access.loopback import serving


def scripted_model(breaks_at: int) -> web.Application:
    """Reads the last tool result and calls with its key; at call `breaks_at` it gets it wrong."""

    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        messages: list[dict[str, Any]] = body["messages"]
        calls = sum(1 for m in messages if m["role"] == "tool")
        last = messages[-1]["content"]
        if "The trail ends here" in last:
            message = {"role": "assistant", "content": last.rsplit(" ", 1)[-1].rstrip(".")}
        else:
            key = "start" if calls == 0 else last.rsplit(" ", 1)[-1]
            if calls + 1 == breaks_at:
                key = "wrong"
            function = {"name": "next_key", "arguments": json.dumps({"key": key})}
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": f"c{calls}", "type": "function", "function": function}],
            }
        return web.json_response(
            {"model": body["model"], "choices": [{"message": message, "finish_reason": "stop"}]}
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app


def test_the_longest_chain_is_found_by_doubling_then_bisection() -> None:
    async def run() -> tuple[int, list[toolchain.ChainResult]]:
        async with serving(scripted_model(breaks_at=6)) as url, aiohttp.ClientSession() as session:
            provider = ProviderSpec("openai:chat:m", "m", {"apiBaseUrl": f"{url}/v1"})
            return await toolchain.max_chain(session, provider, limit=32)

    depth, trials = asyncio.run(run())
    assert depth == 5  # five calls hold; the sixth uses a wrong key
    assert [t.depth for t in trials] == [1, 2, 4, 8, 6, 5]
    assert "called with 'wrong'" in trials[3].reason and trials[-1].held
