"""Loop detection: notice an agent going in circles within a few repetitions.

Pure and incremental: no I/O and no clock. One :class:`LoopDetector` holds the state of
one run and is not thread-safe: the caller holds a lock around :meth:`LoopDetector.observe`.

The unit of judgement is the **turn**: one model call and the results of the tool calls it
requested. The question for every turn is whether the model's *input* brought anything new
since it last acted. A prompt message is news when its key (text with volatile tokens
masked, requested tool calls; ids and role dropped) was never read before in this run. A
model's own reply read back is news the first time, unless it repeats an earlier reply, in
which case it never is. The run's *epoch* advances with every model call that read news, and
repeats count only within an epoch: identical output for new input (a map over distinct
items answered "positive" each time) is work, not a loop. Node updates are state, not
input; they name the node that called the model and decide nothing.

Volatile tokens are masked everywhere (UUIDs, ISO dates and times, clock times, epoch
timestamps, hex ids, long random tokens); ordinary numbers are kept, so "step 8 of 25" is
news after "step 7 of 25". A failed call's text has every number masked.

Four signals:

``repeated_tool_call``
    the same requested calls got the same results ``max_tool_repeats`` times (a poll may see
    "pending" three times and go on), or failed the same way ``max_repeats`` times.
``repeated_output``
    ``max_repeats`` near-identical text replies: the same numbers and the same words but for
    at most ``1 - similarity`` of them edited (three at most), filler ("sorry", "again") aside.
``cycle``
    a block of 2 to 6 different turns repeated back to back within one epoch (A B A B A, or
    two full rounds of a longer block): planner/executor ping-pong, rotations, supervisors
    handing the same task back and forth. Across channels: a turn is a reply *and* its results.
``no_progress``
    ``max_steps_without_progress`` turns in a row that each repeat an earlier turn (in any
    order) while the model reads nothing new.

When the news that began the epoch was only the previous turn's own output (its tool
results, its reply read back), the occurrence before the epoch counts too: a loop's first
round is part of the loop. News from elsewhere (a new item, a user's message) makes it work.

``allow`` gives a tool its own repeat limit (polling ``wait_for_job`` 30 times is fine); while
the model asks only for allowed tools, ``cycle`` and ``no_progress`` stay quiet.

Without a ``prompt`` on model observations (an adapter that cannot see it), a new tool
result since the previous model call stands in for news.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import math
import operator
import re
import string
import unicodedata
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Literal, TypeAlias
from uuid import UUID

from langchain_core.messages import BaseMessage, ToolMessage
from pydantic import BaseModel
from rapidfuzz.distance import Levenshtein

__all__ = [
    "LOOP_BOUNDS",
    "FrozenMap",
    "LoopDetector",
    "LoopSettings",
    "LoopVerdict",
    "ModelObservation",
    "NodeObservation",
    "Observation",
    "Signal",
    "ToolObservation",
    "fingerprint",
    "normalize",
    "normalize_text",
]

Signal: TypeAlias = Literal["repeated_tool_call", "cycle", "repeated_output", "no_progress"]


class FrozenMap(Mapping[str, int]):
    """An immutable, hashable ``str -> int`` mapping (``LoopSettings.allow``)."""

    __slots__ = ("_data", "_hash")

    def __init__(self, data: Mapping[str, int] | None = None) -> None:
        self._data: dict[str, int] = dict(data or {})
        self._hash: int | None = None

    def __getitem__(self, key: str) -> int:
        return self._data[key]

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._data.items()))
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return dict(self._data) == dict(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"FrozenMap({self._data!r})"


# Each setting's bounds, in one place: LoopSettings checks them, and the policy's YAML model reports them per field.
# Above these, a value is a typo: an agent stuck for 100,000 steps has long spent any budget.
LOOP_BOUNDS: Mapping[str, tuple[int, int]] = MappingProxyType(
    {
        "window": (2, 1000),
        "max_repeats": (2, 1000),
        "max_tool_repeats": (2, 1000),
        "max_steps_without_progress": (1, 100_000),
        "allow": (2, 10_000),  # an allowed tool's own max_repeats
    }
)


@dataclass(frozen=True)
class LoopSettings:
    """One loop rule's thresholds, already validated (the policy layer builds it).

    ``allow`` maps a tool name to its own ``max_repeats``; an allowed tool's repeats are
    counted over the last ``max(window, allow[tool])`` tool calls.
    """

    window: int = 20
    max_repeats: int = 3
    max_tool_repeats: int = 4
    similarity: float = 0.92
    max_steps_without_progress: int = 5
    allow: Mapping[str, int] = field(default_factory=FrozenMap)

    def __post_init__(self) -> None:
        problems = []
        for name in ("window", "max_repeats", "max_tool_repeats", "max_steps_without_progress"):
            low, high = LOOP_BOUNDS[name]
            value = getattr(self, name)
            if value < low:
                problems.append(f"{name} must be at least {low}, got {value}")
            elif value > high:
                problems.append(f"{name} must be at most {high:,}, got {value}")
        if self.window < max(self.max_repeats, self.max_tool_repeats):
            problems.append(
                f"window ({self.window}) must be at least max_repeats ({self.max_repeats}) "
                f"and max_tool_repeats ({self.max_tool_repeats})"
            )
        if not 0.0 < self.similarity <= 1.0:
            problems.append(f"similarity must be in (0, 1], got {self.similarity}")
        low, high = LOOP_BOUNDS["allow"]
        problems.extend(
            f"allow[{tool!r}] must be at least {low}, got {limit}"
            if limit < low
            else f"allow[{tool!r}] must be at most {high:,}, got {limit}"
            for tool, limit in self.allow.items()
            if not low <= limit <= high
        )
        if problems:
            raise ValueError("invalid loop settings: " + "; ".join(problems))
        if not isinstance(self.allow, FrozenMap):
            object.__setattr__(self, "allow", FrozenMap(self.allow))

    def max_repeats_for(self, tool: str) -> int:
        """How many times ``tool`` may repeat the same call with the same result before it is a loop."""
        return int(self.allow.get(tool, self.max_tool_repeats))


@dataclass(frozen=True)
class ToolObservation:
    """A finished tool call. ``result`` is the text the model will see (None: unknown)."""

    tool: str
    args: Any
    result: str | None
    error: bool = False
    tokens: int = 0


@dataclass(frozen=True)
class NodeObservation:
    """A finished LangGraph node and the update it returned (not the whole state)."""

    node: str
    update: Any
    tokens: int = 0


@dataclass(frozen=True)
class ModelObservation:
    """A model reply: its text and the tool calls it requests as ``(name, args)``.

    ``tokens`` is what the call cost (input + output); ``model`` and ``node`` (the LangGraph
    node that made the call) name it in verdicts. ``prompt`` is the messages the model read;
    held only until the detector has keyed them, never logged.
    """

    text: str
    tool_calls: Sequence[tuple[str, Any]] = ()
    tokens: int = 0
    model: str | None = None
    prompt: Sequence[BaseMessage] | None = field(default=None, compare=False, repr=False)
    node: str | None = None
    message: BaseMessage | None = field(default=None, compare=False, repr=False)  # the reply itself

    def __post_init__(self) -> None:
        if not isinstance(self.tool_calls, tuple):
            object.__setattr__(self, "tool_calls", tuple(self.tool_calls))


Observation: TypeAlias = ToolObservation | NodeObservation | ModelObservation


@dataclass(frozen=True)
class LoopVerdict:
    """A loop signal fired. ``steps_in_loop``, ``model_calls`` and ``loop_tokens`` count
    what came after the first, legitimate occurrence of the repeated thing."""

    signal: Signal
    subject: str
    repeats: int
    steps_in_loop: int
    loop_tokens: int
    description: str
    model_calls: int = 0


# --- normalization and fingerprints -------------------------------------------------------------

# Keys that only ever hold ids or provider bookkeeping, dropped wherever they appear.
_ALWAYS_DROPPED = frozenset({"tool_call_id", "response_metadata", "usage_metadata"})
# Ids dropped only from records that are messages, tool calls or content blocks, so tool
# arguments such as {"id": 42} or {"run_id": 7} still tell two calls apart.
_RECORD_DROPPED = frozenset({"id", "run_id", "parent_run_id", "call_id"})
# Message fields that never carry meaning for a loop.
_MESSAGE_DROPPED = _ALWAYS_DROPPED | _RECORD_DROPPED | {"chunk_position", "example"}
_RECORD_TYPES = frozenset(
    {
        "human", "ai", "system", "tool", "function", "chat", "developer", "remove",
        "HumanMessageChunk", "AIMessageChunk", "SystemMessageChunk", "ToolMessageChunk",
        "FunctionMessageChunk", "ChatMessageChunk",
        "text", "text-plain", "reasoning", "thinking", "redacted_thinking", "image", "image_url", "audio",
        "video", "file", "non_standard", "citation", "tool_call", "tool_call_chunk", "invalid_tool_call",
        "server_tool_call", "server_tool_call_chunk", "server_tool_result", "tool_use", "tool_result",
        "function_call", "function_call_output", "message", "output_text", "input_text",
    }
)  # fmt: skip
_MAX_DEPTH = 64
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_DIGEST_SIZE = 16

MessageHook = Callable[[BaseMessage], Any]


def normalize(value: Any) -> Any:
    """The canonical, JSON-able form of ``value`` used for fingerprints.

    Dict keys become strings (sorted when serialized); tuples and sets become lists;
    LangChain messages, pydantic models and dataclasses become dicts. ``tool_call_id``,
    ``response_metadata`` and ``usage_metadata`` are dropped everywhere; ``id``, ``run_id``,
    ``parent_run_id`` and ``call_id`` from messages, tool calls, content blocks and role
    dicts only, so the same keys in tool arguments still count. A failed ToolMessage's text
    has its numbers and hex ids masked.
    """
    return _canon(value, 0, _expand_message)


def fingerprint(value: Any) -> bytes:
    """A 16-byte blake2b digest of ``value``'s canonical form (messages hashed one by one)."""
    return _digest(_canon(value, 0, _message_digest_ref))


