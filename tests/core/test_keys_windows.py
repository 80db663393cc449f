"""Key building/parsing and calendar windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from guardian.keys import BucketKey, KeyBuilder
from guardian.windows import window_span


def ts(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, tz: str = "UTC") -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=ZoneInfo(tz)).timestamp()


@pytest.mark.parametrize(
    "bucket",
    [
        BucketKey("acme", "daily", "user", "alice", "2026-11-23"),
        BucketKey(None, "global-cap", "global", "*", "2026-11"),
        BucketKey("acme", "hourly", "user", "alice", "2026-04-05T01:30+1030"),  # a part-hour window's id
        BucketKey("a:b{c}", "we:ird", "user", "x%41:y", "run"),
        BucketKey("", "b", "user", "", "run"),
    ],
)
def test_bucket_keys_round_trip(bucket: BucketKey) -> None:
    """Every bucket key parses back to the parts it was built from, whatever the names contain."""
    keys = KeyBuilder("guardian:")
    assert keys.parse_bucket(keys.bucket(bucket)) == bucket


def test_names_cannot_collide_or_change_the_hash_slot() -> None:
    """Escaping keeps separators and braces out of segments: distinct names give distinct keys, one tag."""
    keys = KeyBuilder()
    a = keys.bucket(BucketKey("acme", "x:y", "user", "z", "run"))
    b = keys.bucket(BucketKey("acme", "x", "user", "y:z", "run"))
    assert a != b
    tenant_tagged = keys.bucket(BucketKey("ev}il{", "b", "user", "u", "run"))
    assert tenant_tagged.count("{") == 1
    assert tenant_tagged.count("}") == 1


def test_prefix_may_not_carry_a_hash_tag() -> None:
    """A brace in the prefix would move every key's slot: refused."""
    with pytest.raises(ValueError, match="prefix"):
        KeyBuilder("bad{prefix}:")


def test_day_windows_follow_the_zone_including_dst() -> None:
    """A Paris day starts at local midnight; the DST day of October is 25 hours long."""
    paris = ZoneInfo("Europe/Paris")
    span = window_span("day", paris, ts(2026, 10, 25, 12, tz="Europe/Paris"))
    assert span.id == "2026-10-25"
    assert span.start == ts(2026, 10, 25, tz="Europe/Paris")
    assert span.end is not None
    assert span.start is not None
    assert span.end - span.start == 25 * 3600
    just_before = window_span("day", paris, ts(2026, 11, 18, 22, 59, 59))
    just_after = window_span("day", paris, ts(2026, 11, 18, 23, 0, 0))
    assert (just_before.id, just_after.id) == ("2026-11-18", "2026-11-19")


def test_week_month_and_hour_windows() -> None:
    """ISO weeks start Monday; months roll at local midnight of the 1st; hours carry their offset."""
    ny = ZoneInfo("America/New_York")
    week = window_span("week", ny, ts(2026, 11, 25, 12, tz="America/New_York"))
    assert week.id == "2026-W48"
    assert week.start == ts(2026, 11, 23, tz="America/New_York")
    month = window_span("month", ny, ts(2026, 12, 1, 4, 59))  # still November in New York
    assert month.id == "2026-11"
    assert month.end == ts(2026, 12, 1, tz="America/New_York")
    first = window_span("hour", ny, ts(2026, 11, 1, 1, 30, tz="America/New_York"))
    assert first.end is not None
    assert first.start is not None
    assert first.end - first.start == 3600
    assert window_span("hour", ZoneInfo("UTC"), datetime(2026, 1, 1, 5, 59, tzinfo=UTC).timestamp()).id.startswith(
        "2026-01-01T05"
    )
    assert window_span("run", ny, 0.0).end is None


def _transitions(tz: ZoneInfo, year: int) -> list[int]:
    """UTC instants (to the minute) where the zone's offset changes during ``year``."""
    found = []
    t = ts(year, 1, 1)
    end = ts(year + 1, 1, 1)
    while t < end:
        if _offset(tz, t) != _offset(tz, t + 3600):
            found.append(next(m for m in range(int(t), int(t) + 3660, 60) if _offset(tz, m) != _offset(tz, t)))
        t += 3600
    return found


def _offset(tz: ZoneInfo, t: float) -> timedelta | None:
    return datetime.fromtimestamp(t, tz).utcoffset()


