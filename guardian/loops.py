"""Loop detection: notice an agent going in circles within a few repetitions.

Pure and incremental: no I/O and no clock (no signal here depends on time). Every
observation is fingerprinted once, when it arrives, and message digests are cached by
object, so a node that returns the whole growing message list costs one hash per new
message; the history is never re-hashed. One :class:`LoopDetector` holds the state of one
run and is not thread-safe: the caller holds a lock around :meth:`LoopDetector.observe`.

Four signals, each judged on its own channel (tool calls, node updates, model replies), so
the number of observations an adapter sends per agent step does not change their meaning:

``repeated_tool_call``
    the same tool, normalized arguments and result in ``max_repeats`` model turns within
    the last ``window`` tool calls. Different arguments (paging, refining a query) or a
    changing result (a job that finishes) is progress. A failed call counts when its error
    text is the same, numbers and hex ids aside. Parallel duplicates in one turn count once.
``cycle``
    a block of LangGraph node updates (period 2 or more, at least two distinct updates)
    repeated ``max_repeats`` times in a row. Message and tool-call ids are dropped, and
    top-level numbers in an update (step counters) are masked.
``repeated_output``
    ``max_repeats`` text replies within the last ``window`` that are near-duplicates
    (rapidfuzz ``ratio`` of :func:`normalize_text` >= ``similarity``). Replies that request
    tools are judged by ``repeated_tool_call`` once their results are in, since the same
    request may get a new answer (polling).
``no_progress``
    ``max_steps_without_progress`` observations in a row that bring nothing new: every tool
    result, node update and reply is already in its channel's window.

Repeats count only while nothing new happens: the run's *epoch* advances on each new tool
result, new node update that is not a model's reply, new tool request or new text reply,
and a repeat counts if it came since the last advance, plus the one occurrence before it.
So re-reading a file between edits of others, or a planner saying "Continue." while the
executor reports new results, is not a loop; a loop's own first round does not hide it.

``allow`` gives a tool its own repeat limit (polling ``wait_for_job`` 30 times is fine);
while the model asks only for allowed tools, ``cycle`` and ``no_progress`` stay quiet.

Limits, by design: a loop whose tool returns something new each time (a timestamp) is
progress to every signal, and replies reworded beyond ``similarity`` are new replies (a
short reply with one word changed is already below 0.92), so such loops are caught late
or not at all.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import math
import re
import string
import unicodedata
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Literal, TypeAlias, TypeVar
from uuid import UUID

from langchain_core.messages import BaseMessage
from pydantic import BaseModel
from rapidfuzz import fuzz, process

__all__ = [
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


@dataclass(frozen=True)
class LoopSettings:
    """One loop rule's thresholds, already validated (the policy layer builds it).

    ``allow`` maps a tool name to its own ``max_repeats``; an allowed tool's repeats are
    counted over the last ``max(window, allow[tool])`` tool calls.
    """

    window: int = 20
    max_repeats: int = 3
    similarity: float = 0.92
    max_steps_without_progress: int = 12
    allow: Mapping[str, int] = field(default_factory=FrozenMap)

    def __post_init__(self) -> None:
        problems = []
        if self.max_repeats < 2:
            problems.append(f"max_repeats must be at least 2, got {self.max_repeats}")
        if self.window < self.max_repeats:
            problems.append(f"window ({self.window}) must be at least max_repeats ({self.max_repeats})")
        if not 0.0 < self.similarity <= 1.0:
            problems.append(f"similarity must be in (0, 1], got {self.similarity}")
        if self.max_steps_without_progress < 1:
            problems.append(f"max_steps_without_progress must be at least 1, got {self.max_steps_without_progress}")
        problems.extend(
            f"allow[{tool!r}] must be at least 2, got {limit}" for tool, limit in self.allow.items() if limit < 2
        )
        if problems:
            raise ValueError("invalid loop settings: " + "; ".join(problems))
        if not isinstance(self.allow, FrozenMap):
            object.__setattr__(self, "allow", FrozenMap(self.allow))

    def max_repeats_for(self, tool: str) -> int:
        """How many times ``tool`` may repeat the same call before it is a loop."""
        return self.allow.get(tool, self.max_repeats)


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

    ``tokens`` is what the call cost (input + output), ``model`` names it in verdicts.
    """

    text: str
    tool_calls: Sequence[tuple[str, Any]] = ()
    tokens: int = 0
    model: str | None = None

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