def normalize_text(text: str) -> str:
    """Text as compared for near-duplicates: NFKC, case-folded, English contractions spelled
    out ("couldn't" -> "could not"), punctuation and runs of whitespace collapsed to one space."""
    folded = unicodedata.normalize("NFKC", text).casefold().replace("\u2019", "'")
    if "'" in folded or "cannot" in folded:
        folded = _CONTRACTION.sub(lambda m: _CONTRACTIONS[m.group(0)], folded)
    if folded.isascii():
        return " ".join(folded.translate(_ASCII_PUNCTUATION).split())
    return " ".join(_NON_WORD.sub(" ", folded).split())


_NON_WORD = re.compile(r"[\W_]+")
_ASCII_PUNCTUATION = str.maketrans(dict.fromkeys(string.punctuation, " "))
_CONTRACTIONS = {
    "can't": "can not", "cannot": "can not", "won't": "will not", "n't": " not", "'m": " am",
    "'re": " are", "'ll": " will", "'ve": " have",
}  # fmt: skip
_CONTRACTION = re.compile(r"\b(?:can't|cannot|won't)\b|n't\b|'(?:m|re|ll|ve)\b")


_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, check_circular=False, default=str
)
_SCALARS = (str, int, bool, type(None))
_FIELDS: dict[type[BaseMessage], tuple[str, ...]] = {}


