"""Budget windows: the run's lifetime, or calendar periods in a named timezone.

A window is identified by a string (``2026-11-23`` for a day) and bounded by UTC
instants computed from local wall-clock boundaries, so DST days are 23 or 25 hours.
Windows of one kind and zone never overlap, leave no gap, and always contain ``now``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

__all__ = ["WindowKind", "WindowSpan", "window_span"]

WindowKind = Literal["run", "lifetime", "hour", "day", "week", "month"]


@dataclass(frozen=True, slots=True)
class WindowSpan:
    """``end`` is None for the run and lifetime windows, which last as long as their run or thread."""

    id: str
    start: float | None
    end: float | None


def window_span(kind: WindowKind, tz: ZoneInfo, now: float) -> WindowSpan:
    if kind == "run":
        return WindowSpan("run", None, None)
    if kind == "lifetime":  # a conversation's whole life: it ends when the thread goes unused (thread_ttl_s)
        return WindowSpan("life", None, None)
    if kind == "hour":
        return _hour_span(tz, now)
    local = datetime.fromtimestamp(now, tz)
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


def _hour_span(tz: ZoneInfo, now: float) -> WindowSpan:
    """The local clock hour holding ``now``, cut where a DST change moves the clock by a part of an hour.

    Truncating the local time to the hour is wrong when the clock moves by 30 or 45 minutes (Lord Howe
    turns 02:00 +11 back to 01:30 +10:30): local 01:45 +10:30 truncates to 01:00, an instant of the
    previous offset, an hour before ``now``. So work in UTC instead. Local hours begin where
    ``utc + offset`` is a whole hour, i.e. at UTC instants congruent to ``-offset`` modulo one hour: only
    the offset's *phase* (``offset % 3600``) matters. While the phase holds, windows are the hours aligned
    to it; a window ends early, or starts late, at a change of phase, so the repeated half hour of Lord
    Howe's fall-back is a window of its own (30 minutes), and so is 02:30-03:00 after its spring-forward
    skips 02:00-02:30. Whole-hour changes keep the phase (Chatham moves from +13:45 to +12:45, Paris from +2
    to +1), so their hours stay whole. Every window thus contains ``now``, lasts at most an hour, and
    borders the next one exactly. Checking only the window's two ends is enough because tzdata has no
    two offset changes less than two hours apart (checked over every zone's transitions).

    The id is the local wall clock at the window's start, with its offset, so the two 01:00s of a
    fall-back are two ids and distinct windows (distinct starts) never share one; minutes appear only for
    a window that starts off the hour.
    """
    second = math.floor(now)  # tzdata changes offsets on whole seconds
    phase = _offset(tz, second) % 3600
    start = (second + phase) // 3600 * 3600 - phase
    end = start + 3600

    def in_phase(t: int) -> bool:
        return _offset(tz, t) % 3600 == phase

    if not in_phase(start):
        start = _first(in_phase, start, second)
    if not in_phase(end - 1):
        end = _first(lambda t: not in_phase(t), second, end - 1)
    local = datetime.fromtimestamp(start, tz)
    clock = "%H" if local.minute == local.second == 0 else ("%H:%M" if local.second == 0 else "%H:%M:%S")
    return WindowSpan(local.strftime(f"%Y-%m-%dT{clock}%z"), float(start), float(end))


def _offset(tz: ZoneInfo, t: int) -> int:
    offset = datetime.fromtimestamp(t, tz).utcoffset()
    assert offset is not None  # a ZoneInfo always has one
    return int(offset.total_seconds())


def _first(holds: Callable[[int], bool], lo: int, hi: int) -> int:
    """The first second in ``(lo, hi]`` where ``holds`` becomes true (false at ``lo``, true at ``hi``)."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if holds(mid):
            hi = mid
        else:
            lo = mid
    return hi
