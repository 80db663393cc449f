"""A password in a store URL never appears in an error message."""

from __future__ import annotations

import pytest

from guardian.errors import StoreError
from guardian.store import RedisStore, open_store
from guardian.store.factory import redact_url

BAD_PORT = [
    "redis://user:s3cret@host:notaport/0",
    "redis://:s3cret@host:notaport/0",
    "rediss://user:s3cret@host:notaport",
    "redis://user:s3cret@ho@st:notaport/0",  # an unencoded '@' in the password
    "redis://host:notaport/0?password=s3cret",
]
UNSUPPORTED = [
    "http://user:s3cret@host:6379/0",
    "postgres://admin:s3cret@db/ledger",
    "redis+sentinel://:s3cret@host:26379/mymaster",
    "localhost:s3cret@host",  # no '//', still credentials before an '@'
    "valkey://host/0?password=s3cret&db=0",
]


@pytest.mark.parametrize("url", BAD_PORT)
def test_invalid_redis_url_error_hides_the_password(url: str) -> None:
    """RedisStore.from_url and open_store say the URL is invalid without echoing its password."""
    for opener in (RedisStore.from_url, open_store):
        with pytest.raises(StoreError, match="invalid Redis URL") as caught:
            opener(url)
        assert "s3cret" not in str(caught.value)
        assert caught.value.__cause__ is None or "s3cret" not in str(caught.value.__cause__)


@pytest.mark.parametrize("url", UNSUPPORTED)
def test_unsupported_store_url_error_hides_the_password(url: str) -> None:
    """open_store refuses an unknown scheme without echoing a password found in the URL."""
    with pytest.raises(StoreError, match="unsupported store URL") as caught:
        open_store(url)
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://user:s3cret@host:6379/0", "redis://user:***@host:6379/0"),
        ("redis://:s3cret@host/0", "redis://:***@host/0"),
        ("rediss://s3cret@host", "rediss://***@host"),
        ("unix://:s3cret@/run/redis.sock?db=1", "unix://:***@/run/redis.sock?db=1"),
        ("redis://host/0?db=0&password=s3cret", "redis://host/0?db=0&password=***"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ],
)
def test_redact_url_keeps_everything_but_the_secrets(url: str, shown: str) -> None:
    """Host, port, database and user name stay readable; the password becomes ***."""
    assert redact_url(url) == shown
