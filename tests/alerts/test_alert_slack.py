"""The Slack message (exact Block Kit payloads) and the Slack sink against a local Slack stand-in."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator

from guardian.alerts import Alert, AlertDeliveryError, AlertsConfig, SlackConfig, SlackSink, format_blocks
from guardian.alerts.slack import format_mention, format_text, send_test_alert
from guardian.amounts import format_amount
from guardian.errors import BudgetExceeded, GuardianError

if TYPE_CHECKING:
    from tests.alerts.conftest import FakeSlack

WHEN = "Guardian · <!date^1767600000^{date_short_pretty} {time_secs}|2026-01-05 08:00:00 UTC>"
WHO = [
    {"type": "mrkdwn", "text": "*Agent*\n`support-bot`"},
    {"type": "mrkdwn", "text": "*User*\n`alice`"},
    {"type": "mrkdwn", "text": "*Tenant*\n`acme`"},
    {"type": "mrkdwn", "text": "*Run*\n`run-7f3a`"},
    {"type": "mrkdwn", "text": "*Budget*\n`user-daily`"},
    {"type": "mrkdwn", "text": "*Scope*\nuser `alice`"},
    {"type": "mrkdwn", "text": "*Window*\nday:2026-01-05"},
]


def _header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": text, "emoji": True}}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _context(*texts: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": t} for t in texts]}


# --------------------------------------------------------------------------- exact payloads


def test_threshold_payload(make_alert: Callable[..., Alert]) -> None:
    """A threshold alert says which budget passed which share, who and where, spent vs limit per
    limited metric (USD in dollars and cents, tokens with separators), and the commands to act."""
    alert = make_alert(
        kind="threshold",
        threshold=0.8,
        spent={"cost_usd": 812_340, "total_tokens": 81_234},
        reason="budget user-daily passed 80% of its cost_usd limit",
    )
    assert format_blocks(alert, None) == [
        _header(":warning: Budget at 80%: user-daily"),
        _section("Budget `user-daily` has used 80% of its limit."),
        {"type": "section", "fields": WHO},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": "*Cost*\n$0.81234 of $1.00 (81%)"},
                {"type": "mrkdwn", "text": "*Total tokens*\n81,234 of 100,000 (81%)"},
            ],
        },
        _section("*Reason*\n>budget user-daily passed 80% of its cost_usd limit"),
        _context(
            "Inspect: `guardian status --budget user-daily`",
            "Stop it: `guardian kill --user alice --tenant acme`",
            WHEN,
        ),
    ]


def test_exceeded_payload_with_mention_and_halt_message(make_alert: Callable[..., Alert]) -> None:
    """An exceeded alert built from the real halt message carries only the alert's fields: the
    mention leads, the halt message is quoted as is, and nothing else is added."""
    halt = BudgetExceeded(
        budget="user-daily",
        scope="user",
        scope_key="alice",
        window="day:2026-01-05",
        unit="cost_usd",
        limit=1_000_000,
        spent=1_250_000,
        requested=40_000,
        run_id="run-7f3a",
    )
    alert = make_alert(reason=str(halt), action_hint="Raise the limit or wait for tomorrow.")
    assert not set("&<>\n") & set(str(halt))  # so the message is shown verbatim
    assert format_blocks(alert, "<!subteam^S0123>") == [
        _header(":rotating_light: Budget exceeded: user-daily"),
        _section("<!subteam^S0123> Budget `user-daily` has reached its limit."),
        {"type": "section", "fields": WHO},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": "*Cost*\n$1.25 of $1.00 (125%)"},
                {"type": "mrkdwn", "text": "*Total tokens*\n123,456 of 100,000 (123%)"},
            ],
        },
        _section("*Reason*\n>" + str(halt)),
        _section("*What to do*\nRaise the limit or wait for tomorrow."),
        _context(
            "Inspect: `guardian status --budget user-daily`",
            "Stop it: `guardian kill --user alice --tenant acme`",
            WHEN,
        ),
    ]


def test_an_operator_kill_is_headed_by_what_it_kills(make_alert: Callable[..., Alert]) -> None:
    """`guardian kill --user alice --tenant acme`: headed "User killed", saying every run of it stops."""
    alert = make_alert(
        kind="killed", budget=None, run_id=None, scope="user", scope_key="alice", window=None, spent={}, limit={}
    )
    blocks = format_blocks(alert)
    assert blocks[0] == _header(":octagonal_sign: User killed: alice")
    assert blocks[1] == _section("Every run of user `alice` in tenant `acme` is halted at its next call.")


def test_killed_payload(make_alert: Callable[..., Alert]) -> None:
    """A run halted by an agent kill: headed by what was killed, names the run, shows the kill target as its
    scope, and offers the undo command."""
    alert = make_alert(
        kind="killed",
        budget=None,
        scope="agent",
        scope_key="support-bot",
        window=None,
        spent={},
        limit={},
        reason="run halted: agent 'support-bot' was killed by an operator",
    )
    assert format_blocks(alert) == [
        _header(":octagonal_sign: Agent killed: support-bot"),
        _section("Run `run-7f3a` was halted: agent `support-bot` is killed."),
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": "*Agent*\n`support-bot`"},
                {"type": "mrkdwn", "text": "*User*\n`alice`"},
                {"type": "mrkdwn", "text": "*Tenant*\n`acme`"},
                {"type": "mrkdwn", "text": "*Run*\n`run-7f3a`"},
                {"type": "mrkdwn", "text": "*Scope*\nagent `support-bot`"},
            ],
        },
        _section("*Reason*\n>run halted: agent 'support-bot' was killed by an operator"),
        _context("Undo: `guardian kill --agent support-bot --tenant acme --clear`", WHEN),
    ]


def test_loop_payload(make_alert: Callable[..., Alert]) -> None:
    """A loop alert names the run, shows what the loop has cost so far and the loop signal, and
    offers to kill that run."""
    alert = make_alert(
        kind="loop",
        budget=None,
        scope=None,
        scope_key=None,
        window=None,
        spent={"total_tokens": 48_000, "cost_usd": 96_000, "llm_calls": 12},
        limit={},
        reason="tool call search_orders repeated 6 times\nwith identical results",
    )
    assert format_blocks(alert) == [
        _header(":repeat: Loop detected: run-7f3a"),
        _section("Run `run-7f3a` is repeating itself without making progress."),
        {"type": "section", "fields": WHO[:4]},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": "*Cost so far*\n$0.096"},
                {"type": "mrkdwn", "text": "*Total tokens so far*\n48,000"},
                {"type": "mrkdwn", "text": "*LLM calls so far*\n12"},
            ],
        },
        _section("*Loop signal*\n>tool call search_orders repeated 6 times\n>with identical results"),
        _context("Stop it: `guardian kill --run run-7f3a`", WHEN),
    ]


def test_text_fallback(make_alert: Callable[..., Alert]) -> None:
    """The plain-text fallback (what notifications show) leads with the mention, says what happened,
    and carries the reason on one line."""
    alert = make_alert(reason="budget 'user-daily' would pass\nits cost_usd limit")
    assert format_text(alert, "@here") == (
        "<!here> Budget exceeded: user-daily. budget 'user-daily' would pass its cost_usd limit"
    )


def test_values_from_runs_are_escaped(make_alert: Callable[..., Alert]) -> None:
    """Names from runs and policies cannot inject Slack markup such as a channel-wide ping."""
    alert = make_alert(agent="<!channel>", budget="a&b", scope_key="x y", reason="<@U999> did it")
    payload = json.dumps(format_blocks(alert))
    assert "<!channel>" not in payload
    assert "<@U999>" not in payload
    assert "&lt;!channel&gt;" in payload
    assert "guardian status --budget 'a&amp;b'" in payload
    assert "guardian kill --user 'x y'" in payload


Z = "\u200b"  # the zero-width space that follows every '@' from a name


def test_hostile_names_reach_slack_as_inert_text(
    fake_slack: FakeSlack, webhook_config: SlackConfig, make_alert: Callable[..., Alert]
) -> None:
    """Names that are Slack markup (`<!here>`, `<@U123>`), bare mentions (`@channel`, `@here`), styling
    (`*acme*`) or backticks are delivered as inert text, in every place a name appears: header, summary,
    fields, reason, hint, commands and the text fallback. Names sit in inline code; every '@' from a
    name is followed by a zero-width space; commands stay copyable ($'\\x40here' is '@here' in a shell)."""
    alert = make_alert(
        agent="@channel",
        user="<!here>",
        tenant="*acme*",
        run_id="run`x`",
        budget="<@U123> team",
        scope_key="@here",
        spent={"cost_usd": 1_250_000},
        limit={"cost_usd": 1_000_000},
        reason="budget '<@U123> team' of user '@here' would pass",
        action_hint="ask @channel",
    )
    SlackSink(webhook_config).send(alert)
    (request,) = fake_slack.delivered
    assert request.body == {
        "text": f"Budget exceeded: &lt;@{Z}U123&gt; team. budget '&lt;@{Z}U123&gt; team' of user '@{Z}here' would pass",
        "blocks": [
            _header(f":rotating_light: Budget exceeded: <{Z}@{Z}U123> team"),
            _section(f"Budget `&lt;@{Z}U123&gt; team` has reached its limit."),
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": f"*Agent*\n`@{Z}channel`"},
                    {"type": "mrkdwn", "text": "*User*\n`&lt;!here&gt;`"},
                    {"type": "mrkdwn", "text": "*Tenant*\n`*acme*`"},
                    {"type": "mrkdwn", "text": "*Run*\n`runˋxˋ`"},
                    {"type": "mrkdwn", "text": f"*Budget*\n`&lt;@{Z}U123&gt; team`"},
                    {"type": "mrkdwn", "text": f"*Scope*\nuser `@{Z}here`"},
                    {"type": "mrkdwn", "text": "*Window*\nday:2026-01-05"},
                ],
            },
            {"type": "section", "fields": [{"type": "mrkdwn", "text": "*Cost*\n$1.25 of $1.00 (125%)"}]},
            _section(f"*Reason*\n>budget '&lt;@{Z}U123&gt; team' of user '@{Z}here' would pass"),
            _section(f"*What to do*\nask @{Z}channel"),
            _context(
                "Inspect: `guardian status --budget $'&lt;\\x40U123&gt; team'`",
                "Stop it: `guardian kill --user $'\\x40here' --tenant '*acme*'`",
                WHEN,
            ),
        ],
        "unfurl_links": False,
        "unfurl_media": False,
    }
    raw = request.raw.decode()
    for mention in ("<!here>", "<!channel>", "<@U123>", "@here", "@channel"):
        assert mention not in json.loads(raw)["text"]
        assert mention not in json.dumps(request.body, ensure_ascii=False)


def test_a_run_id_with_a_backtick_stays_one_copyable_command(make_alert: Callable[..., Alert]) -> None:
    """A loop alert's command for a run id with a backtick or newline is one code span that, pasted into
    bash or zsh, names exactly that run."""
    alert = make_alert(kind="loop", budget=None, scope=None, scope_key=None, run_id="r`1\n2'")
    context = format_blocks(alert)[-1]["elements"][0]["text"]
    assert context == "Stop it: `guardian kill --run $'r\\x601\\x0a2\\''`"


def test_all_metrics_in_a_fixed_order(make_alert: Callable[..., Alert]) -> None:
    """Every limited metric is shown, cost first, then tokens, then calls; unlimited ones are not."""
    limit = {"llm_calls": 50, "input_tokens": 10, "output_tokens": 20, "tool_calls": 5, "total_tokens": 30}
    alert = make_alert(spent={"llm_calls": 3, "cost_usd": 9}, limit={**limit, "cost_usd": 2_000_000})
    usage = format_blocks(alert)[3]["fields"]
    assert [f["text"].split("\n")[0] for f in usage] == [
        "*Cost*",
        "*Total tokens*",
        "*Input tokens*",
        "*Output tokens*",
        "*LLM calls*",
        "*Tool calls*",
    ]
    assert usage[0]["text"] == "*Cost*\n$0.000009 of $2.00 (0%)"


@pytest.mark.parametrize(
    ("metric", "amount", "shown"),
    [
        ("cost_usd", 1_250_000, "$1.25"),
        ("cost_usd", 1_234_567_890, "$1,234.56789"),
        ("cost_usd", 2_000, "$0.002"),
        ("cost_usd", 240_523, "$0.240523"),
        ("cost_usd", 5_000, "$0.005"),
        ("cost_usd", 0, "$0.00"),
        ("total_tokens", 1_234_567, "1,234,567"),
        ("llm_calls", 7, "7"),
    ],
)
def test_amount_formatting(metric: str, amount: int, shown: str) -> None:
    """Micro-dollars show as whole cents when they are, else exact to the micro-dollar without trailing zeros
    (never rounded: $0.002, not $0.002000 or $0.00); counts get thousands separators. One format everywhere."""
    assert format_amount(metric, amount) == shown


@pytest.mark.parametrize(
    ("configured", "markup"),
    [
        ("@here", "<!here>"),
        ("@channel", "<!channel>"),
        ("<!subteam^S0123>", "<!subteam^S0123>"),
        ("<@U0123>", "<@U0123>"),
        ("@oncall-ml", "@oncall-ml"),
        ("", None),
        (None, None),
    ],
)
def test_mentions(configured: str | None, markup: str | None) -> None:
    """Special mentions become Slack markup, user and group ids pass through, other text stays text."""
    assert format_mention(configured) == markup


# --------------------------------------------------------------------------- the sink over HTTP


def test_webhook_sink_posts_blocks_and_text(
    fake_slack: FakeSlack, webhook_config: SlackConfig, make_alert: Callable[..., Alert]
) -> None:
    """The webhook sink posts exactly the blocks and the text fallback, with link unfurling off."""
    alert = make_alert()
    SlackSink(webhook_config).send(alert)
    assert len(fake_slack.delivered) == 1
    request = fake_slack.delivered[0]
    assert request.path == fake_slack.webhook_path
    assert request.body == {
        "text": format_text(alert),
        "blocks": format_blocks(alert),
        "unfurl_links": False,
        "unfurl_media": False,
    }


def test_api_sink_posts_to_channel_with_token(
    fake_slack: FakeSlack, api_config: SlackConfig, make_alert: Callable[..., Alert]
) -> None:
    """With token and channel the sink calls chat.postMessage at the configured API URL, as the bot."""
    alert = make_alert()
    config = api_config.model_copy(update={"mention": "@oncall-ml"})
    answer = SlackSink(config).post(alert)
    assert answer["ok"] is True
    request = fake_slack.delivered[0]
    assert request.path == "/api/chat.postMessage"
    assert request.headers["Authorization"] == f"Bearer {fake_slack.token}"
    assert request.body == {
        "channel": fake_slack.channel,
        "text": format_text(alert, "@oncall-ml"),
        "blocks": format_blocks(alert, "@oncall-ml"),
        "unfurl_links": False,
        "unfurl_media": False,
        "link_names": True,
    }


@pytest.mark.parametrize("style", ["webhook", "api"])
def test_server_errors_are_retried_with_injected_backoff(
    style: str,
    fake_slack: FakeSlack,
    webhook_config: SlackConfig,
    api_config: SlackConfig,
    make_alert: Callable[..., Alert],
) -> None:
    """5xx answers are retried inside the sink through slack-sdk's retry handlers; the backoff
    goes through the injected sleep, so nothing waits."""
    fake_slack.answer(500)
    fake_slack.answer(502)
    sleeps: list[float] = []
    config = webhook_config if style == "webhook" else api_config
    sink = SlackSink(config, sleep=sleeps.append, backoff=FixedValueRetryIntervalCalculator(0.25))
    sink.send(make_alert())
    assert len(fake_slack.requests) == 3
    assert len(fake_slack.delivered) == 1
    assert sleeps == [0.25, 0.25]


@pytest.mark.parametrize("style", ["webhook", "api"])
def test_rate_limit_honours_retry_after(
    style: str,
    fake_slack: FakeSlack,
    webhook_config: SlackConfig,
    api_config: SlackConfig,
    make_alert: Callable[..., Alert],
) -> None:
    """A 429 is retried after exactly the Retry-After the server sent."""
    fake_slack.answer(429, headers={"Retry-After": "3"})
    sleeps: list[float] = []
    config = webhook_config if style == "webhook" else api_config
    SlackSink(config, sleep=sleeps.append).send(make_alert())
    assert sleeps == [3.0]
    assert len(fake_slack.delivered) == 1


def test_long_retry_after_is_left_to_the_dispatcher(
    fake_slack: FakeSlack, webhook_config: SlackConfig, make_alert: Callable[..., Alert]
) -> None:
    """A Retry-After longer than the sink will sleep is raised as a retryable error carrying the
    wait, so the dispatcher schedules the retry instead of holding its worker."""
    fake_slack.answer(429, headers={"Retry-After": "120"})
    sleeps: list[float] = []
    with pytest.raises(AlertDeliveryError, match="HTTP 429") as caught:
        SlackSink(webhook_config, sleep=sleeps.append, max_retry_after_s=30).send(make_alert())
    assert caught.value.retryable
    assert caught.value.retry_after_s == 120.0
    assert sleeps == []


def test_exhausted_retries_raise_a_retryable_error(
    fake_slack: FakeSlack, api_config: SlackConfig, make_alert: Callable[..., Alert]
) -> None:
    """When the sink's own retries are spent on 5xx, it raises a retryable AlertDeliveryError."""
    fake_slack.go_down(503)
    with pytest.raises(AlertDeliveryError, match="HTTP 503") as caught:
        SlackSink(api_config, sleep=lambda _s: None, max_retries=1).send(make_alert())
    assert caught.value.retryable
    assert len(fake_slack.requests) == 2