def _digest(canonical: Any) -> bytes:
    data = _ENCODER.encode(canonical).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=_DIGEST_SIZE).digest()


def _text_digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=_DIGEST_SIZE).digest()


def _expand_message(message: BaseMessage) -> Any:
    return _message_fields(message, _expand_message)


def _message_digest_ref(message: BaseMessage) -> Any:
    return {"__message__": _digest(_message_fields(message, _message_digest_ref)).hex()}


def _fields_of(cls: type[BaseMessage]) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(n for n in cls.model_fields if n not in _MESSAGE_DROPPED)
    return names


def _message_fields(message: BaseMessage, hook: MessageHook) -> dict[str, Any]:
    out: dict[str, Any] = {}
    state = message.__dict__
    for name in _fields_of(type(message)):
        value = state.get(name)
        if value is None or (not value and name in ("additional_kwargs", "invalid_tool_calls")):
            continue
        if name == "content" and type(value) is str and state.get("status") == "error":
            value = _error_key(value)  # a failed tool call's message, request ids and all
        out[name] = value if type(value) in _SCALARS else _canon(value, 1, hook)
    return out


def _canon(value: Any, depth: int, hook: MessageHook) -> Any:
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is dict:
        return _canon_mapping(value, depth + 1, hook) if depth < _MAX_DEPTH else "<too deep>"
    if kind is list or kind is tuple:
        if depth >= _MAX_DEPTH:
            return "<too deep>"
        return [item if type(item) in _SCALARS else _canon(item, depth + 1, hook) for item in value]
    if isinstance(value, BaseMessage):
        return hook(value)
    return _canon_other(value, depth, hook)


def _canon_other(value: Any, depth: int, hook: MessageHook) -> Any:
    if isinstance(value, bool | int | str):  # subclasses: IntEnum, StrEnum, ...
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if depth >= _MAX_DEPTH:
        return "<too deep>"
    depth += 1
    if isinstance(value, Mapping):
        return _canon_mapping(value, depth, hook)
    if isinstance(value, list | tuple):
        return [_canon(item, depth, hook) for item in value]
    if isinstance(value, BaseModel):
        return {"__type__": type(value).__name__, **_canon_mapping(value.model_dump(), depth, hook)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return {"__type__": type(value).__name__, **_canon_mapping(fields, depth, hook)}
    if isinstance(value, set | frozenset):
        items = [_canon(item, depth, hook) for item in value]
        return sorted(items, key=_ENCODER.encode)
    if isinstance(value, enum.Enum):
        return _canon(value.value, depth, hook)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, UUID | Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray):
        return {"__bytes__": hashlib.blake2b(value, digest_size=_DIGEST_SIZE).hexdigest()}
    slots = getattr(type(value), "__slots__", None)
    if isinstance(slots, tuple) and slots and all(isinstance(s, str) for s in slots):
        attrs = {s: getattr(value, s) for s in slots if not s.startswith("_") and hasattr(value, s)}
        if attrs:  # langgraph's Send and other small records
            return {"__type__": type(value).__name__, **_canon_mapping(attrs, depth, hook)}
    return _ADDRESS.sub("", repr(value))


