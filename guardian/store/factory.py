"""Open a store from a URL: ``memory://`` or a Redis URL."""

from __future__ import annotations

from typing import Any

from guardian.errors import StoreError
from guardian.store.base import Store
from guardian.store.memory import MemoryStore

__all__ = ["open_store"]


def open_store(url: str | None, **redis_options: Any) -> Store:
    if url is None or url in ("", "memory://", "memory"):
        return MemoryStore()
    if url.startswith(("redis://", "rediss://", "unix://")):
        from guardian.store.redis import RedisStore

        return RedisStore.from_url(url, **redis_options)
    raise StoreError(f"unsupported store URL {url!r}: use memory:// or redis://, rediss://, unix://")