@pytest.mark.parametrize("zone", ["Australia/Lord_Howe", "Pacific/Chatham", "Europe/Paris", "America/New_York"])
def test_hour_windows_partition_time_across_dst_transitions(zone: str) -> None:
    """Around every 2026 DST change, each minute lies in its hour window, windows last at most an hour,
    follow each other without gap or overlap, and one id names one real period."""
    tz = ZoneInfo(zone)
    transitions = _transitions(tz, 2026)
    assert len(transitions) == 2
    periods: dict[str, tuple[float, float]] = {}
    for transition in transitions:
        for minute in range(int(transition) - 3 * 3600, int(transition) + 3 * 3600, 60):
            now = minute + 59.5 if minute % 120 else minute  # a fraction of a second goes the same way
            span = window_span("hour", tz, now)
            assert span.start is not None
            assert span.end is not None
            assert span.start <= now < span.end, (zone, now, span)
            assert 0 < span.end - span.start <= 3600
            assert window_span("hour", tz, span.end).start == span.end  # the next window starts where this ends
            assert window_span("hour", tz, span.start - 1).end == span.start  # and the previous ends where it starts
            assert periods.setdefault(span.id, (span.start, span.end)) == (span.start, span.end)
    assert len(set(periods.values())) == len(periods)
    lengths = {end - start for start, end in periods.values()}
    # Whole-hour DST changes keep whole hours (and the ids' old form); Lord Howe's 30 minutes cut two.
    assert lengths == ({1800.0, 3600.0} if zone == "Australia/Lord_Howe" else {3600.0})
    assert all(":" in i for i, (start, end) in periods.items() if end - start != 3600)


def test_lord_howe_half_hour_fall_back_is_its_own_window() -> None:
    """Lord Howe turns 02:00 (+11) back to 01:30 (+10:30): the repeated half hour is a window of its own,
    not the earlier 01:00 hour's bucket, and the next window starts at 02:00 +10:30."""
    tz = ZoneInfo("Australia/Lord_Howe")
    before = window_span("hour", tz, ts(2026, 4, 4, 14, 50))  # 01:50 +11
    repeat = window_span("hour", tz, ts(2026, 4, 4, 15, 15))  # 01:45 +10:30
    after = window_span("hour", tz, ts(2026, 4, 4, 15, 40))  # 02:10 +10:30
    assert (before.id, before.start, before.end) == ("2026-04-05T01+1100", ts(2026, 4, 4, 14), ts(2026, 4, 4, 15))
    assert (repeat.id, repeat.start, repeat.end) == (
        "2026-04-05T01:30+1030",
        ts(2026, 4, 4, 15),
        ts(2026, 4, 4, 15, 30),
    )
    assert (after.id, after.start, after.end) == ("2026-04-05T02+1030", ts(2026, 4, 4, 15, 30), ts(2026, 4, 4, 16, 30))


def test_chatham_hours_start_at_quarter_past_utc() -> None:
    """Chatham's :45 offsets put local hours at :15 UTC; its whole-hour DST change keeps that, so the hour
    spanning the change stays one window of an hour, named by where it starts."""
    tz = ZoneInfo("Pacific/Chatham")
    # 2026-04-05: 03:45 +13:45 becomes 02:45 +12:45 at 14:00 UTC the day before.
    before = window_span("hour", tz, ts(2026, 4, 4, 13, 50))  # 03:35 +13:45
    after = window_span("hour", tz, ts(2026, 4, 4, 14, 10))  # 02:55 +12:45
    assert before == after
    assert (before.id, before.start, before.end) == (
        "2026-04-05T03+1345",
        ts(2026, 4, 4, 13, 15),
        ts(2026, 4, 4, 14, 15),
    )
    assert window_span("hour", tz, ts(2026, 4, 4, 14, 20)).id == "2026-04-05T03+1245"


def test_a_prefix_without_its_separator_gets_one() -> None:
    """--prefix eco keys as eco:{...}, the same as eco: (never eco{...})."""
    assert KeyBuilder("eco").kill("agent", "bot").startswith("eco:{")
    assert KeyBuilder("eco").kill("agent", "bot") == KeyBuilder("eco:").kill("agent", "bot")
    assert KeyBuilder("").kill("agent", "bot").startswith("{")


@pytest.mark.parametrize("run_id", ["01a2-run", "with:colon", "spaces and %", ""])
def test_a_run_bucket_template_builds_the_same_key_as_bucket(run_id: str) -> None:
    """The supervisor builds run bucket keys from a template per identity; it must equal the full builder."""
    from guardian.keys import escape

    keys = KeyBuilder("p:")
    head, tail = keys.run_bucket_template("acme", "per run")
    assert head + escape(run_id) + tail == keys.bucket(BucketKey("acme", "per run", "run", run_id, "run"))


def test_a_grant_key_parses_back_to_its_bucket_and_metric() -> None:
    keys = KeyBuilder("p:")
    bucket = keys.bucket(BucketKey("acme", "daily spend", "user", "al:ice", "2026-12-02"))
    assert keys.parse_grant(keys.grant(bucket, "cost_usd")) == (bucket, "cost_usd")
    with pytest.raises(ValueError, match="not a grant key"):
        keys.parse_grant(bucket)
