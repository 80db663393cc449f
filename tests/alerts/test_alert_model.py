"""The Alert data and the alerts: configuration section."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from guardian.alerts import Alert, AlertsConfig, SlackConfig


def test_alert_owns_its_amounts(make_alert: Callable[..., Alert]) -> None:
    """An alert copies the amounts it is given, so a caller reusing its dicts cannot change an
    alert the worker thread has not delivered yet."""
    spent = {"cost_usd": 5}
    alert = make_alert(spent=spent)
    spent["cost_usd"] = 999
    assert alert.spent == {"cost_usd": 5}


def test_log_fields_are_flat(make_alert: Callable[..., Alert]) -> None:
    """to_log_fields flattens amounts into spent_<metric> and limit_<metric> next to the identities."""
    alert = make_alert(action_hint="raise the limit")
    assert alert.to_log_fields() == {
        "kind": "exceeded",
        "dedup_key": "exceeded:user-daily:user:alice:2026-01-05",
        "occurred_at": 1_767_600_000.0,
        "run_id": "run-7f3a",
        "agent": "support-bot",
        "user": "alice",
        "tenant": "acme",
        "budget": "user-daily",
        "scope": "user",
        "scope_key": "alice",
        "window": "day:2026-01-05",
        "threshold": None,
        "spent_cost_micro_usd": 1_250_000,
        "spent_total_tokens": 123_456,
        "limit_cost_micro_usd": 1_000_000,
        "limit_total_tokens": 100_000,
        "reason": "budget 'user-daily' would pass its cost_usd limit",
        "action_hint": "raise the limit",
    }


@pytest.mark.parametrize(
    ("override", "message"), [({"kind": "boom"}, "unknown alert kind"), ({"dedup_key": ""}, "dedup_key")]
)
def test_invalid_alerts_are_refused(override: dict[str, Any], message: str, make_alert: Callable[..., Alert]) -> None:
    """An unknown kind or an empty dedup key is a programming error, refused at construction."""
    with pytest.raises(ValueError, match=message):
        make_alert(**override)


# --------------------------------------------------------------------------- configuration


def test_full_yaml_section_loads() -> None:
    """The documented YAML section validates, including the bare `on:` key YAML 1.1 reads as True."""
    data = yaml.safe_load(
        """
        slack:
          webhook_url: https://hooks.slack.com/services/T/B/X
          mention: "<!subteam^S0123ABCD>"
          timeout_s: 3
        on: [exceeded, killed]
        queue_size: 10
        flush_timeout_s: 2
        """
    )
    config = AlertsConfig.model_validate(data)
    assert config.on == ("exceeded", "killed")
    assert config.slack is not None
    assert config.slack.uses_webhook
    assert config.slack.timeout_s == 3
    assert (config.queue_size, config.flush_timeout_s) == (10, 2)


@pytest.mark.parametrize(
    "mention",
    ["@here", "channel", "<!everyone>", "<!subteam^S0123ABCD>", "<!subteam^S01|@oncall-ml>", "<@U0123>", "<@W9>"],
)
def test_a_mention_slack_pings_is_accepted(mention: str) -> None:
    assert SlackConfig(webhook_url="https://hooks.slack.com/services/T/B/X", mention=mention).mention == mention


@pytest.mark.parametrize("mention", ["@oncall-ml", "oncall", "<@alice>", "<!subteam^>", "@here please"])
def test_a_mention_slack_would_not_ping_is_refused_with_the_fix(mention: str) -> None:
    """Text names notify nobody: refused, saying what Slack pings and where to find a group's id."""
    with pytest.raises(ValidationError, match=r"Slack does not notify anyone .* <!subteam\^S0123ABCD>"):
        SlackConfig(webhook_url="https://hooks.slack.com/services/T/B/X", mention=mention)


def test_defaults() -> None:
    """Without settings every kind alerts, the queue holds 1000 and close waits 5 s; Slack is off."""
    config = AlertsConfig()
    assert config.on == ("threshold", "exceeded", "killed", "loop", "granted")
    assert (config.slack, config.queue_size, config.flush_timeout_s) == (None, 1000, 5.0)


@pytest.mark.parametrize(
    "settings",
    [
        {"flush_timeout_s": float("inf")},
        {"flush_timeout_s": float("nan")},
        {"flush_timeout_s": 3600},
        {"queue_size": 10**9},
        {"slack": {"webhook_url": "https://hooks.slack.com/services/T/B/X", "timeout_s": 0.001}},
    ],
)
def test_unbounded_or_useless_alert_settings_are_refused(settings: dict[str, Any]) -> None:
    """close() must not wait forever, the queue bounds memory only if it is bounded itself, and a Slack timeout
    of a millisecond would fail every delivery: each is a validation error, not a surprise in production."""
    with pytest.raises(ValidationError):
        AlertsConfig.model_validate(settings)


def test_token_and_channel() -> None:
    """A bot token with a channel (and an optional API URL) is the other valid destination."""
    config = SlackConfig.model_validate({"token": "xoxb-1", "channel": "#a", "api_url": "http://127.0.0.1:9/api/"})
    assert not config.uses_webhook
    assert config.channel == "#a"


def test_secrets_are_not_shown() -> None:
    """Webhook URLs and tokens never appear in a config's repr (they end up in logs and tracebacks)."""
    webhook = SlackConfig.model_validate({"webhook_url": "https://hooks.slack.com/services/T/B/SECRET"})
    token = SlackConfig.model_validate({"token": "xoxb-SECRET", "channel": "#a"})
    assert "SECRET" not in repr(webhook)
    assert "SECRET" not in repr(token)


@pytest.mark.parametrize(
    ("slack", "message"),
    [
        ({"webhook_url": "https://h/x", "token": "xoxb-1", "channel": "#a"}, "either webhook_url, or token"),
        ({"token": "xoxb-1"}, "token is set but channel is not"),
        ({"channel": "#a"}, "channel is set but token is not"),
        ({"webhook_url": ""}, "no Slack destination"),
        ({"webhook_url": "  ", "token": ""}, "no Slack destination"),
        ({}, "no Slack destination"),
        ({"webhook_url": "hooks.slack.com/x"}, "must be an http"),
        ({"webhook_url": "https://h/x", "api_url": "https://slack.com/api/"}, "api_url applies to token"),
        ({"webhook_url": "https://h/x", "timeout_s": 0}, "greater than or equal to 0.5"),
        ({"webhook_url": "https://h/x", "colour": "red"}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_slack_settings(slack: dict[str, Any], message: str) -> None:
    """Each way to misconfigure Slack is refused with a message naming what to set; an empty value
    left by an unset ${ENV} counts as not set."""
    with pytest.raises(ValidationError, match=message):
        AlertsConfig.model_validate({"slack": slack})


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"on": ["exceeded", "test"]}, "on"),
        ({"queue_size": 0}, "greater than or equal to 1"),
        ({"slack_webhook": "https://h/x"}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_alerts_settings(section: dict[str, Any], message: str) -> None:
    """Unknown kinds, an empty queue and unknown keys are refused."""
    with pytest.raises(ValidationError, match=message):
        AlertsConfig.model_validate(section)
