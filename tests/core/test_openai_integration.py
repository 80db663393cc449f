"""The real provider path: langchain-openai's ChatOpenAI against an OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from genai_prices import Usage, calc_price
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from guardian import BudgetExceeded, Guardian, Policy
from guardian.amounts import micro_usd
from guardian.testing import FakeClock

PROMPT_TOKENS, CACHED, COMPLETION, REASONING = 1_200, 400, 60, 20
WORDS = ["alpha ", "beta ", "gamma ", "delta"]


class FakeOpenAI(BaseHTTPRequestHandler):
    """Answers /v1/chat/completions like OpenAI does, usage included; records the requests."""

    requests: ClassVar[list[dict[str, Any]]] = []

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(body)
        usage = {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": COMPLETION,
            "total_tokens": PROMPT_TOKENS + COMPLETION,
            "prompt_tokens_details": {"cached_tokens": CACHED},
            "completion_tokens_details": {"reasoning_tokens": REASONING},
        }
        base = {
            "id": "chatcmpl-1",
            "created": 1_700_000_000,
            "model": body["model"],
            "system_fingerprint": "fp",
        }
        if not body.get("stream"):
            payload = {
                **base,
                "object": "chat.completion",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "".join(WORDS)},
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            }
            data = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        chunk = {**base, "object": "chat.completion.chunk"}
        for i, word in enumerate(WORDS):
            delta = {"role": "assistant", "content": word} if i == 0 else {"content": word}
            self._event({**chunk, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
        self._event({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            self._event({**chunk, "choices": [], "usage": usage})
        self.wfile.write(b"data: [DONE]\n\n")

    def _event(self, payload: dict[str, Any]) -> None:
        self.wfile.write(b"data: " + json.dumps(payload).encode() + b"\n\n")
        self.wfile.flush()


@pytest.fixture
def openai_url() -> Iterator[str]:
    FakeOpenAI.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def expected_cost() -> int:
    price = calc_price(
        Usage(input_tokens=PROMPT_TOKENS, output_tokens=COMPLETION, cache_read_tokens=CACHED),
        "gpt-4o-mini",
        provider_id="openai",
    ).total_price
    return micro_usd(price)


def guard_for(clock: FakeClock, **limits: Any) -> Guardian:
    budget = {"name": "daily", "scope": "user", "window": "day", "limits": limits}
    policy = Policy.from_dict({"version": 1, "budgets": [budget]})
    return Guardian(policy, store="memory://", clock=clock)


@pytest.mark.parametrize("streaming", [False, True])
def test_chat_openai_usage_is_charged_at_genai_prices_price(openai_url: str, clock: FakeClock, streaming: bool) -> None:
    """Both invoke and stream: tokens as the provider reported them, cost as genai-prices prices gpt-4o-mini."""
    guard = guard_for(clock, cost_usd=1)
    model = ChatOpenAI(
        model="gpt-4o-mini",
        api_key="sk-test",
        base_url=openai_url,
        max_tokens=100,
        max_retries=0,
        stream_usage=True,
    )
    config: Any = {"callbacks": [guard.callback(agent="oa")]}
    if streaming:
        text = "".join(str(c.content) for c in model.stream("Hello there", config=config))
    else:
        text = str(model.invoke("Hello there", config=config).content)
    assert text == "".join(WORDS)
    (row,) = guard.status()
    assert (row.spent.input_tokens, row.spent.output_tokens) == (PROMPT_TOKENS, COMPLETION)
    assert row.spent.cost_usd == expected_cost()
    assert row.reserved.cost_usd == 0
    assert len(FakeOpenAI.requests) == 1
    guard.close()


def test_chat_openai_is_never_called_past_the_budget(openai_url: str, clock: FakeClock) -> None:
    """The refused call does not reach the provider: the server sees only the calls within budget."""
    guard = guard_for(clock, llm_calls=2)
    model = ChatOpenAI(
        model="gpt-4o-mini", api_key=SecretStr("sk-test"), base_url=openai_url, max_completion_tokens=100, max_retries=0
    )
    handler = guard.callback()
    model.invoke("one", config={"callbacks": [handler]})
    model.invoke("two", config={"callbacks": [handler]})
    with pytest.raises(BudgetExceeded):
        model.invoke("three", config={"callbacks": [handler]})
    assert len(FakeOpenAI.requests) == 2
    guard.close()


def test_output_cap_is_read_from_chat_openai(openai_url: str, clock: FakeClock) -> None:
    """The reservation uses ChatOpenAI's max_tokens (sent as max_completion_tokens), not the policy default."""
    guard = guard_for(clock, output_tokens=150)
    model = ChatOpenAI(
        model="gpt-4o-mini", api_key=SecretStr("sk-test"), base_url=openai_url, max_completion_tokens=100, max_retries=0
    )
    handler = guard.callback()
    model.invoke("one", config={"callbacks": [handler]})  # reserves 100, uses 60
    with pytest.raises(BudgetExceeded) as caught:
        model.invoke("two", config={"callbacks": [handler]})  # 60 spent + 100 reserved > 150
    assert (caught.value.spent, caught.value.requested) == (60, 100)
    guard.close()


def test_a_stream_without_usage_is_estimated_and_says_why_once(openai_url: str, clock: FakeClock) -> None:
    """ChatOpenAI streaming without stream_usage=True (as behind many proxies): the server sends no usage, so the
    call is charged an estimate and usage_estimated says so as a warning with the fix, once per model; later
    calls log it at info."""
    from structlog.testing import capture_logs

    guard = guard_for(clock, cost_usd=1)
    model = ChatOpenAI(model="gpt-4o-mini", api_key=SecretStr("sk-test"), base_url=openai_url, max_retries=0)
    config: Any = {"callbacks": [guard.callback(agent="oa")]}
    with capture_logs() as logs:
        for _ in range(2):
            assert "".join(str(c.content) for c in model.stream("Hello there", config=config)) == "".join(WORDS)
    events = [e for e in logs if e["event"] == "usage_estimated"]
    assert [e["log_level"] for e in events] == ["warning", "info"]
    assert "stream_usage=True" in events[0]["hint"]
    assert all(e["streamed"] for e in events)
    (row,) = guard.status()
    assert row.spent.llm_calls == 2
    assert row.spent.output_tokens > 0  # the estimate, from the streamed text
    guard.close()