def _canon_mapping(value: Mapping[Any, Any], depth: int, hook: MessageHook) -> dict[str, Any]:
    kind = value.get("type")
    is_record = (type(kind) is str and kind in _RECORD_TYPES) or "role" in value
    out: dict[str, Any] = {}
    for key, item in value.items():
        name = key if type(key) is str else str(key)
        if name in _ALWAYS_DROPPED or (is_record and name in _RECORD_DROPPED):
            continue
        out[name] = item if type(item) in _SCALARS else _canon(item, depth, hook)
    return out


class _MessageKeys:
    """Message keys with a bounded cache by object identity.

    A graph's state holds the same message objects call after call, so a prompt of fifty
    messages costs one key per *new* message. The cache keeps a strong reference to each
    message, so an identity is never reused while cached; messages are treated as
    immutable, as LangGraph does.
    """

    def __init__(self, size: int, mask: Masker) -> None:
        self._size = size
        self._mask = mask
        self._cache: OrderedDict[int, tuple[BaseMessage, bytes]] = OrderedDict()

    def __call__(self, message: BaseMessage) -> bytes:
        slot = id(message)
        hit = self._cache.get(slot)
        if hit is not None and hit[0] is message:
            self._cache.move_to_end(slot)
            return hit[1]
        key = message_key(message, self._mask)
        self.seed(message, key)
        return key

    def seed(self, message: BaseMessage, key: bytes) -> None:
        """Remember ``message``'s key, computed elsewhere."""
        self._cache[id(message)] = (message, key)
        if len(self._cache) > self._size:
            self._cache.popitem(last=False)

    def __len__(self) -> int:
        return len(self._cache)


# --- what is volatile, and when two things are the same ------------------------------------------

_VOLATILE = re.compile(
    r"""
    (?<![0-9a-z])
    (?:
      [0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}                # UUID
    | \d{4}-\d{2}-\d{2}(?:[t\ ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:z|[+-]\d{2}:?\d{2})?)?  # ISO date, time
    | \d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?                                          # clock time
    | 1\d{9}(?:\d{3})?(?:\.\d+)?                                               # epoch seconds or ms
    | 0x[0-9a-f]+                                                               # address
    | (?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,}                              # hex id
    | (?=[0-9a-z]*\d)(?=[0-9a-z]*[a-z])[0-9a-z]{16,}                             # long random token
    )
    (?![0-9a-z])
    """,
    re.IGNORECASE | re.VERBOSE,
)
_DIGITS = re.compile(r"\d+")
_DIGIT = re.compile(r"\d")


def mask_volatile(text: str) -> str:
    """``text`` with what changes on every call of the same thing masked: UUIDs, ISO dates and
    times, clock times, epoch timestamps, hex ids and long random tokens (request and session
    ids). Ordinary numbers stay: "step 7 of 25" and "step 8 of 25" differ."""
    if not _DIGIT.search(text):  # every volatile token has a digit: most texts end here
        return text
    return _VOLATILE.sub("#", text)


def _error_key(result: str | None) -> str | None:
    """A failure's text with every number masked as well: a retry that fails the same way
    ("attempt 3", "after 2.4 s") is still the same failure."""
    return None if result is None else _failure_text(mask_volatile(result))


def _failure_text(masked: str) -> str:
    """An already masked failure's text with every number masked too, case folded."""
    return _DIGITS.sub("#", masked.lower())


def _calls_of(message: BaseMessage) -> list[tuple[str, Any]]:
    calls: list[tuple[str, Any]] = [(c["name"], c["args"]) for c in getattr(message, "tool_calls", None) or []]
    calls += [
        (c.get("name") or "?", {"invalid_args": c.get("args")})
        for c in getattr(message, "invalid_tool_calls", None) or []
    ]
    return calls


Masker = Callable[[str], str]


def _key(text: str, calls: Sequence[tuple[str, Any]], *, failed: bool = False, mask: Masker = mask_volatile) -> bytes:
    masked = mask(text)
    if failed:
        masked = _failure_text(masked)
    if not calls:  # most messages: skip the JSON encoder
        return _text_digest(masked)
    return _text_digest("\x00".join([masked, *_call_codes(calls)]))


def _call_codes(calls: Sequence[tuple[str, Any]]) -> list[str]:
    """Each requested call, canonical: name and normalized arguments."""
    return [_ENCODER.encode([name, normalize(args)]) for name, args in calls]


def message_key(message: BaseMessage, mask: Masker = mask_volatile) -> bytes:
    """What a prompt message says, as a 16-byte digest: its text with volatile tokens masked and
    the tool calls it requests; ids dropped. The role is left out on purpose: a model's reply,
    read back in the next prompt or relayed to another agent as a human message, is the same
    news."""
    if isinstance(message, ToolMessage):
        return _key(message.text, (), failed=message.status == "error", mask=mask)
    return _key(message.text, _calls_of(message), mask=mask)


