"""Fixtures for supervisor and adapter tests: a Guardian on either store, a frozen clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from guardian import Guardian, testing
from guardian.store import RedisStore
from guardian.testing import FakeClock

T0 = 1_795_000_000.0  # 2026-11-18T08:26:40Z


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


GuardianFactory = Callable[..., Guardian]


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def make_guardian(request: pytest.FixtureRequest, clock: FakeClock) -> Iterator[GuardianFactory]:
    """Builds a Guardian from a policy dict on the parametrized store; closes them all afterwards."""
    made: list[Guardian] = []
    if request.param == "redis":
        # Set up before this fixture's body, so the prefix's keys are deleted after the guardians have closed
        # (closing flushes deferred commits, which would otherwise land after the cleanup).
        url: str = request.getfixturevalue("redis_url")
        prefix: str = request.getfixturevalue("key_prefix")

    def make(policy: dict[str, Any], **options: Any) -> Guardian:
        if request.param == "redis":
            options.setdefault("store", RedisStore.from_url(url))
            options.setdefault("key_prefix", prefix)
        options.setdefault("clock", clock)
        guard = testing.make_guardian(policy, **options)  # the helper users get from guardian.testing
        made.append(guard)
        return guard

    yield make
    for guard in made:
        guard.close()
