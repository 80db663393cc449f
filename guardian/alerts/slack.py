"""The Slack sink: Block Kit messages through slack-sdk, with retries whose sleeps are injectable.

``format_blocks`` is pure, so tests (ours and yours) can assert the exact payload.
Every value that comes from a policy or a run is escaped for Slack's mrkdwn: ``&``, ``<`` and ``>``
become entities, a zero-width space follows every ``@`` (so ``@channel`` stays text even with
``link_names``), and names (agent, user, tenant, run, budget, scope key) are set in inline code so
``*bold*`` or backticks in a name cannot restyle the message. An agent named ``<!channel>`` or
``@here`` pings no one. Commands keep names copyable: a name with ``@`` or a backtick is written
in ANSI-C shell quoting (``$'\\x40here'`` is ``@here`` in bash or zsh).
"""

from __future__ import annotations

import shlex
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator
from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.http_retry.interval_calculator import RetryIntervalCalculator
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web import WebClient
from slack_sdk.webhook import WebhookClient

from guardian.alerts._model import Alert, AlertDeliveryError
from guardian.alerts.config import AlertsConfig, SlackConfig
from guardian.amounts import DISPLAY_ORDER, METRIC_TITLES, format_amount

__all__ = [
    "SlackSink",
    "build_retry_handlers",
    "escape_mrkdwn",
    "escape_value",
    "format_amount",
    "format_blocks",
    "format_mention",
    "format_name",
    "format_text",
    "send_test_alert",
]

Sleep = Callable[[float], None]

