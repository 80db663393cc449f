"""Shared fixtures: a real Redis (never skipped) under a key prefix of the test's own."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis
import structlog

REDIS_URL = os.environ.get("GUARDIAN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(autouse=True)
def _structlog_defaults() -> Iterator[None]:
    """A test that runs the CLI (an application, which configures structlog) must not leak that config."""
    yield
    structlog.reset_defaults()


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The Redis the test command started or reached; failing here is a real failure, not a skip."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:  # pragma: no cover - environment problem
        pytest.fail(f"no Redis at {REDIS_URL} ({exc}); run the tests with scripts/test, which provides one")
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
def key_prefix(redis_url: str) -> Iterator[str]:
    """A prefix of this test's own; its keys are deleted afterwards (a shared Redis is never flushed)."""
    prefix = f"guardian-test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