class _Fingerprinter:
    """``fingerprint`` with a bounded cache of message digests by object identity.

    Graph states hold the same message objects step after step; a node that returns the
    whole message list then costs one hash per new message, not one per message. The
    cache keeps a strong reference to each message, so an identity is never reused while
    cached. Messages are treated as immutable, as LangGraph does.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._cache: OrderedDict[int, tuple[BaseMessage, dict[str, str]]] = OrderedDict()
        self.saw_ai_message = False  # whether the last value hashed held an AI message

    def __call__(self, value: Any) -> bytes:
        self.saw_ai_message = False
        return _digest(_canon(value, 0, self._message_ref))

    def _message_ref(self, message: BaseMessage) -> Any:
        if message.type.startswith(("ai", "AI")):
            self.saw_ai_message = True
        key = id(message)
        hit = self._cache.get(key)
        if hit is not None and hit[0] is message:
            self._cache.move_to_end(key)
            return hit[1]
        ref = {"__message__": _digest(_message_fields(message, self._message_ref)).hex()}
        self._cache[key] = (message, ref)
        if len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return ref

    def __len__(self) -> int:
        return len(self._cache)


def _mask_counters(update: Any) -> Any:
    """A node update with its top-level numbers masked: a step counter or ``revision`` field
    that ticks on every pass (LangGraph's reflection examples keep one) is not progress."""
    if not isinstance(update, Mapping):
        return update
    return {
        key: "#" if isinstance(value, int | float) and not isinstance(value, bool) else value
        for key, value in update.items()
    }


_ERROR_NOISE = re.compile(r"0x[0-9a-f]+|[0-9a-f]{8,}(?:-[0-9a-f]{4,})*|\d+")


def _error_key(result: str | None) -> str | None:
    """An error's text with numbers and hex ids masked: a retry that fails the same way
    with a new request id or timestamp is still the same failure."""
    return None if result is None else _ERROR_NOISE.sub("#", result.lower())


# --- the detector --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Mark:
    """Where an observation sits in the run: its index and the totals up to and including it."""

    step: int
    tokens: int
    model_calls: int


@dataclass(frozen=True, slots=True)
class _ToolEntry:
    fp: bytes
    turn: int  # the model call that requested it: parallel duplicates count once
    epoch: int
    mark: _Mark


@dataclass(frozen=True, slots=True)
class _NodeEntry:
    fp: bytes
    node: str
    mark: _Mark


@dataclass(frozen=True, slots=True)
class _OutputEntry:
    fp: bytes
    calls_fp: bytes
    text: str  # normalized; empty for replies that request tools (not judged on their text)
    epoch: int
    mark: _Mark


_EntryT = TypeVar("_EntryT", _ToolEntry, _OutputEntry)


class _Window:
    """The last ``size`` fingerprints of a channel and how often each occurs among them."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.order: deque[bytes] = deque()
        self.counts: Counter[bytes] = Counter()

    def __contains__(self, fp: bytes) -> bool:
        return fp in self.counts

    def push(self, fp: bytes) -> None:
        self.order.append(fp)
        self.counts[fp] += 1
        if len(self.order) > self.size:
            old = self.order.popleft()
            self.counts[old] -= 1
            if not self.counts[old]:
                del self.counts[old]

    def __len__(self) -> int:
        return len(self.counts)


def _repeats_of(matches: Sequence[_EntryT], epoch: int) -> list[_EntryT]:
    """The earlier occurrences that count as repeats: every one since the run last saw
    something new, plus the single occurrence before that, which they repeat.

    Work in between resets the count, so re-reading the same file while editing others is
    not a loop, yet a loop's own first round (all new) does not hide the loop.
    """
    since = [m for m in matches if m.epoch == epoch]
    before = [m for m in matches if m.epoch < epoch][-1:]
    return before + since


class LoopDetector:
    """Loop state for one run. Feed every observation in order; the first signal that
    fires is returned once and kept in :attr:`verdict`. After that the detector is
    tripped and ignores observations until :meth:`reset`.

    Memory is bounded by the settings: ``window`` entries per channel (more for an
    allowed tool with a larger limit) and a bounded cache of message digests.

    "New" means absent from the channel's window. The run's *epoch* advances on every new
    tool result, new node update that is not a model reply, new tool request, and new text
    reply; repeats only count when nothing new happened in between (see ``_repeats_of``).
    """

    def __init__(self, settings: LoopSettings | None = None) -> None:
        self.settings = settings or LoopSettings()
        self._fingerprint = _Fingerprinter(size=max(64, 8 * self.settings.window))
        self._tool_span = max(self.settings.window, *self.settings.allow.values(), 0)
        self._periods = range(2, self.settings.window // self.settings.max_repeats + 1)
        self._step = 0
        self._tokens = 0
        self._model_calls = 0
        self.reset()

    def reset(self) -> None:
        """Forget the history and re-arm (the totals of steps, tokens and model calls go on)."""
        window = self.settings.window
        self._verdict: LoopVerdict | None = None
        self._tools: deque[_ToolEntry] = deque()
        self._tool_occurrences: dict[bytes, deque[_ToolEntry]] = {}
        self._tool_seen = _Window(window)
        self._nodes: deque[_NodeEntry] = deque(maxlen=window)
        self._node_seen = _Window(window)
        self._cycle_runs = dict.fromkeys(self._periods, 0)
        self._outputs: deque[_OutputEntry] = deque(maxlen=window)
        self._output_seen = _Window(window)
        self._calls_seen = _Window(window)
        self._polling = False
        self._epoch = 0
        self._stale_steps = 0
        self._stale_since = self._mark()
        self._stale_subjects: dict[str, None] = {}

    @property
    def verdict(self) -> LoopVerdict | None:
        """The verdict this detector returned, if any."""
        return self._verdict

    @property
    def steps(self) -> int:
        """How many observations this detector has seen."""
        return self._step

    def observe(self, obs: Observation) -> LoopVerdict | None:
        """Record one observation; return a verdict the first time a signal fires."""
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
            verdict = self._observe_node(obs)
        self._verdict = verdict
        return verdict

    def memory(self) -> dict[str, int]:
        """Sizes of the bounded structures, for tests and debugging."""
        return {
            "tools": len(self._tools),
            "tool_fingerprints": len(self._tool_occurrences),
            "tool_window": len(self._tool_seen),
            "nodes": len(self._nodes),
            "node_window": len(self._node_seen),
            "outputs": len(self._outputs),
            "output_window": len(self._output_seen) + len(self._calls_seen),
            "message_cache": len(self._fingerprint),
            "stale_subjects": len(self._stale_subjects),
        }

    def _mark(self) -> _Mark:
        return _Mark(self._step, self._tokens, self._model_calls)

    # -- tools --

    def _observe_tool(self, obs: ToolObservation) -> LoopVerdict | None:
        result = _error_key(obs.result) if obs.error else obs.result
        fp = self._fingerprint(("tool", obs.tool, obs.args, result, obs.error))
        is_new = fp not in self._tool_seen
        self._tool_seen.push(fp)
        if is_new:
            self._epoch += 1

        limit = self.settings.max_repeats_for(obs.tool)
        allowed = obs.tool in self.settings.allow
        span = max(self.settings.window, limit) if allowed else self.settings.window
        cutoff = self._tool_cutoff(span - 1)  # the current call is the last of the span
        earlier = [e for e in self._tool_occurrences.get(fp, ()) if e.mark.step >= cutoff]
        turn = self._model_calls or self._step  # without model observations every call is a turn
        entry = _ToolEntry(fp, turn, self._epoch, self._mark())
        self._push_tool(entry)

        counted = [*_repeats_of(earlier, self._epoch), entry]
        repeats = len({e.turn for e in counted})
        if repeats >= limit:
            outcome = "failed the same way" if obs.error else "got the same result"
            return self._verdict_from(
                "repeated_tool_call",
                obs.tool,
                repeats,
                counted[0].mark,
                f"tool {obs.tool!r} was called {repeats} times with the same arguments and {outcome} "
                f"each time, with nothing new in between (limit {limit})",
            )
        self._polling = allowed
        if allowed:  # a repeat within the tool's own limit is the polling it may do
            self._progress()
            return None
        return self._after(is_new, obs.tool)

    def _push_tool(self, entry: _ToolEntry) -> None:
        self._tools.append(entry)
        self._tool_occurrences.setdefault(entry.fp, deque()).append(entry)
        while len(self._tools) > self._tool_span:
            old = self._tools.popleft()
            occurrences = self._tool_occurrences[old.fp]
            occurrences.popleft()
            if not occurrences:
                del self._tool_occurrences[old.fp]

    def _tool_cutoff(self, count: int) -> int:
        """The step of the oldest of the last ``count`` tool calls (past the end if none)."""
        if count <= 0 or not self._tools:
            return self._step
        return self._tools[max(0, len(self._tools) - count)].mark.step

    # -- nodes --

    def _observe_node(self, obs: NodeObservation) -> LoopVerdict | None:
        fp = self._fingerprint(("node", obs.node, _mask_counters(obs.update)))
        is_new = fp not in self._node_seen
        self._node_seen.push(fp)
        if is_new and not self._fingerprint.saw_ai_message:
            self._epoch += 1  # new state that is not a model's own reply
        nodes = self._nodes
        nodes.append(_NodeEntry(fp, obs.node, self._mark()))

        repeats = self.settings.max_repeats
        for period in self._periods:
            if len(nodes) > period and nodes[-1 - period].fp == fp:
                run = min(self._cycle_runs[period] + 1, period * (repeats - 1))
            else:
                run = 0
            self._cycle_runs[period] = run
            if run >= period * (repeats - 1) and not self._polling:
                block = [nodes[i] for i in range(len(nodes) - run - period, len(nodes) - run)]
                if len({e.fp for e in block}) > 1:
                    subject = " -> ".join(e.node for e in block)
                    return self._verdict_from(
                        "cycle",
                        subject,
                        repeats,
                        block[-1].mark,
                        f"the graph went through {subject} {repeats} times in a row with identical updates",
                    )
        return self._after(is_new, obs.node)

    # -- model replies --

    def _observe_model(self, obs: ModelObservation) -> LoopVerdict | None:
        text = normalize_text(obs.text)
        calls_fp = self._fingerprint(tuple(obs.tool_calls))
        fp = self._fingerprint(("model", text, calls_fp))
        allow = self.settings.allow
        self._polling = bool(obs.tool_calls) and all(name in allow for name, _ in obs.tool_calls)
        # A reply that requests tools is judged by repeated_tool_call once its results are in
        # (still before the next model call): the same request may get a new answer. Its
        # novelty is its request; the words around it do not make it new.
        judged = "" if obs.tool_calls else text
        similar: list[_OutputEntry] = []
        if judged:
            candidates = [e for e in self._outputs if e.text]
            if candidates:
                matches = process.extract(
                    judged,
                    [e.text for e in candidates],
                    scorer=fuzz.ratio,
                    processor=None,
                    score_cutoff=self.settings.similarity * 100,
                    limit=None,
                )
                similar = sorted((candidates[index] for _, _, index in matches), key=lambda e: e.mark.step)
        if obs.tool_calls:
            novel = calls_fp not in self._calls_seen
        else:
            novel = fp not in self._output_seen and not similar
        self._output_seen.push(fp)
        self._calls_seen.push(calls_fp)
        if novel:
            self._epoch += 1
        entry = _OutputEntry(fp, calls_fp, judged, self._epoch, self._mark())
        self._outputs.append(entry)

        subject = obs.model or "model"
        counted = [*_repeats_of(similar, self._epoch), entry]
        if len(counted) >= self.settings.max_repeats:
            return self._verdict_from(
                "repeated_output",
                subject,
                len(counted),
                counted[0].mark,
                f"the model gave {len(counted)} near-identical replies with nothing new in between "
                f"(similarity >= {self.settings.similarity:g})",
            )
        return self._after(novel, subject)

    # -- progress --

    def _progress(self) -> None:
        self._stale_steps = 0
        self._stale_since = self._mark()
        self._stale_subjects.clear()

    def _after(self, is_new: bool, subject: str) -> LoopVerdict | None:
        if is_new:
            self._progress()
            return None
        self._stale_steps += 1
        if len(self._stale_subjects) < 8:
            self._stale_subjects[subject] = None
        limit = self.settings.max_steps_without_progress
        if self._stale_steps >= limit and not self._polling:
            subjects = ", ".join(self._stale_subjects)
            return self._verdict_from(
                "no_progress",
                subjects,
                self._stale_steps,
                self._stale_since,
                f"{self._stale_steps} steps in a row brought no new tool result, state or reply "
                f"(limit {limit}; repeating: {subjects})",
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