@pytest.mark.parametrize(
    "case",
    [
        (404, "no_service", "incoming webhook answered HTTP 404: no_service"),
        (403, "action_prohibited", "HTTP 403: action_prohibited"),
        (200, "invalid_payload", "HTTP 200: invalid_payload"),
    ],
)
def test_webhook_rejections_are_permanent(
    case: tuple[int, str, str],
    fake_slack: FakeSlack,
    webhook_config: SlackConfig,
    make_alert: Callable[..., Alert],
) -> None:
    """A webhook answer other than 'ok' that retrying cannot fix raises a non-retryable error."""
    status, body, message = case
    fake_slack.answer(status, body=body)
    with pytest.raises(AlertDeliveryError, match=message) as caught:
        SlackSink(webhook_config).send(make_alert())
    assert not caught.value.retryable
    assert len(fake_slack.requests) == 1


def test_api_rejection_is_permanent(
    fake_slack: FakeSlack, api_config: SlackConfig, make_alert: Callable[..., Alert]
) -> None:
    """chat.postMessage answering ok=false (bad token) raises a clear, non-retryable error."""
    config = SlackConfig.model_validate({**api_config.model_dump(), "token": "xoxb-revoked"})
    with pytest.raises(AlertDeliveryError, match="error invalid_auth") as caught:
        SlackSink(config).send(make_alert())
    assert not caught.value.retryable


