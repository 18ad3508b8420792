"""OpenAI tool calls through the gateway, with the real OpenAI SDK and a scripted upstream that makes
them (the tiny default model cannot produce them reliably)."""

import json

import httpx2
import openai
import pytest

from tests.access.test_anthropic import WEATHER, ToolUpstream
from tests.access.test_gateway import TOKEN, gateway_app, replica, served

pytestmark = pytest.mark.anyio


async def test_the_openai_sdk_gets_tool_calls_relayed_intact() -> None:
    """OpenAI tool calls pass through untouched, streamed or not (the scripted upstream makes them)."""
    upstream = ToolUpstream()
    app = gateway_app(upstream, {"m": served("m", [replica(1001)])})
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://gateway")
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER["input_schema"]}}]
    async with openai.AsyncOpenAI(
        base_url="http://gateway/v1", api_key=TOKEN, http_client=http, max_retries=0
    ) as client:
        reply = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "Lyon?"}], tools=tools
        )  # type: ignore[arg-type]
        (call,) = reply.choices[0].message.tool_calls or []
        assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Lyon"})  # type: ignore[union-attr]
        assert reply.choices[0].finish_reason == "tool_calls"
        stream = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "Rome?"}], tools=tools, stream=True
        )  # type: ignore[arg-type]
        arguments = "".join(
            [
                c.choices[0].delta.tool_calls[0].function.arguments or ""
                async for c in stream
                if c.choices and c.choices[0].delta.tool_calls
            ]
        )  # type: ignore[index,union-attr]
    assert json.loads(arguments) == {"city": "Rome"}
    assert json.loads(upstream.seen[-1].body)["tools"] == tools  # forwarded as sent
