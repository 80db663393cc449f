"""The spend history: one compact record per committed call, cache hit, halt and recorded outcome.

Records are appended by the engine to the store (a Redis Stream per tenant for the fleet, a bounded log in the
embedded store) and read back by ``guardian report`` and ``Guardian.report()``. A record holds names, ids, counts
and micro-dollars, never prompt or completion text. On the wire it is compact JSON with short keys, defaults left
out, so a call costs ~150 bytes of history.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any, Literal

__all__ = ["KINDS", "Kind", "UsageRecord"]

Kind = Literal["call", "cache_hit", "halt", "would_halt", "outcome"]
KINDS: tuple[str, ...] = ("call", "cache_hit", "halt", "would_halt", "outcome")

# Field -> its key on the wire. Keys are part of the stored format: never reuse one for another meaning.
_WIRE = {
    "kind": "k",
    "run": "r",
    "agent": "a",
    "user": "u",
    "tenant": "n",
    "tags": "tg",
    "thread": "th",
    "model": "m",
    "provider": "p",
    "input_tokens": "i",
    "output_tokens": "o",
    "cache_read_tokens": "cr",
    "cache_write_tokens": "cw",
    "reasoning_tokens": "rs",
    "cost_micro_usd": "c",
    "saved_micro_usd": "s",
    "cache_read_saved_micro_usd": "crs",
    "cache_write_premium_micro_usd": "cwp",
    "prefix": "px",
    "rule": "ru",
    "cacheable_micro_usd": "cb",
    "flags": "f",
    "reason": "why",
    "detail": "d",
    "success": "ok",
    "value_micro_usd": "v",
}
_FIELD = {wire: name for name, wire in _WIRE.items()}


@dataclass(slots=True)  # not frozen: one is built per committed call, and a frozen one costs twice as much to build
class UsageRecord:
    """One event of the spend history.

    ``call``: a committed model call (tokens by kind, ``cost_micro_usd``; ``flags`` such as ``estimated`` when the
    provider reported no usage). ``cache_hit``: a call answered from LangChain's cache (``saved_micro_usd``).
    ``halt``: a run stopped (``reason`` is the halt's type, ``detail`` the budget or loop signal); ``would_halt``:
    the same, in shadow mode, where the run went on. ``outcome``:
    what a run achieved (``success``, ``value_micro_usd``), recorded by the application.
    """

    kind: Kind
    time: float
    run: str
    agent: str = ""
    user: str = ""
    tenant: str = ""
    tags: tuple[str, ...] = ()  # the run's tags, so that replay matches budgets on tags
    thread: str | None = None
    model: str = ""
    provider: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost_micro_usd: int = 0
    saved_micro_usd: int = 0
    cache_read_saved_micro_usd: int = 0  # what prompt-cache reads saved against the input price
    cache_write_premium_micro_usd: int = 0  # what prompt-cache writes cost above the input price
    prefix: str = ""  # a digest of the call's stable prompt prefix (system prompt and tools), never the text
    cacheable_micro_usd: int = 0  # what reading that prefix from the provider's cache would have saved
    rule: str = ""  # the routing rule that sent the call to its model (or would have, in shadow mode)
    flags: tuple[str, ...] = ()
    reason: str = ""
    detail: str = ""
    success: bool | None = None
    value_micro_usd: int = 0

    def to_payload(self) -> str:
        """The record without its time (the history keeps that), defaults left out."""
        out: dict[str, Any] = {}
        for name, wire in _ENCODED:
            value = getattr(self, name)
            # Every default is empty (0, "", (), None) but `success`, whose False is a value: a truth test suffices.
            if value or (value is False and name == "success"):
                out[wire] = list(value) if type(value) is tuple else value
        return _encode(out)

    @classmethod
    def from_payload(cls, time: float, payload: str) -> UsageRecord | None:
        """The record, or None for a payload this version cannot read (a newer writer's kind, a damaged entry)."""
        try:
            raw = json.loads(payload)
            values = {_FIELD[k]: v for k, v in raw.items() if k in _FIELD}
            if values.get("kind") not in KINDS:
                return None
            for name in ("flags", "tags"):
                if name in values:
                    values[name] = tuple(str(f) for f in values[name])
            return cls(time=time, **values)
        except (ValueError, TypeError, AttributeError):
            return None

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


# (field, wire key) of every field but the time, worked out once: a record is encoded on every call.
_ENCODED = tuple((f.name, _WIRE[f.name]) for f in fields(UsageRecord) if f.name != "time")
if any(f.default not in (0, "", (), None) for f in fields(UsageRecord) if f.name not in ("kind", "time", "run")):
    raise ImportError("UsageRecord.to_payload leaves out empty values: every default must be empty")
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
