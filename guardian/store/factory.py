"""Open a store from a URL: ``memory://`` or a Redis URL."""

from __future__ import annotations

import re
from typing import Any

from guardian.errors import StoreError
from guardian.store.base import Store
from guardian.store.memory import MemoryStore

__all__ = ["open_store", "redact_text", "redact_url"]

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:(//)?")
_SECRET_PARAM = re.compile(r"(?i)([?&;][^=&;#]*(?:password|passwd|pwd|secret|token)[^=&;#]*=)([^&;#]*)")


def redact_url(url: str) -> str:
    """``url`` safe to show: the password of the user info and secret query parameters become ``***``.

    Everything up to the last ``@`` after the scheme counts as user info (a password may hold an unencoded
    ``@`` or ``/``); a user name before the first ``:`` stays readable, a lone user info is hidden whole.
    """
    scheme = _SCHEME.match(url)
    start = scheme.end() if scheme else 0
    at = url.rfind("@", start)
    if at != -1:
        user, colon, _password = url[start:at].partition(":")
        url = url[:start] + (f"{user}:***" if colon else "***") + url[at:]
    return _SECRET_PARAM.sub(r"\1***", url)


def redact_text(text: str, url: str) -> str:
    """``text`` (say, a driver's error message about ``url``) with every secret of ``url`` replaced by ``***``."""
    scheme = _SCHEME.match(url)
    start = scheme.end() if scheme else 0
    at = url.rfind("@", start)
    secrets = [m.group(2) for m in _SECRET_PARAM.finditer(url)]
    if at != -1:
        user, colon, password = url[start:at].partition(":")
        secrets.append(password if colon else user)
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def open_store(url: str | None, **redis_options: Any) -> Store:
    if url is None or url in ("", "memory://", "memory"):
        return MemoryStore()
    if url.startswith(("redis://", "rediss://", "unix://")):
        from guardian.store.redis import RedisStore

        return RedisStore.from_url(url, **redis_options)
    raise StoreError(f"unsupported store URL {redact_url(url)!r}: use memory:// or redis://, rediss://, unix://")