class _MaskMemo:
    """``mask_volatile`` remembered for the last few texts: a tool result is masked when it
    arrives, again as the message that carries it, and again when the next prompt reads it."""

    def __init__(self, size: int = 64) -> None:
        self._size = size
        self._memo: OrderedDict[str, str] = OrderedDict()

    def __call__(self, text: str) -> str:
        hit = self._memo.get(text)
        if hit is None:
            hit = self._memo[text] = mask_volatile(text)
            if len(self._memo) > self._size:
                self._memo.popitem(last=False)
        return hit


@dataclass(frozen=True, slots=True)
class _Text:
    """A text reply as compared for near-duplicates."""

    cluster: int
    norm: str
    words: tuple[str, ...]
    numbers: tuple[str, ...]


def _text_of(text: str, cluster: int) -> _Text:
    norm = normalize_text(text)  # already masked
    words = tuple(w for w in norm.split() if w not in _FILLER) or tuple(norm.split())
    return _Text(cluster, norm, words, tuple(_DIGITS.findall(norm)))


# Words a stuck model wraps around the same message ("Sorry, ...", "Again: ..."); ignored when
# comparing replies for near-duplicates, so short replies are not told apart by them.
_FILLER = frozenset({"sorry", "again", "apologies", "apologize", "ok", "okay", "please", "still", "once", "more"})


def _near_duplicates(a: _Text, b: _Text, similarity: float) -> bool:
    """Near-identical replies: the same numbers and the same words but for a few edits, at most
    ``1 - similarity`` of the words and never more than three (0.92: one edit from 13 words,
    three from 38). A reply whose numbers moved ("step 8 of 25") is news, and so is a draft with
    a new sentence, however long the draft; a reworded apology is not. Words, not characters:
    a character ratio lets a long draft grow by a sentence and still look the same."""
    if a.numbers != b.numbers:
        return False
    if a.words == b.words:
        return True
    allowed = min(3, math.floor((1.0 - similarity) * max(len(a.words), len(b.words)) + 1e-9))
    return allowed > 0 and Levenshtein.distance(a.words, b.words, score_cutoff=allowed) <= allowed


# --- the detector --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Mark:
    """Where an observation sits in the run: its index and the totals up to and including it."""

    step: int
    tokens: int
    model_calls: int


@dataclass(slots=True)
class _Turn:
    """One model call and the tool calls it requested (or a tool call made without a model)."""

    epoch: int
    stale: bool  # the model's input brought nothing new
    output: bytes  # the calls it requested, or the near-duplicate cluster of its text
    tools: tuple[str, ...]
    label: str
    mark: _Mark
    expected: int
    results: list[bytes] = field(default_factory=list)
    outcomes: list[bytes] = field(default_factory=list)  # each result without the arguments that got it
    failed: bool = False
    sig: bytes = b""


def _repeats_of(matches: Sequence[_Turn], epoch: int, *, with_previous: bool) -> list[_Turn]:
    """The earlier occurrences that count as repeats: every one since the model last read
    something new, plus, when that news was only the previous turn's own output (its tool
    results, its reply read back), the single occurrence before, which the loop repeats. News
    from elsewhere (a new item, a user's message) makes the occurrence before it work."""
    since = [m for m in matches if m.epoch == epoch]
    before = [m for m in matches if m.epoch < epoch][-1:] if with_previous else []
    return before + since


_MAX_PERIOD = 6
_NOBODY = "\x00nobody"  # no node wrote this message (a None node is a model outside LangGraph)
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


