"""Key building/parsing and calendar windows."""

from __future__ import annotations

from datetime import UTC, datetime
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
