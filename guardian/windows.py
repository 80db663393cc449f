"""Budget windows: the run's lifetime, or calendar periods in a named timezone.

A window is identified by a string (``2026-11-23`` for a day) and bounded by UTC
instants computed from local wall-clock boundaries, so DST days are 23 or 25 hours.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

__all__ = ["WindowKind", "WindowSpan", "window_span"]

WindowKind = Literal["run", "hour", "day", "week", "month"]


@dataclass(frozen=True, slots=True)
class WindowSpan:
    """``end`` is None for the run window, which lasts as long as the run."""

    id: str
    start: float | None
    end: float | None


def window_span(kind: WindowKind, tz: ZoneInfo, now: float) -> WindowSpan:
    if kind == "run":
        return WindowSpan("run", None, None)
    local = datetime.fromtimestamp(now, tz)
    if kind == "hour":
        # The offset in the id keeps the repeated hour of a DST fall-back as two windows.
        start = local.replace(minute=0, second=0, microsecond=0)
        start_ts = start.timestamp()
        return WindowSpan(start.strftime("%Y-%m-%dT%H%z"), start_ts, start_ts + 3600)
    if kind == "day":
        day = local.date()
        return WindowSpan(
            day.isoformat(),
            _local_midnight(day, tz).timestamp(),
            _local_midnight(day + timedelta(days=1), tz).timestamp(),
        )
    if kind == "week":
        monday = local.date() - timedelta(days=local.weekday())
        iso = monday.isocalendar()
        return WindowSpan(
            f"{iso.year}-W{iso.week:02d}",
            _local_midnight(monday, tz).timestamp(),
            _local_midnight(monday + timedelta(days=7), tz).timestamp(),
        )
    if kind == "month":
        first = local.date().replace(day=1)
        nxt = (first + timedelta(days=32)).replace(day=1)
        return WindowSpan(
            first.strftime("%Y-%m"),
            _local_midnight(first, tz).timestamp(),
            _local_midnight(nxt, tz).timestamp(),
        )
    raise ValueError(f"unknown window kind {kind!r}")


def _local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=tz)
