"""The contract suite runs every test against every store."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from guardian.keys import KeyBuilder
from guardian.store import MemoryStore, RedisStore, Store


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def store_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def keys(store_kind: str, request: pytest.FixtureRequest) -> KeyBuilder:
    if store_kind == "redis":
        prefix: str = request.getfixturevalue("key_prefix")
        return KeyBuilder(prefix)
    return KeyBuilder("guardian-test:")


@pytest.fixture
def store(store_kind: str, keys: KeyBuilder, request: pytest.FixtureRequest) -> Iterator[Store]:
    if store_kind == "memory":
        memory = MemoryStore()
        yield memory
        memory.close()
        return
    url: str = request.getfixturevalue("redis_url")
    redis_store = RedisStore.from_url(url)
    yield redis_store
    redis_store.close()
