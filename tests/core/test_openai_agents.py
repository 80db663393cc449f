"""The OpenAI Agents SDK door: a real Runner on a chat-completions model served from 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from agents import Agent, ModelSettings, OpenAIChatCompletionsModel, function_tool, set_tracing_disabled
from openai import AsyncOpenAI
from structlog.testing import capture_logs

from guardian import BudgetExceeded, LoopDetected
from guardian.integrations import openai_agents

from .conftest import GuardianFactory

set_tracing_disabled(True)  # no exporter calls to the internet


class FakeChat(BaseHTTPRequestHandler):
    """/v1/chat/completions: asks for `lookup` while `script` says so, then answers; usage on every reply."""

    script: ClassVar[list[str]] = []  # "call:<query>" or a final text, one per request
    requests: ClassVar[int] = 0

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        n = type(self).requests
        type(self).requests += 1
        step = self.script[min(n, len(self.script) - 1)]
        if step.startswith("call:"):
            call = {
                "id": f"call_{n}",
                "type": "function",
                "function": {"name": "lookup", "arguments": json.dumps({"query": step[5:]})},
            }
            message: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [call]}
            finish = "tool_calls"
        else:
            message, finish = {"role": "assistant", "content": step}, "stop"
        payload = {
            "id": f"chatcmpl-{n}", "object": "chat.completion", "created": 1_700_000_000, "model": body["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 200 + 50 * n, "completion_tokens": 20, "total_tokens": 220 + 50 * n},
        }  # fmt: skip
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def base_url() -> Iterator[str]:
    FakeChat.requests = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeChat)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


@function_tool
def lookup(query: str) -> str:
    """Look something up."""
    return f"Nothing found for {query}."


def make_agent(base_url: str) -> Agent[Any]:
    client = AsyncOpenAI(base_url=base_url, api_key="sk-test", max_retries=0)
    model = OpenAIChatCompletionsModel(model="gpt-4o-mini", openai_client=client)
    return Agent(
        name="researcher",
        instructions="Research.",
        model=model,
        tools=[lookup],
        model_settings=ModelSettings(max_tokens=100),
    )


async def test_usage_is_charged_as_the_provider_reported_it(make_guardian: GuardianFactory, base_url: str) -> None:
    """Two lookups and an answer: three model calls and two tool calls, charged at the reported usage."""
    FakeChat.script = ["call:q1", "call:q2", "Here it is."]
    guard = make_guardian(
        {"budgets": [{"name": "daily", "scope": "user", "window": "day", "limits": {"llm_calls": 10}}]}
    )
    with capture_logs() as logs:
        result = await openai_agents.run(guard, make_agent(base_url), "find it", user="alice")
    assert result.final_output == "Here it is."
    (finished,) = [e for e in logs if e["event"] == "run_finished"]
    assert (finished["spent_llm_calls"], finished["spent_tool_calls"]) == (3, 2)
    assert finished["spent_input_tokens"] == 200 + 250 + 300
    assert finished["spent_output_tokens"] == 60
    assert (finished["agent"], finished["user"]) == ("researcher", "alice")


async def test_a_budget_stops_the_runner_before_the_model_is_called(
    make_guardian: GuardianFactory, base_url: str
) -> None:
    FakeChat.script = ["call:q"] * 10
    guard = make_guardian({"budgets": [{"name": "cap", "scope": "run", "limits": {"llm_calls": 2}}]})
    with pytest.raises(BudgetExceeded):
        await openai_agents.run(guard, make_agent(base_url), "find it", max_turns=20)
    assert FakeChat.requests == 2


async def test_a_loop_is_detected_the_same_way(make_guardian: GuardianFactory, base_url: str) -> None:
    """The same lookup with the same answer, over and over: LoopDetected, the fifth model call never made."""
    FakeChat.script = ["call:Q3 revenue"] * 30
    guard = make_guardian({"budgets": [{"name": "cap", "scope": "run", "limits": {"llm_calls": 100}}]})
    with pytest.raises(LoopDetected) as caught:
        await openai_agents.run(guard, make_agent(base_url), "find it", max_turns=30)
    assert (caught.value.signal, caught.value.subject) == ("repeated_tool_call", "lookup")
    assert FakeChat.requests == 4