class LoopDetector:
    """Loop state for one run. Feed every observation in order; the first signal that
    fires is returned once and kept in :attr:`verdict`. After that the detector is
    tripped and ignores observations until :meth:`reset`.

    The unit of judgement is the *turn*: a model call plus the results of the tool calls it
    requested. A turn is judged when it is complete (a text reply at once, a tool request
    when its results are in). The run's *epoch* advances on every model call whose input
    brought something new (see :meth:`observe`); repeats count only within an epoch (plus the
    occurrence just before it when the news was the previous turn's own output).

    Memory is bounded by the settings: ``window`` turns (more for an allowed tool with a
    larger limit), ``window`` text replies, and bounded caches of message keys.
    """

    def __init__(self, settings: LoopSettings | None = None) -> None:
        self.settings = settings or LoopSettings()
        window = self.settings.window
        self._span = max(window, *self.settings.allow.values(), 0)
        self._mask = _MaskMemo()
        self._keys = _MessageKeys(size=max(256, 16 * window), mask=self._mask)
        self._seen_size = max(1024, 64 * window)
        self._step = 0
        self._tokens = 0
        self._model_calls = 0
        self.reset()

    def suspected(self) -> bool:
        """Evidence short of a verdict: a turn of the recent window was seen before (a loop starting, or a retry).
        Routing rules with ``loop_suspected`` act on it, before loop detection would halt the run."""
        return self._verdict is not None or any(n >= 2 for n in self._sigs.values())

    def reset(self) -> None:
        """Forget the history and re-arm (the totals of steps, tokens and model calls go on)."""
        self._verdict: LoopVerdict | None = None
        self._seen: OrderedDict[bytes, None] = OrderedDict()  # message keys the model has read or written
        self._sentences: OrderedDict[bytes, None] = OrderedDict()  # sentences read so far
        self._authors: OrderedDict[bytes, str | None] = OrderedDict()  # reply key -> the node that wrote it
        self._last_prompts: dict[str | None, tuple[BaseMessage, ...]] = {}  # per reading node
        self._fresh_result = True  # without prompts: did a new tool result arrive since the last model call
        self._results_seen: OrderedDict[bytes, None] = OrderedDict()
        self._turns: deque[_Turn] = deque()  # at most span + _MAX_PERIOD (see _append)
        self._sigs: Counter[bytes] = Counter()  # signatures of self._turns
        self._outcomes: Counter[bytes] = Counter()  # outcomes of self._turns
        self._pending: _Turn | None = None
        self._texts: deque[_Text] = deque(maxlen=self.settings.window)
        self._clusters = 0
        self._epoch = 0
        self._echo_epoch = True  # the news that began this epoch came from the previous turn's own output
        self._echoes: set[bytes] = set()  # keys of the last turn's reply and tool results
        self._streak = 0
        self._streak_since: _Mark | None = None  # the last turn before the current streak

    @property
    def verdict(self) -> LoopVerdict | None:
        """The verdict this detector returned, if any."""
        return self._verdict

    @property
    def steps(self) -> int:
        """How many observations this detector has seen."""
        return self._step

    def observe(self, obs: Observation) -> LoopVerdict | None:
        """Record one observation; return a verdict the first time a signal fires.

        A model observation's ``prompt`` decides whether its input brought anything new: a
        message whose key (text with volatile tokens masked, tool calls) the model has not read
        before in this run, and that is not a repeat of one of its own earlier replies. Without
        a prompt, a new tool result since the previous model call counts as new input.
        """
        if self._verdict is not None:
            return None
        self._step += 1
        self._tokens += obs.tokens
        if isinstance(obs, ModelObservation):
            self._model_calls += 1
            verdict = self._observe_model(obs)
        elif isinstance(obs, ToolObservation):
            verdict = self._observe_tool(obs)
        else:
            verdict = None  # node updates are state, not what the model read
        self._verdict = verdict
        return verdict

    def memory(self) -> dict[str, int]:
        """Sizes of the bounded structures, for tests and debugging."""
        return {
            "turns": len(self._turns),
            "texts": len(self._texts),
            "seen_messages": len(self._seen),
            "seen_results": len(self._results_seen),
            "message_cache": len(self._keys),
        }

    def _mark(self) -> _Mark:
        return _Mark(self._step, self._tokens, self._model_calls)

    def _remember(self, table: OrderedDict[bytes, None], key: bytes) -> bool:
        """Add ``key``; whether it was new."""
        new = key not in table
        table[key] = None
        if not new:
            table.move_to_end(key)
        elif len(table) > self._seen_size:
            table.popitem(last=False)
        return new

    # -- model calls --

    def _observe_model(self, obs: ModelObservation) -> LoopVerdict | None:
        verdict = self._finish_pending()
        if verdict is not None:
            return verdict
        echoes, self._echoes = self._echoes, set()
        if obs.prompt is not None:
            news = self._news(obs.prompt, obs.node)
            new_input = bool(news)
            echo = all(key in echoes for key in news)
        else:
            new_input, echo = self._fresh_result or self._model_calls == 1, True
        self._fresh_result = False
        if new_input:
            self._epoch += 1
            self._echo_epoch = echo
        label = obs.node or obs.model or "model"
        codes = _call_codes(obs.tool_calls)
        if obs.tool_calls:
            tools = tuple(dict.fromkeys(name for name, _ in obs.tool_calls))
            output = _text_digest("\x00".join(sorted(codes)))  # parallel calls in any order are the same request
            repeated = any(t.output == output for t in self._turns)
        else:
            output, repeated = self._cluster_of(obs.text)
        masked = self._mask(obs.text)
        reply = _text_digest("\x00".join([masked, *codes])) if codes else _text_digest(masked)  # = message_key
        if obs.message is not None:  # the same object comes back in the next prompt: key it once
            self._keys.seed(obs.message, reply)
        self._echoes.add(reply)
        self._authors[reply] = obs.node
        self._authors.move_to_end(reply)
        if len(self._authors) > self._seen_size:
            self._authors.popitem(last=False)
        if repeated:
            # Read back by the next model call (this one's own, or another agent's), a reply that
            # repeats an earlier one is not news; a new reply is.
            self._remember(self._seen, reply)
        if obs.tool_calls:
            turn = _Turn(
                self._epoch, not new_input, output, tools, f"{label}: {', '.join(tools)}", self._mark(),
                expected=len(obs.tool_calls),
            )  # fmt: skip
            self._pending = turn
            return None
        turn = _Turn(self._epoch, not new_input, output, (), label, self._mark(), expected=0)
        return self._judge(turn)

    def _news(self, prompt: Sequence[BaseMessage], reader: str | None) -> list[bytes]:
        """The keys of the prompt's messages that are news to the model reading it: never read
        before in this run, not written by this same node (a model's own words are not news to
        it), and holding at least one sentence not read before (a transcript that grows by lines
        already in it, or a critique recombined from earlier sentences, brings nothing new)."""
        news = []
        # A graph's next prompt is usually the last one plus a few messages, the same objects:
        # the part this reader already judged is skipped by identity.
        last = self._last_prompts.pop(reader, ())
        skip = len(last) if len(last) <= len(prompt) and all(map(operator.is_, last, prompt)) else 0
        self._last_prompts[reader] = tuple(prompt)
        if len(self._last_prompts) > 16:
            del self._last_prompts[next(iter(self._last_prompts))]
        for message in prompt[skip:]:
            key = self._keys(message)
            if key in self._seen or self._authors.get(key, _NOBODY) == reader:
                continue
            self._remember(self._seen, key)
            fresh = False
            for sentence in _SENTENCE.split(self._mask(message.text)):
                norm = " ".join(sentence.casefold().split())  # exact sentences, recombined: no fuzzier than that
                if norm:
                    fresh |= self._remember(self._sentences, _text_digest(norm))
            if fresh or not message.text.strip():
                news.append(key)
        return news

    def _cluster_of(self, text: str) -> tuple[bytes, bool]:
        """Text replies that are near-duplicates of a recent one share its cluster; whether this
        one repeats a recent reply."""
        probe = _text_of(self._mask(text), self._clusters)
        similarity = self.settings.similarity
        found = next((t for t in reversed(self._texts) if _near_duplicates(probe, t, similarity)), None)
        if found is None:
            self._clusters += 1
        cluster = probe.cluster if found is None else found.cluster
        self._texts.append(_Text(cluster, probe.norm, probe.words, probe.numbers))
        return b"text:%d" % cluster, found is not None

    # -- tool calls --

    def _observe_tool(self, obs: ToolObservation) -> LoopVerdict | None:
        text = obs.result or ""
        masked = self._mask(text)
        result = _failure_text(masked) if obs.error else masked
        # The result alone (what the next prompt will carry), then with the call that got it.
        outcome = _text_digest(f"{obs.tool}\x00{int(obs.error)}\x00{'-' if obs.result is None else 'r'}{result}")
        args = _ENCODER.encode(normalize(obs.args))
        key = hashlib.blake2b(outcome + args.encode("utf-8", "surrogatepass"), digest_size=_DIGEST_SIZE).digest()
        new_result = self._remember(self._results_seen, key)
        self._fresh_result |= new_result
        turn = self._pending
        if turn is None:  # a tool call without a model turn around it: a turn of its own
            if new_result:
                self._epoch += 1
                self._echo_epoch = True
            output = _text_digest(f"call\x00{obs.tool}\x00{args}")
            turn = _Turn(self._epoch, not new_result, output, (obs.tool,), obs.tool, self._mark(), expected=1)
            self._pending = turn
        else:  # the result the next prompt will carry: news, but the model's own doing
            self._echoes.add(_text_digest(result))  # = message_key of the ToolMessage that carries it
        turn.results.append(key)
        turn.outcomes.append(outcome)
        turn.failed |= obs.error
        if len(turn.results) >= turn.expected:
            self._pending = None
            return self._judge(turn)
        return None

    def _finish_pending(self) -> LoopVerdict | None:
        turn, self._pending = self._pending, None
        return None if turn is None else self._judge(turn)

    # -- judgement --

    def _limit(self, turn: _Turn) -> int:
        settings = self.settings
        if turn.tools and all(t in settings.allow for t in turn.tools):
            return max(settings.allow[t] for t in turn.tools)
        if turn.tools and not turn.failed:
            return settings.max_tool_repeats
        return settings.max_repeats

    def _allowed(self, turn: _Turn) -> bool:
        return bool(turn.tools) and all(t in self.settings.allow for t in turn.tools)

    def _judge(self, turn: _Turn) -> LoopVerdict | None:
        turn.sig = hashlib.blake2b(turn.output + b"".join(sorted(turn.results)), digest_size=_DIGEST_SIZE).digest()
        if turn.sig not in self._sigs and not (turn.outcomes and all(o in self._outcomes for o in turn.outcomes)):
            # Most turns: nothing like them in memory, so no signal can fire (every one needs an earlier equal).
            self._append(turn)
            self._streak = 0
            return None
        history = list(self._turns)
        self._append(turn)
        limit = self._limit(turn)
        span = max(self.settings.window, limit) if self._allowed(turn) else self.settings.window
        recent = history[-(span - 1) :] if span > 1 else []
        same = [t for t in recent if t.sig == turn.sig]
        counted = [*_repeats_of(same, turn.epoch, with_previous=self._echo_epoch), turn]
        # A stale turn whose results all came before, whatever the arguments (a reworded query
        # that finds nothing again, a page number the tool ignores), is no progress either.
        outcomes = {o for t in recent for o in t.outcomes}
        known = same or (turn.outcomes and all(o in outcomes for o in turn.outcomes))
        if known and (turn.stale or self._streak == 0):
            if self._streak == 0:
                self._streak_since = history[-1].mark if history else turn.mark
            self._streak += 1
        else:
            self._streak = 0
        if len(counted) >= limit:
            return self._repeat_verdict(turn, counted, limit)
        if self._allowed(turn):
            self._streak = 0  # polling within its own limit
            return None
        verdict = self._cycle(history, turn)
        if verdict is not None:
            return verdict
        needed = self.settings.max_steps_without_progress
        if self._streak >= needed and self._streak_since is not None:
            return self._verdict_from(
                "no_progress",
                turn.label,
                self._streak,
                self._streak_since,
                f"{self._streak} model turns in a row repeated earlier turns and the model's input "
                f"brought nothing new (limit {needed})",
            )
        return None

    def _append(self, turn: _Turn) -> None:
        """Remember a judged turn, and its signature and outcomes for the fast path, within the span."""
        self._turns.append(turn)
        self._sigs[turn.sig] += 1
        self._outcomes.update(turn.outcomes)
        if len(self._turns) > self._span + _MAX_PERIOD:
            old = self._turns.popleft()
            self._sigs[old.sig] -= 1
            if not self._sigs[old.sig]:
                del self._sigs[old.sig]
            self._outcomes.subtract(old.outcomes)
            for outcome in old.outcomes:
                if self._outcomes[outcome] <= 0:
                    del self._outcomes[outcome]

    def _repeat_verdict(self, turn: _Turn, counted: Sequence[_Turn], limit: int) -> LoopVerdict:
        n = len(counted)
        if turn.tools:
            names = ", ".join(repr(t) for t in turn.tools)
            outcome = "failed the same way" if turn.failed else "got the same result"
            return self._verdict_from(
                "repeated_tool_call",
                ", ".join(turn.tools),
                n,
                counted[0].mark,
                f"tool {names} was called {n} times with the same arguments and {outcome} each time, "
                f"with nothing new in the model's input in between (limit {limit})",
            )
        return self._verdict_from(
            "repeated_output",
            turn.label,
            n,
            counted[0].mark,
            f"{turn.label} gave {n} near-identical replies with nothing new in its input in between (limit {limit})",
        )

    def _cycle(self, history: Sequence[_Turn], turn: _Turn) -> LoopVerdict | None:
        """A block of 2 to 6 turns repeated back to back while the model read nothing new:
        two full rounds for blocks of three or more, two and a half for a pair (A B A B A)."""
        turns = [*history, turn]
        for period in range(2, _MAX_PERIOD + 1):
            needed = max(period, 3)
            if len(turns) < period + needed:
                break
            run = 0
            while run < needed:
                i = len(turns) - 1 - run
                if turns[i].sig != turns[i - period].sig or turns[i].epoch != turn.epoch:
                    break
                run += 1
            if run < needed:
                continue
            block = turns[len(turns) - needed - period : len(turns) - needed]
            if len({t.sig for t in block}) < 2 or all(self._allowed(t) for t in block):
                continue
            subject = " -> ".join(t.label for t in block)
            rounds = (needed + period) / period
            return self._verdict_from(
                "cycle",
                subject,
                int(rounds),
                block[-1].mark,
                f"the agent went through the same {period} turns ({subject}) {rounds:g} times in a row "
                "with nothing new in the model's input",
            )
        return None

    def _verdict_from(self, signal: Signal, subject: str, repeats: int, since: _Mark, what: str) -> LoopVerdict:
        steps = self._step - since.step
        tokens = self._tokens - since.tokens
        calls = self._model_calls - since.model_calls
        return LoopVerdict(
            signal=signal,
            subject=subject,
            repeats=repeats,
            steps_in_loop=steps,
            loop_tokens=tokens,
            model_calls=calls,
            description=(
                f"loop detected ({signal.replace('_', ' ')}): {what}; the loop ran {steps} steps "
                f"and {calls} model call{'s' if calls != 1 else ''} costing {tokens:,} tokens"
            ),
        )
