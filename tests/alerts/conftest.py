"""A stand-in Slack on 127.0.0.1 (incoming webhook and Web API), and alert/dispatcher factories."""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from guardian.alerts import Alert, AlertDispatcher, AlertSink, SlackConfig
from guardian.keys import KeyBuilder
from guardian.store.memory import MemoryStore

WEBHOOK_PATH = "/services/T000/B000/secretpath"
API_PATH = "/api/chat.postMessage"
TOKEN = "xoxb-test-token"
CHANNEL = "#finops-alerts"
HOLD_LIMIT_S = 10.0  # a held request never outlives a test by more than this


@dataclass
class Reply:
    """One scripted answer. ``hold`` makes the server wait for the event before answering."""

    status: int = 200
    body: str | None = None  # None: Slack's success answer for the endpoint
    headers: dict[str, str] = field(default_factory=dict)
    hold: threading.Event | None = None


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    raw: bytes
    body: dict[str, Any]


class FakeSlack:
    """Records every request; answers from a script, then with success. A request counts as
    ``delivered`` when the server answers it with success (as Slack would post it)."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self.requests: list[Received] = []
        self.delivered: list[Received] = []
        self._script: deque[Reply] = deque()
        self._holds: list[threading.Event] = []
        self.always: Reply | None = None  # answer every request with this (Slack down)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                fake._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.webhook_url = self.base_url + WEBHOOK_PATH
        self.api_url = self.base_url + "/api/"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    token = TOKEN
    channel = CHANNEL
    webhook_path = WEBHOOK_PATH

    def answer(
        self,
        status: int = 200,
        *,
        body: str | None = None,
        headers: dict[str, str] | None = None,
        hold: threading.Event | None = None,
        times: int = 1,
    ) -> None:
        """Script the next ``times`` answers (after those already scripted)."""
        reply = Reply(status, body, headers or {}, hold)
        with self._lock:
            self._script.extend([reply] * times)
            if hold is not None:
                self._holds.append(hold)

    def go_down(self, status: int = 500) -> None:
        """Answer every request with ``status`` from now on."""
        self.always = Reply(status)

    def wait_for_requests(self, count: int, timeout_s: float = 5.0) -> bool:
        with self._lock:
            return self._lock.wait_for(lambda: len(self.requests) >= count, timeout=timeout_s)

    def close(self) -> None:
        with self._lock:
            holds = list(self._holds)
        for hold in holds:
            hold.set()
        self.server.shutdown()
        self.server.server_close()

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        raw = handler.rfile.read(int(handler.headers.get("Content-Length", "0")))
        body = json.loads(raw) if raw else {}
        received = Received(handler.path, dict(handler.headers.items()), raw, body)
        with self._lock:
            self.requests.append(received)
            reply = self.always or (self._script.popleft() if self._script else Reply())
            self._lock.notify_all()
        if reply.hold is not None:
            reply.hold.wait(HOLD_LIMIT_S)
        status, answer = self._answer(received, reply)
        if status == 200 and _is_success(answer):
            # Recorded before answering: the client may act on the answer at once.
            with self._lock:
                self.delivered.append(received)
                self._lock.notify_all()
        try:
            handler.send_response(status)
            content_type = "text/html" if received.path == WEBHOOK_PATH else "application/json"
            handler.send_header("Content-Type", f"{content_type}; charset=utf-8")
            for name, value in reply.headers.items():
                handler.send_header(name, value)
            encoded = answer.encode()
            handler.send_header("Content-Length", str(len(encoded)))
            handler.end_headers()
            handler.wfile.write(encoded)
        except OSError:  # the client gave up waiting (a hang test)
            pass

    def _answer(self, received: Received, reply: Reply) -> tuple[int, str]:
        if reply.body is not None:
            return reply.status, reply.body
        if received.path == WEBHOOK_PATH:
            return reply.status, "ok" if reply.status == 200 else "server_error"
        if received.path != API_PATH:
            return 404, json.dumps({"ok": False, "error": "unknown_method"})
        if received.headers.get("Authorization") != f"Bearer {TOKEN}":
            return 200, json.dumps({"ok": False, "error": "invalid_auth"})
        if received.body.get("channel") != CHANNEL:
            return 200, json.dumps({"ok": False, "error": "channel_not_found"})
        if reply.status != 200:
            return reply.status, json.dumps({"ok": False, "error": "internal_error"})
        return 200, json.dumps({"ok": True, "channel": "C0123", "ts": "1700000000.000100"})


def _is_success(answer: str) -> bool:
    if answer == "ok":
        return True
    try:
        return json.loads(answer).get("ok") is True
    except ValueError:
        return False


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    """A Slack stand-in on 127.0.0.1; every held request is released at teardown."""
    server = FakeSlack()
    yield server
    server.close()


@pytest.fixture
def webhook_config(fake_slack: FakeSlack) -> SlackConfig:
    return SlackConfig.model_validate({"webhook_url": fake_slack.webhook_url, "timeout_s": 2})


@pytest.fixture
def api_config(fake_slack: FakeSlack) -> SlackConfig:
    return SlackConfig.model_validate(
        {"token": TOKEN, "channel": CHANNEL, "api_url": fake_slack.api_url, "timeout_s": 2}
    )


def build_alert(**overrides: Any) -> Alert:
    fields: dict[str, Any] = {
        "kind": "exceeded",
        "dedup_key": "exceeded:user-daily:user:alice:2026-01-05",
        "dedup_ttl_s": 3600.0,
        "occurred_at": 1_767_600_000.0,  # 2026-01-05 08:00:00 UTC
        "run_id": "run-7f3a",
        "agent": "support-bot",
        "user": "alice",
        "tenant": "acme",
        "budget": "user-daily",
        "scope": "user",
        "scope_key": "alice",
        "window": "day:2026-01-05",
        "threshold": None,
        "spent": {"cost_usd": 1_250_000, "total_tokens": 123_456},
        "limit": {"cost_usd": 1_000_000, "total_tokens": 100_000},
        "reason": "budget 'user-daily' would pass its cost_usd limit",
    }
    fields.update(overrides)
    return Alert(**fields)


@pytest.fixture
def make_alert() -> Callable[..., Alert]:
    """Build an alert: an exceeded user-daily budget unless overridden."""
    return build_alert


DispatcherFactory = Callable[..., AlertDispatcher]


@pytest.fixture
def make_dispatcher() -> Iterator[DispatcherFactory]:
    """Dispatchers over a MemoryStore with fast retries; each is closed at teardown."""
    made: list[AlertDispatcher] = []

    def make(sinks: Sequence[AlertSink], **options: Any) -> AlertDispatcher:
        options.setdefault("store", MemoryStore())
        options.setdefault("keys", KeyBuilder("guardian-test:"))
        options.setdefault("retry_base_s", 0.01)
        options.setdefault("retry_max_s", 0.05)
        dispatcher = AlertDispatcher(sinks, **options)
        made.append(dispatcher)
        return dispatcher

    yield make
    for dispatcher in made:
        dispatcher.close(timeout_s=0)