_KILL_TARGETS = ("run", "agent", "user", "tenant")
_ZWSP = "\u200b"  # after '@' so Slack never reads a mention: '@here' shows as '@here', pings no one
_SHELL_HEX = frozenset("@`")  # written as \xHH in a command, so they never reach Slack as such
_SPECIAL_MENTIONS = {"here": "<!here>", "channel": "<!channel>", "everyone": "<!everyone>"}
_HEADER_MAX = 150  # Slack's limit for a header's plain text
_TEXT_MAX = 2900  # a section's text may hold 3000 characters
_FIELD_MAX = 1900  # a field, or a context element, may hold 2000
_MICRO_USD = Decimal(1_000_000)
# Answers from chat.postMessage that another attempt may fix; every other error is permanent.
_RETRYABLE_API_ERRORS = frozenset(
    {"ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)


# --------------------------------------------------------------------------- formatting


def escape_mrkdwn(text: str) -> str:
    """Slack's three control characters; everything else is shown as written."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape_value(text: str) -> str:
    """Text from a run or a policy in mrkdwn: ``escape_mrkdwn``, and no ``@`` Slack could read as a mention."""
    return escape_mrkdwn(text).replace("@", "@" + _ZWSP)


def format_name(name: str) -> str:
    """A name (agent, user, tenant, run id, budget, scope key) in inline code: no mention, no styling. A
    backtick would end the code span, so it is shown as 'ˋ'; line breaks become spaces."""
    return "`" + escape_value(" ".join(name.replace("`", "ˋ").splitlines())) + "`"


def _plain(text: str) -> str:
    """A name in a ``plain_text`` object (the header): never markup, and no '@' or '<' read as a mention."""
    return text.replace("@", "@" + _ZWSP).replace("<", "<" + _ZWSP)


def format_mention(mention: str | None) -> str | None:
    """``@here``/``@channel``/``@everyone`` become Slack's special mentions; ``<@U…>`` and
    ``<!subteam^S…>`` (a user group) pass through; any other text is shown as is."""
    if mention is None or not mention.strip():
        return None
    mention = mention.strip()
    special = _SPECIAL_MENTIONS.get(mention.lstrip("@!").lower())
    if special is not None:
        return special
    if mention.startswith(("<@", "<!")) and mention.endswith(">"):
        return mention
    return escape_mrkdwn(mention)


def _percent(fraction: float) -> str:
    return f"{fraction * 100:g}%"


def _needs_hex(ch: str) -> bool:
    return ch in _SHELL_HEX or ord(ch) < 0x20 or ch == "\x7f"


def _quote_arg(value: str) -> str:
    """A shell argument for a command shown in inline code: copied, it names exactly ``value``."""
    if not any(map(_needs_hex, value)):
        return escape_mrkdwn(shlex.quote(value))
    quoted = "".join(f"\\x{ord(ch):02x}" if _needs_hex(ch) else "\\" + ch if ch in "\\'" else ch for ch in value)
    return escape_mrkdwn(f"$'{quoted}'")  # bash and zsh read \xHH inside $'...'


def _metrics(alert: Alert) -> list[str]:
    shown = alert.limit if alert.limit else alert.spent
    known = [m for m in DISPLAY_ORDER if m in shown]
    return known + sorted(m for m in shown if m not in DISPLAY_ORDER)


def _usage_line(alert: Alert, metric: str) -> str:
    spent = alert.spent.get(metric, 0)
    limit = alert.limit.get(metric)
    if limit is None:
        return format_amount(metric, spent)
    line = f"{format_amount(metric, spent)} of {format_amount(metric, limit)}"
    if limit > 0:
        line += f" ({spent * 100 // limit}%)"
    return line


def _title(alert: Alert) -> tuple[str, str, str | None]:
    """(emoji, what happened, about what)."""
    if alert.kind == "threshold":
        what = "Budget threshold passed" if alert.threshold is None else f"Budget at {_percent(alert.threshold)}"
        return ":warning:", what, alert.budget
    if alert.kind == "exceeded":
        return ":rotating_light:", "Budget exceeded", alert.budget
    if alert.kind == "killed":
        # A kill names what it stops: a run, or every run of an agent, a user or a tenant.
        target = alert.scope if alert.scope in _KILL_TARGETS else "run"
        subject = alert.run_id if target == "run" else alert.scope_key
        return ":octagonal_sign:", f"{target.capitalize()} killed", subject
    if alert.kind == "loop":
        return ":repeat:", "Loop detected", alert.run_id or alert.agent
    if alert.kind == "granted":
        return ":heavy_plus_sign:", "Budget granted", alert.budget
    return ":white_check_mark:", "Guardian test alert", None


def _headline(alert: Alert) -> str:
    emoji, what, subject = _title(alert)
    text = f"{emoji} {what}" + (f": {_plain(subject)}" if subject else "")
    return text if len(text) <= _HEADER_MAX else text[: _HEADER_MAX - 1] + "…"


def _summary(alert: Alert) -> str:
    budget = f"Budget {format_name(alert.budget)}" if alert.budget else "A budget"
    run = f"Run {format_name(alert.run_id)}" if alert.run_id else "A run"
    if alert.kind == "threshold":
        share = "a threshold" if alert.threshold is None else _percent(alert.threshold)
        return f"{budget} has used {share} of its limit."
    if alert.kind == "exceeded":
        return f"{budget} has reached its limit."
    if alert.kind == "killed":
        if alert.scope in ("agent", "user", "tenant") and alert.scope_key is not None:
            target = f"{alert.scope} {format_name(alert.scope_key)}"
            if alert.run_id is not None:
                return f"{run} was halted: {target} is killed."
            where = f" in tenant {format_name(alert.tenant)}" if alert.tenant and alert.scope != "tenant" else ""
            return f"Every run of {target}{where} is halted at its next call."
        return f"{run} was halted."
    if alert.kind == "loop":
        return f"{run} is repeating itself without making progress."
    if alert.kind == "granted":
        return f"{budget} was given more room by an operator."
    return "This is a test alert from Guardian: Slack alerts are set up correctly."


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _field(label: str, value: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": _clip(f"*{label}*\n{value}", _FIELD_MAX)}


def _who_fields(alert: Alert) -> list[dict[str, Any]]:
    fields: list[dict[str, Any]] = []
    names = (("Agent", alert.agent), ("User", alert.user), ("Tenant", alert.tenant), ("Run", alert.run_id))
    for label, value in (*names, ("Budget", alert.budget)):
        if value is not None:
            fields.append(_field(label, format_name(value)))
    if alert.scope is not None:
        scope = escape_value(alert.scope)
        if alert.scope_key is not None:
            scope += f" {format_name(alert.scope_key)}"
        fields.append(_field("Scope", scope))
    if alert.window is not None:
        fields.append(_field("Window", escape_value(alert.window)))
    return fields


def _kill_args(target: str, value: str, tenant: str | None) -> str:
    """``--user alice --tenant acme``: an agent or user is killed in its tenant only when it has one."""
    args = f"--{target} {_quote_arg(value)}"
    if target in ("agent", "user") and tenant is not None:
        args += f" --tenant {_quote_arg(tenant)}"
    return args


def _kill_target(alert: Alert) -> tuple[str, str] | None:
    """What `guardian kill` should stop: the loop's run, else what the budget is scoped to."""
    if alert.kind == "loop" and alert.run_id is not None:
        return "run", alert.run_id
    if alert.scope in _KILL_TARGETS and alert.scope_key is not None:
        return alert.scope, alert.scope_key
    for target, value in (("run", alert.run_id), ("agent", alert.agent), ("user", alert.user)):
        if value is not None:
            return target, value
    if alert.tenant is not None:
        return "tenant", alert.tenant
    return None


def _commands(alert: Alert) -> list[str]:
    if alert.kind == "test":
        return []
    commands: list[str] = []
    if alert.budget is not None:
        commands.append(f"Inspect: `guardian status --budget {_quote_arg(alert.budget)}`")
    if alert.kind == "killed":
        if alert.scope in _KILL_TARGETS and alert.scope_key is not None:
            commands.append(f"Undo: `guardian kill {_kill_args(alert.scope, alert.scope_key, alert.tenant)} --clear`")
        elif alert.run_id is not None:
            commands.append(f"Undo: `guardian kill --run {_quote_arg(alert.run_id)} --clear`")
        return commands
    target = _kill_target(alert)
    if target is not None:
        commands.append(f"Stop it: `guardian kill {_kill_args(*target, alert.tenant)}`")
    return commands


def _when(alert: Alert) -> str:
    moment = datetime.fromtimestamp(alert.occurred_at, tz=UTC)
    fallback = moment.strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"Guardian · <!date^{int(alert.occurred_at)}^{{date_short_pretty}} {{time_secs}}|{fallback}>"


def format_blocks(alert: Alert, mention: str | None = None) -> list[dict[str, Any]]:
    """The Block Kit message for an alert: what happened, who and what it concerns, how much,
    why, and the commands to inspect and act. Holds no prompt or completion text."""
    mention_markup = format_mention(mention)
    summary = _summary(alert)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _headline(alert), "emoji": True}},
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": f"{mention_markup} {summary}" if mention_markup else summary},
        },
    ]
    who = _who_fields(alert)
    if who:
        blocks.append({"type": "section", "fields": who})
    suffix = "" if alert.limit else " so far"
    usage = [_field(METRIC_TITLES.get(m, m) + suffix, _usage_line(alert, m)) for m in _metrics(alert)]
    if usage:
        blocks.append({"type": "section", "fields": usage[:10]})
    if alert.reason:
        label = "Loop signal" if alert.kind == "loop" else "Reason"
        quoted = "\n".join(f">{line}" for line in escape_value(alert.reason).splitlines())
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _clip(f"*{label}*\n{quoted}", _TEXT_MAX)}})
    if alert.action_hint:
        hint = _clip(f"*What to do*\n{escape_value(alert.action_hint)}", _TEXT_MAX)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": hint}})
    context = [{"type": "mrkdwn", "text": _clip(c, _FIELD_MAX)} for c in _commands(alert)]
    context.append({"type": "mrkdwn", "text": _when(alert)})
    blocks.append({"type": "context", "elements": context})
    return blocks