def test_unreachable_slack_is_a_retryable_error(make_alert: Callable[..., Alert]) -> None:
    """A refused connection (after the sink's retries) is a retryable AlertDeliveryError."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = SlackConfig.model_validate({"webhook_url": f"http://127.0.0.1:{port}/hook"})
    sleeps: list[float] = []
    with pytest.raises(AlertDeliveryError, match="could not reach Slack") as caught:
        SlackSink(config, sleep=sleeps.append, max_retries=1).send(make_alert())
    assert caught.value.retryable
    assert len(sleeps) == 1


# --------------------------------------------------------------------------- the CLI hook


def test_send_test_alert_by_webhook(fake_slack: FakeSlack, webhook_config: SlackConfig) -> None:
    """The CLI's test message is posted once and summarised without revealing the webhook's secret path."""
    summary = send_test_alert(AlertsConfig(slack=webhook_config), clock=lambda: 1_767_600_000.0)
    assert summary == (
        f"Sent a test alert to incoming webhook {fake_slack.base_url}/…. "
        "Alerts enabled for: threshold, exceeded, killed, loop, granted."
    )
    assert "secretpath" not in summary
    blocks = fake_slack.delivered[0].body["blocks"]
    assert blocks[0] == _header(":white_check_mark: Guardian test alert")
    assert blocks[1] == _section("This is a test alert from Guardian: Slack alerts are set up correctly.")


def test_send_test_alert_by_token(fake_slack: FakeSlack, api_config: SlackConfig) -> None:
    """With a bot token the summary names the channel and the message's timestamp."""
    summary = send_test_alert(AlertsConfig(slack=api_config, on=("exceeded",)))
    assert summary == (
        f"Sent a test alert to channel {fake_slack.channel} (message ts 1700000000.000100). "
        "Alerts enabled for: exceeded."
    )
    assert len(fake_slack.delivered) == 1


def test_send_test_alert_failures_are_guardian_errors(fake_slack: FakeSlack, api_config: SlackConfig) -> None:
    """No Slack configured, or Slack refusing, raises a GuardianError with a message a human can act on."""
    with pytest.raises(GuardianError, match=r"add alerts\.slack to the policy"):
        send_test_alert(AlertsConfig())
    wrong_channel = SlackConfig.model_validate(
        {**api_config.model_dump(), "token": fake_slack.token, "channel": "#nope"}
    )
    with pytest.raises(AlertDeliveryError, match="to #nope failed: HTTP 200, error channel_not_found"):
        send_test_alert(AlertsConfig(slack=wrong_channel))
