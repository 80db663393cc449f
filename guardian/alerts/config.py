"""The ``alerts:`` section of a policy, validated at the edge.

``${ENV}`` interpolation happens in the policy loader before these models see the
values; an empty string left by an unset variable counts as "not set".
"""

from __future__ import annotations

import re
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

__all__ = ["DEFAULT_ALERT_KINDS", "AlertsConfig", "EnabledKind", "SlackConfig"]

EnabledKind = Literal["threshold", "exceeded", "killed", "loop", "granted"]
DEFAULT_ALERT_KINDS: tuple[EnabledKind, ...] = ("threshold", "exceeded", "killed", "loop", "granted")


# What Slack turns into a notification: special mentions (bare or in Slack's own syntax), user groups and users.
_PINGS = re.compile(
    r"@?(?:here|channel|everyone)|<!(?:here|channel|everyone)>|<!subteam\^[A-Z0-9]+(?:\|[^>]*)?>|<@[UW][A-Z0-9]+>"
)


class SlackConfig(BaseModel):
    """Where Slack alerts go: an incoming webhook, or a bot token and a channel."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    webhook_url: SecretStr | None = None
    token: SecretStr | None = None
    channel: str | None = None
    mention: str | None = None
    api_url: str | None = None
    timeout_s: float = Field(default=5.0, ge=0.5, le=120)  # below half a second Slack's own latency times out

    @field_validator("webhook_url", "token", "channel", "mention", "api_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value.strip() if isinstance(value, str) else value

    @field_validator("mention")
    @classmethod
    def _mention_pings(cls, value: str | None) -> str | None:
        # Slack pings only what it can resolve: special mentions and ids. "@oncall-ml" typed as text is shown as
        # text and notifies nobody, which an on-call rotation would find out the night it mattered.
        if value is None or _PINGS.fullmatch(value):
            return value
        raise ValueError(
            f"Slack does not notify anyone for {value!r}: use @here, @channel, @everyone, a user group's id "
            "<!subteam^S0123ABCD> (Slack: the group's profile, Copy group ID) or a user's id <@U0123ABCD>"
        )

    @field_validator("webhook_url")
    @classmethod
    def _webhook_is_http(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().lower().startswith(("https://", "http://")):
            raise ValueError("webhook_url must be an http(s) URL, e.g. https://hooks.slack.com/services/...")
        return value

    @field_validator("api_url")
    @classmethod
    def _api_url_is_http(cls, value: str | None) -> str | None:
        if value is not None and not value.lower().startswith(("https://", "http://")):
            raise ValueError("api_url must be an http(s) URL, e.g. https://slack.com/api/")
        return value

    @model_validator(mode="after")
    def _one_destination(self) -> Self:
        if self.webhook_url is not None:
            if self.token is not None or self.channel is not None:
                raise ValueError(
                    "set either webhook_url, or token and channel, not both: an incoming webhook "
                    "posts to the channel it was created for"
                )
            if self.api_url is not None:
                raise ValueError("api_url applies to token and channel only; a webhook_url is already a full URL")
            return self
        if self.token is not None and self.channel is None:
            raise ValueError("token is set but channel is not: chat.postMessage needs a channel, e.g. '#alerts'")
        if self.channel is not None and self.token is None:
            raise ValueError("channel is set but token is not: posting to a channel needs a bot token (xoxb-...)")
        if self.token is None:
            raise ValueError(
                "no Slack destination: set webhook_url, or token and channel "
                "(an environment variable used for one of them may be unset or empty)"
            )
        return self

    @property
    def uses_webhook(self) -> bool:
        return self.webhook_url is not None


class AlertsConfig(BaseModel):
    """Which alerts go out and how the dispatcher queues them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    slack: SlackConfig | None = None
    on: tuple[EnabledKind, ...] = DEFAULT_ALERT_KINDS
    queue_size: int = Field(default=1000, ge=1, le=1_000_000)  # a bound on memory, so it is bounded itself
    flush_timeout_s: float = Field(default=5.0, ge=0, le=300, allow_inf_nan=False)  # how long close() may wait

    @model_validator(mode="before")
    @classmethod
    def _yaml_on_key(cls, data: Any) -> Any:
        # YAML 1.1 (PyYAML) reads a bare `on:` key as the boolean True.
        if isinstance(data, dict) and True in data and "on" not in data:
            data = {("on" if key is True else key): value for key, value in data.items()}
        return data

    @field_validator("on")
    @classmethod
    def _no_repeats(cls, value: tuple[EnabledKind, ...]) -> tuple[EnabledKind, ...]:
        return tuple(dict.fromkeys(value))