def format_text(alert: Alert, mention: str | None = None) -> str:
    """The plain-text fallback Slack shows in notifications and where blocks cannot render."""
    _emoji, what, subject = _title(alert)
    parts = [format_mention(mention), f"{what}: {escape_value(subject)}." if subject else f"{what}."]
    if alert.reason:
        parts.append(_clip(escape_value(" ".join(alert.reason.split())), 300))
    return " ".join(p for p in parts if p)


# --------------------------------------------------------------------------- retries


def _retry_after(headers: Mapping[str, Any] | None) -> float | None:
    """Seconds from a Retry-After header (header values may be strings or lists of strings)."""
    for name, values in (headers or {}).items():
        if str(name).lower() == "retry-after":
            raw = values[0] if isinstance(values, list) else values
            try:
                return max(0.0, float(raw))
            except (TypeError, ValueError):
                return None
    return None


class _InjectedSleep(RetryHandler):
    """Backs off through an injected ``sleep`` (slack-sdk sleeps for real), so tests never wait."""

    sleep: Sleep

    def prepare_for_next_attempt(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        state.next_attempt_requested = True
        self.sleep(self.interval_calculator.calculate_sleep_duration(state.current_attempt))
        state.increment_current_attempt()


class _ConnectionRetry(_InjectedSleep, ConnectionErrorRetryHandler):
    """Connection refused/reset before Slack saw the request: safe to resend."""

    def __init__(self, max_retry_count: int, interval_calculator: RetryIntervalCalculator, sleep: Sleep) -> None:
        ConnectionErrorRetryHandler.__init__(
            self, max_retry_count=max_retry_count, interval_calculator=interval_calculator
        )
        self.sleep = sleep


class _ServerErrorRetry(_InjectedSleep, ServerErrorRetryHandler):
    """Any 5xx (slack-sdk's own handler only covers 500 and 503)."""

    def __init__(self, max_retry_count: int, interval_calculator: RetryIntervalCalculator, sleep: Sleep) -> None:
        ServerErrorRetryHandler.__init__(self, max_retry_count=max_retry_count, interval_calculator=interval_calculator)
        self.sleep = sleep

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        return response is not None and 500 <= response.status_code < 600


class _RateLimitRetry(RateLimitErrorRetryHandler):
    """429: wait as long as Retry-After says, if that is at most ``max_wait_s``; a longer wait
    is left to the dispatcher, which schedules the retry without holding the worker."""

    def __init__(self, max_retry_count: int, sleep: Sleep, max_wait_s: float) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.sleep = sleep
        self.max_wait_s = max_wait_s

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or response.status_code != 429:
            return False
        wait = _retry_after(response.headers)
        return wait is None or wait <= self.max_wait_s

    def prepare_for_next_attempt(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        state.next_attempt_requested = True
        wait = _retry_after(response.headers if response is not None else None)
        self.sleep(1.0 if wait is None else wait)
        state.increment_current_attempt()


def build_retry_handlers(
    *,
    max_retries: int = 2,
    backoff: RetryIntervalCalculator | None = None,
    sleep: Sleep = time.sleep,
    max_retry_after_s: float = 30.0,
) -> list[RetryHandler]:
    """slack-sdk retry handlers for connection errors, 5xx and 429 (honouring Retry-After)."""
    interval = backoff if backoff is not None else BackoffRetryIntervalCalculator(backoff_factor=0.5)
    return [
        _ConnectionRetry(max_retries, interval, sleep),
        _RateLimitRetry(max_retries, sleep, max_retry_after_s),
        _ServerErrorRetry(max_retries, interval, sleep),
    ]


# --------------------------------------------------------------------------- the sink


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/…"


def _status_error(what: str, status: int, body: str, retry_after_s: float | None) -> AlertDeliveryError:
    retryable = status == 429 or status >= 500
    detail = _clip(" ".join(body.split()), 200) or "(empty body)"
    return AlertDeliveryError(
        f"Slack {what} answered HTTP {status}: {detail}", retryable=retryable, retry_after_s=retry_after_s
    )


class SlackSink:
    """Posts alerts to Slack: to an incoming webhook, or with ``chat.postMessage`` (token + channel).

    ``send`` blocks for at most ``timeout_s`` per attempt plus the retries' sleeps, which go
    through ``sleep`` (inject a fake in tests). It raises ``AlertDeliveryError`` on failure.
    """

    def __init__(
        self,
        config: SlackConfig,
        *,
        name: str = "slack",
        max_retries: int = 2,
        backoff: RetryIntervalCalculator | None = None,
        sleep: Sleep = time.sleep,
        max_retry_after_s: float = 30.0,
    ) -> None:
        self.name = name
        self.config = config
        handlers = build_retry_handlers(
            max_retries=max_retries, backoff=backoff, sleep=sleep, max_retry_after_s=max_retry_after_s
        )
        self._webhook: WebhookClient | None = None
        self._web: WebClient | None = None
        # slack-sdk annotates timeout as int; urllib takes any float.
        timeout: Any = config.timeout_s
        if config.webhook_url is not None:
            self._webhook = WebhookClient(
                url=config.webhook_url.get_secret_value(), timeout=timeout, retry_handlers=handlers
            )
        else:
            assert config.token is not None  # guaranteed by SlackConfig's validation
            self._web = WebClient(
                token=config.token.get_secret_value(),
                base_url=config.api_url or WebClient.BASE_URL,
                timeout=timeout,
                retry_handlers=handlers,
            )

    @property
    def destination(self) -> str:
        """Where messages go, safe to print (a webhook URL is a secret)."""
        if self._webhook is not None:
            return f"incoming webhook {_redacted(self._webhook.url)}"
        return f"channel {self.config.channel}"

    def send(self, alert: Alert) -> None:
        self.post(alert)

    def post(self, alert: Alert) -> Mapping[str, Any]:
        """Send one alert; returns what Slack answered (``{"ok": True, ...}``)."""
        blocks = format_blocks(alert, self.config.mention)
        text = format_text(alert, self.config.mention)
        try:
            if self._webhook is not None:
                return self._post_webhook(text, blocks)
            return self._post_message(text, blocks)
        except AlertDeliveryError:
            raise
        except Exception as exc:  # timeouts, refused connections, DNS: all worth another try later
            raise AlertDeliveryError(
                f"could not reach Slack ({self.destination}): {type(exc).__name__}: {exc}"
            ) from exc

    def _post_webhook(self, text: str, blocks: list[dict[str, Any]]) -> Mapping[str, Any]:
        assert self._webhook is not None
        body = {"text": text, "blocks": blocks, "unfurl_links": False, "unfurl_media": False}
        response = self._webhook.send_dict(body)
        if response.status_code == 200 and response.body.strip() == "ok":
            return {"ok": True}
        retry_after = _retry_after(response.headers)
        raise _status_error("incoming webhook", response.status_code, response.body, retry_after)

    def _post_message(self, text: str, blocks: list[dict[str, Any]]) -> Mapping[str, Any]:
        assert self._web is not None
        assert self.config.channel is not None
        try:
            response = self._web.chat_postMessage(
                channel=self.config.channel,
                text=text,
                blocks=blocks,
                unfurl_links=False,
                unfurl_media=False,
                link_names=True,
            )
        except SlackApiError as exc:
            status = int(exc.response.status_code)
            error = exc.response.get("error") if isinstance(exc.response.data, dict) else None
            retry_after = _retry_after(exc.response.headers)
            retryable = status == 429 or status >= 500 or error in _RETRYABLE_API_ERRORS
            raise AlertDeliveryError(
                f"Slack chat.postMessage to {self.config.channel} failed: HTTP {status}, error {error or 'unknown'}",
                retryable=retryable,
                retry_after_s=retry_after,
            ) from exc
        data = response.data
        return data if isinstance(data, dict) else {"ok": True}


def send_test_alert(config: AlertsConfig, *, clock: Callable[[], float] = time.time) -> str:
    """Send one test message synchronously and say where it went; raises ``AlertDeliveryError``."""
    if config.slack is None:
        raise AlertDeliveryError("no Slack destination: add alerts.slack to the policy", retryable=False)
    sink = SlackSink(config.slack)
    alert = Alert(
        kind="test",
        dedup_key=f"test:{uuid.uuid4().hex}",
        dedup_ttl_s=None,
        occurred_at=clock(),
        reason="Sent from the Guardian CLI to check the Slack setup.",
    )
    answer = sink.post(alert)
    where = sink.destination
    if "ts" in answer:
        where += f" (message ts {answer['ts']})"
    kinds = ", ".join(config.on) or "no kinds"
    return f"Sent a test alert to {where}. Alerts enabled for: {kinds}."
