"""Alerts: tell the right humans, once, without making the agent wait.

The supervisor builds an ``Alert`` and calls ``AlertDispatcher.submit``; a background
worker deduplicates it fleet-wide through the store and delivers it to the sinks
(always the log, Slack when configured).
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from guardian.alerts._model import ALERT_KINDS, Alert, AlertDeliveryError, AlertKind
from guardian.alerts.config import AlertsConfig, SlackConfig
from guardian.alerts.dispatcher import AlertDispatcher, FlagStore
from guardian.alerts.sink import AlertSink, LogSink, RecordingSink
from guardian.keys import KeyBuilder

if TYPE_CHECKING:
    from guardian.alerts.slack import SlackSink, format_blocks, format_text, send_test_alert

# slack-sdk is loaded when Slack is used, not when a policy is read or an Alert is made.
_SLACK_NAMES = frozenset({"SlackSink", "format_blocks", "format_text", "send_test_alert"})


def __getattr__(name: str) -> Any:
    if name in _SLACK_NAMES:
        return getattr(importlib.import_module("guardian.alerts.slack"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ALERT_KINDS",
    "Alert",
    "AlertDeliveryError",
    "AlertDispatcher",
    "AlertKind",
    "AlertSink",
    "AlertsConfig",
    "FlagStore",
    "LogSink",
    "RecordingSink",
    "SlackConfig",
    "SlackSink",
    "build_dispatcher",
    "format_blocks",
    "format_text",
    "send_test_alert",
]


def build_dispatcher(
    config: AlertsConfig | None,
    *,
    store: FlagStore,
    keys: KeyBuilder,
    clock: Callable[[], float] = time.time,
    extra_sinks: Iterable[AlertSink] = (),
) -> AlertDispatcher:
    """A dispatcher for a policy's ``alerts:`` section: the log sink always, Slack when configured."""
    config = config if config is not None else AlertsConfig()
    sinks: list[AlertSink] = [LogSink()]
    if config.slack is not None:
        from guardian.alerts.slack import SlackSink

        sinks.append(SlackSink(config.slack))
    sinks.extend(extra_sinks)
    return AlertDispatcher(
        sinks,
        store=store,
        keys=keys,
        clock=clock,
        queue_size=config.queue_size,
        flush_timeout_s=config.flush_timeout_s,
        enabled_kinds=config.on,
    )
