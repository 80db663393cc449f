"""Policies: YAML validated once, at the edge, and compiled into plain objects.

Every problem found in every file is reported together, each with the file, the line and
the field path, so a user fixes a broken policy in one pass.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fnmatch import fnmatchcase
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from guardian.alerts.config import AlertsConfig
from guardian.amounts import METRICS, MICRO_USD, NO_LIMIT, micro_usd
from guardian.errors import PolicyError, PolicyProblem
from guardian.identity import IDENTITY_FIELDS, Identity, IdentityField, IdentityMapping, IdentitySource
from guardian.loops import LOOP_BOUNDS, LoopSettings, Signal
from guardian.pricing import PriceOverride, Pricer, TokenUsage
from guardian.windows import WindowKind

__all__ = [
    "Budget",
    "LoopRule",
    "Match",
    "Policy",
    "PriceOverride",
    "Settings",
    "load_policy",
]

Scope = Literal["run", "thread", "agent", "user", "tenant", "global"]
Action = Literal["kill", "alert", "shadow"]

# -- bounds on numbers ------------------------------------------------------------------------------------
# A number that passes here must work in every store, so the bounds follow what Redis can hold.

# The ledger script runs in Redis's Lua, whose numbers are doubles: integers are exact up to 2**53 (about
# 9.007e15). Limits up to 10**15 (tokens, calls, or micro-dollars, i.e. one billion USD) stay exact with the
# spend and the request the script adds to them, and far below the int64 the counters are packed in.
MAX_COUNT = 10**15
MAX_COST_USD = Decimal(MAX_COUNT) / MICRO_USD
# Redis takes TTLs as integer milliseconds: below a second a hold could expire under a running call and
# let concurrent calls overspend; above a day a crashed process's leaked hold blocks its budgets that long,
# and no model call runs for a day.
MIN_TTL_S = 1.0
MAX_RESERVATION_TTL_S = 86_400.0
# A run kept for more than a (leap) year is no longer a run; a year in ms plus the epoch in ms is far
# inside int64, where 1e17 s overflowed every PEXPIRE.
MAX_RUN_TTL_S = 366 * 86_400.0
# No model's output cap comes near 10M tokens; a larger reserve is a typo that would block every budget.
MAX_TOKENS_SETTING = 10_000_000
# USD per 1M tokens: $1M (a dollar a token) is a thousand times the dearest model today, and prices a
# 10M-token call at 10**13 micro-dollars, well inside MAX_COUNT.
MAX_PRICE_USD = Decimal(1_000_000)


def _not_bool(value: Any) -> Any:
    # YAML 1.1 reads yes/no/on/off/true/false as booleans, which pydantic would take for 1 and 0.
    if isinstance(value, bool):
        raise ValueError(
            f"expected a number, got {str(value).lower()} (YAML reads yes/no/on/off/true/false as booleans)"
        )
    return value


_NotBool = BeforeValidator(_not_bool)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


MAX_HISTORY_KEEP_S = 400 * 86_400.0  # a year and a month: last year's same month stays comparable


class Settings(_Strict):
    on_store_error: Literal["fail_closed", "fail_open"] = "fail_closed"
    unknown_model: Literal["block", "warn"] = "block"
    default_max_output_tokens: Annotated[int, _NotBool] = Field(1024, gt=0, le=MAX_TOKENS_SETTING)
    reservation_ttl_s: Annotated[float, _NotBool] = Field(
        600.0,
        ge=MIN_TTL_S,
        le=MAX_RESERVATION_TTL_S,
        allow_inf_nan=False,
        description="how long a hold survives a crashed process",
    )
    run_ttl_s: Annotated[float, _NotBool] = Field(
        7 * 86_400.0,
        ge=MIN_TTL_S,
        le=MAX_RUN_TTL_S,
        allow_inf_nan=False,
        description="how long a run's counters are kept",
    )
    thread_ttl_s: Annotated[float, _NotBool] = Field(
        30 * 86_400.0,
        ge=MIN_TTL_S,
        le=MAX_RUN_TTL_S,
        allow_inf_nan=False,
        description="how long a thread's lifetime counters are kept after its last call",
    )
    stream_block_tokens: Annotated[int, _NotBool] = Field(
        256, gt=0, le=MAX_TOKENS_SETTING, description="tokens a stream's hold grows by at a time"
    )
    on_low_budget: Literal["refuse", "clamp"] = Field(
        "refuse",
        description="clamp: a call whose output cap does not fit is sent with the cap that does (middleware)",
    )
    min_output_tokens: Annotated[int, _NotBool] = Field(
        64, gt=0, le=MAX_TOKENS_SETTING, description="the smallest output cap clamping sends a call with"
    )
    mode: Literal["enforce", "shadow"] = Field(
        "enforce",
        description="shadow: nothing is refused; every would-be halt is recorded (would_halt) instead",
    )
    history: bool = Field(True, description="record every committed call, cache hit and halt in the spend history")
    history_keep_s: Annotated[float, _NotBool] = Field(
        30 * 86_400.0,
        ge=MIN_TTL_S,
        le=MAX_HISTORY_KEEP_S,
        allow_inf_nan=False,
        description="how long the spend history keeps a record",
    )
    history_max_records: Annotated[int, _NotBool] = Field(
        1_000_000, gt=0, le=100_000_000, description="records kept per tenant's history, about (oldest go first)"
    )


_Price = Annotated[Decimal, _NotBool, Field(ge=0, le=MAX_PRICE_USD)]


class PriceModel(_Strict):
    """USD per 1M tokens."""

    input: _Price
    output: _Price
    cache_read: _Price | None = None
    cache_write: _Price | None = None


class MatchModel(_Strict):
    agent: str = "*"
    user: str = "*"
    tenant: str = "*"
    tags: list[str] = Field(default_factory=list)


_Count = Annotated[int, _NotBool, Field(ge=0, le=MAX_COUNT)]


class LimitsModel(_Strict):
    input_tokens: _Count | None = None
    output_tokens: _Count | None = None
    total_tokens: _Count | None = None
    cost_usd: Annotated[Decimal, _NotBool, Field(ge=0, le=MAX_COST_USD)] | None = None
    llm_calls: _Count | None = None
    tool_calls: _Count | None = None

    @model_validator(mode="after")
    def _at_least_one(self) -> LimitsModel:
        if all(getattr(self, m) is None for m in METRICS):
            raise ValueError(f"set at least one limit ({', '.join(METRICS)})")
        return self


# The schema names each limit for its own type and error messages; the metrics themselves are Amounts' fields.
if tuple(LimitsModel.model_fields) != METRICS:  # pragma: no cover - a developer's mistake, caught on import
    raise ImportError(f"policy limits {tuple(LimitsModel.model_fields)} do not match the ledger's metrics {METRICS}")


class BudgetModel(_Strict):
    name: str = Field(min_length=1, max_length=128)
    scope: Scope
    window: WindowKind = "run"
    timezone: str = "UTC"
    match: MatchModel = Field(default_factory=MatchModel)
    limits: LimitsModel
    action: Action = "kill"
    alert_at: list[Annotated[float, _NotBool, Field(allow_inf_nan=False)]] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {value!r} (use an IANA name like 'Europe/Paris')") from exc
        return value

    @field_validator("alert_at")
    @classmethod
    def _fractions(cls, value: list[float]) -> list[float]:
        for fraction in value:
            if not 0 < fraction <= 1:
                raise ValueError(f"alert_at fractions must be in (0, 1], got {fraction}")
        return sorted(set(value))

    @model_validator(mode="after")
    def _window_fits_scope(self) -> BudgetModel:
        if self.window == "run" and self.scope == "thread":
            raise ValueError(
                "scope thread needs window lifetime (the whole conversation) or a calendar window "
                "(hour, day, week or month)"
            )
        if self.window == "run" and self.scope != "run":
            raise ValueError(
                f"scope {self.scope} needs a calendar window (hour, day, week or month); "
                "window 'run' is for scope run only"
            )
        if self.window == "lifetime" and self.scope != "thread":
            raise ValueError("window 'lifetime' is for scope thread only (a conversation's whole life)")
        return self


# A loop detector keeps an allowed tool's calls up to its max_repeats, so that bounds its memory; and an
# agent stuck for 100,000 steps has long spent any budget: larger values are typos.
DEFAULT_ALERT_ONLY: frozenset[Signal] = frozenset({"no_progress"})
_LOOP_DEFAULTS = LoopSettings()  # defaults and bounds live in guardian.loops; these fields only locate problems


def _bounded(name: str, default: int | None = None) -> Any:
    low, high = LOOP_BOUNDS[name]
    return Field(ge=low, le=high) if default is None else Field(default, ge=low, le=high)


class AllowModel(_Strict):
    tool: str = Field(min_length=1)
    max_repeats: Annotated[int, _NotBool] = _bounded("allow")


class LoopRuleModel(_Strict):
    name: str = Field(min_length=1, max_length=128)
    match: MatchModel = Field(default_factory=MatchModel)
    window: Annotated[int, _NotBool] = _bounded("window", _LOOP_DEFAULTS.window)
    max_repeats: Annotated[int, _NotBool] = _bounded("max_repeats", _LOOP_DEFAULTS.max_repeats)  # at most window
    max_tool_repeats: Annotated[int, _NotBool] = _bounded("max_tool_repeats", _LOOP_DEFAULTS.max_tool_repeats)
    similarity: Annotated[float, _NotBool] = Field(_LOOP_DEFAULTS.similarity, gt=0, le=1, allow_inf_nan=False)
    max_steps_without_progress: Annotated[int, _NotBool] = _bounded(
        "max_steps_without_progress", _LOOP_DEFAULTS.max_steps_without_progress
    )
    allow: list[AllowModel] = Field(default_factory=list)
    action: Action = "kill"
    # no_progress is the one signal judged on the absence of news rather than on an exact repeat: by
    # default it reports and leaves halting to the others (and to budgets).
    alert_on: list[Signal] = Field(default_factory=lambda: list(DEFAULT_ALERT_ONLY))

    @field_validator("allow")
    @classmethod
    def _one_limit_per_tool(cls, value: list[AllowModel]) -> list[AllowModel]:
        # A mapping would silently keep the last of two limits for one tool.
        seen: set[str] = set()
        for item in value:
            if item.tool in seen:
                raise ValueError(f"tool {item.tool!r} is listed twice: give each tool one max_repeats")
            seen.add(item.tool)
        return value

    @model_validator(mode="after")
    def _settings_are_valid(self) -> LoopRuleModel:
        # LoopSettings owns the rules across fields (window >= max_repeats, allow limits >= 2); building it
        # here turns its ValueError into a located problem instead of a traceback at compile time.
        self.to_settings()
        return self

    def to_settings(self) -> LoopSettings:
        return LoopSettings(
            window=self.window,
            max_repeats=self.max_repeats,
            max_tool_repeats=self.max_tool_repeats,
            similarity=self.similarity,
            max_steps_without_progress=self.max_steps_without_progress,
            allow={a.tool: a.max_repeats for a in self.allow},
        )


_MODEL_REF = re.compile(r"^[A-Za-z0-9_.\-]+:\S+$")


class RoutingWhenModel(_Strict):
    """When a routing rule applies: every condition given must hold."""

    budget: str | None = Field(None, min_length=1)
    used_at_least: Annotated[float, _NotBool] | None = Field(None, gt=0, le=1, allow_inf_nan=False)
    loop_suspected: bool | None = None
    run_cost_at_least: Annotated[Decimal, _NotBool] | None = Field(None, ge=0, le=MAX_COST_USD)

    @model_validator(mode="after")
    def _complete(self) -> RoutingWhenModel:
        if (self.budget is None) != (self.used_at_least is None):
            raise ValueError("budget and used_at_least go together: route when <budget> is at least <share> used")
        if self.budget is None and self.loop_suspected is None and self.run_cost_at_least is None:
            raise ValueError("give a condition: budget + used_at_least, loop_suspected or run_cost_at_least")
        return self


class RoutingRuleModel(_Strict):
    name: str = Field(min_length=1, max_length=128)
    match: MatchModel = Field(default_factory=MatchModel)
    when: RoutingWhenModel
    route: dict[str, str] = Field(min_length=1)

    @field_validator("route")
    @classmethod
    def _provider_model(cls, value: dict[str, str]) -> dict[str, str]:
        for name in (*value, *value.values()):
            if not _MODEL_REF.match(name):
                raise ValueError(f"{name!r} is not 'provider:model' (e.g. 'openai:gpt-4o-mini')")
        for source, target in value.items():
            if source == target:
                raise ValueError(f"{source!r} is routed to itself")
        return value


_SOURCE = re.compile(r"(context|metadata)\.([A-Za-z_][A-Za-z0-9_]*)")


class IdentityModel(_Strict):
    """Where runs' names come from: ``context.<name>`` or ``metadata.<name>``; ``required`` names refuse a run
    that has none."""

    agent: str | None = None
    user: str | None = None
    tenant: str | None = None
    required: list[Literal["agent", "user", "tenant"]] = Field(default_factory=list)

    @field_validator("agent", "user", "tenant")
    @classmethod
    def _is_source(cls, value: str | None) -> str | None:
        if value is not None and not _SOURCE.fullmatch(value):
            raise ValueError(f"{value!r} is not a source: write context.<name> or metadata.<name>")
        return value

    def compile(self) -> IdentityMapping:
        sources: dict[IdentityField, IdentitySource] = {}
        for name in IDENTITY_FIELDS:
            value = getattr(self, name)
            if value is not None:
                kind, key = value.split(".", 1)
                sources[name] = IdentitySource(kind, key)
        return IdentityMapping(MappingProxyType(sources), frozenset(self.required))


class PolicyFileModel(_Strict):
    version: Literal[1]
    settings: Settings = Field(default_factory=Settings)
    prices: dict[str, PriceModel] = Field(default_factory=dict)
    budgets: list[BudgetModel] = Field(default_factory=list)
    loops: list[LoopRuleModel] | None = None
    routing: list[RoutingRuleModel] = Field(default_factory=list)
    alerts: AlertsConfig | None = None
    identity: IdentityModel | None = None


# -- compiled objects ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Match:
    agent: str = "*"
    user: str = "*"
    tenant: str = "*"
    tags: frozenset[str] = frozenset()

    def matches(self, identity: Identity) -> bool:
        return (
            fnmatchcase(identity.agent, self.agent)
            and fnmatchcase(identity.user, self.user)
            and fnmatchcase(identity.tenant, self.tenant)
            and self.tags <= identity.tags
        )


@dataclass(frozen=True, slots=True)
class Budget:
    name: str
    scope: Scope
    window: WindowKind
    timezone: ZoneInfo
    match: Match
    limits: tuple[int, ...]  # one per metric; cost in micro-USD; NO_LIMIT where unset
    action: Action
    alert_at: tuple[float, ...] = ()

    @property
    def enforced(self) -> bool:
        return self.action == "kill"

    def limited(self) -> dict[str, int]:
        return {m: v for m, v in zip(METRICS, self.limits, strict=True) if v != NO_LIMIT}


@dataclass(frozen=True, slots=True)
class LoopRule:
    name: str
    match: Match
    settings: LoopSettings
    action: Action
    alert_on: frozenset[Signal] = DEFAULT_ALERT_ONLY

    def action_for(self, signal: Signal) -> Action:
        """What a verdict of ``signal`` does: the rule's action, unless the signal only alerts."""
        return "alert" if signal in self.alert_on else self.action


ModelRef = tuple[str, str]  # (provider, model)


@dataclass(frozen=True, slots=True)
class RoutingRule:
    """Send calls of a model to a cheaper one while the rule's conditions hold (tiered inference)."""

    name: str
    match: Match
    route: Mapping[ModelRef, ModelRef]
    budget: str | None = None
    used_at_least: float | None = None
    loop_suspected: bool | None = None
    run_cost_at_least_micro_usd: int | None = None


def model_ref(text: str) -> ModelRef:
    provider, _, model = text.partition(":")
    return provider, model


# What a policy without a `loops:` section gets, budget-only policies included.
DEFAULT_LOOP_RULE = LoopRule(name="default", match=Match(), settings=LoopSettings(), action="kill")


@dataclass(frozen=True)
class Policy:
    settings: Settings = field(default_factory=Settings)
    prices: Mapping[str, PriceOverride] = field(default_factory=dict)
    budgets: tuple[Budget, ...] = ()
    loops: tuple[LoopRule, ...] = (DEFAULT_LOOP_RULE,)
    alerts: AlertsConfig | None = None
    sources: tuple[str, ...] = ()
    identity: IdentityMapping | None = None
    routing: tuple[RoutingRule, ...] = ()

    def budgets_for(self, identity: Identity) -> list[Budget]:
        return [b for b in self.budgets if b.match.matches(identity)]

    def routing_for(self, identity: Identity) -> tuple[RoutingRule, ...]:
        return tuple(r for r in self.routing if r.match.matches(identity))

    def loop_rule_for(self, identity: Identity) -> LoopRule | None:
        """The first matching rule wins, so specific rules go before catch-alls."""
        return next((r for r in self.loops if r.match.matches(identity)), None)

    def budget(self, name: str) -> Budget:
        for b in self.budgets:
            if b.name == name:
                return b
        raise KeyError(name)

    @classmethod
    def from_yaml(cls, *paths: str | os.PathLike[str]) -> Policy:
        return load_policy(paths)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> Policy:
        problems: list[PolicyProblem] = []
        parsed = _validate(dict(data), source, {}, problems)
        if problems or parsed is None:
            raise PolicyError(problems)
        return _compile([(source, {}, parsed)])


# -- loading ---------------------------------------------------------------------------------------------

_DECIMAL = re.compile(r"Decimal\('([^']*)'\)")  # pydantic's bounds on Decimal fields, shown as plain numbers
_ENV = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
Path_ = tuple[str | int, ...]


def load_policy(paths: Iterable[str | os.PathLike[str]], env: Mapping[str, str] | None = None) -> Policy:
    """Load one or more files or directories (``*.yaml``/``*.yml`` inside) into one policy."""
    parsed, problems, _ = _load(paths, os.environ if env is None else env)
    if problems:
        raise PolicyError(problems)
    return _compile(parsed)


@dataclass(frozen=True, slots=True)
class EnvReference:
    """A ``${NAME}`` a policy uses, left unresolved by ``check_policy_without_env``."""

    source: str
    line: int | None
    field: str
    name: str


def check_policy_without_env(
    paths: Iterable[str | os.PathLike[str]],
) -> tuple[list[PolicyProblem], list[EnvReference]]:
    """Every problem of the files that does not depend on an environment variable, and the variables used.

    For CI without the secrets: ``${NAME}`` without a default is not looked up; a field that holds one (or a
    record around it, such as the Slack section that needs a webhook or a token) is not judged.
    """
    _, problems, unresolved = _load(paths, None)
    kept = [p for p in problems if not any(_depends_on(p, ref) for ref in unresolved)]
    return kept, unresolved


def _depends_on(problem: PolicyProblem, ref: EnvReference) -> bool:
    if problem.file != ref.source or not problem.field:
        return False
    return ref.field == problem.field or ref.field.startswith((problem.field + ".", problem.field + "["))


def _load(
    paths: Iterable[str | os.PathLike[str]], environ: Mapping[str, str] | None
) -> tuple[list[tuple[str, dict[Path_, int], PolicyFileModel]], list[PolicyProblem], list[EnvReference]]:
    """Parse, interpolate (``environ`` None: leave variables unresolved, noting them) and validate."""
    problems: list[PolicyProblem] = []
    unresolved: list[EnvReference] = []
    parsed: list[tuple[str, dict[Path_, int], PolicyFileModel]] = []
    files = _expand(paths, problems)
    if not files and not problems:
        problems.append(PolicyProblem("<paths>", None, "", "no policy files given"))
    for file in files:
        source = str(file)
        try:
            raw = file.read_bytes()
        except OSError as exc:
            problems.append(PolicyProblem(source, None, "", f"cannot read: {exc.strerror or exc}"))
            continue
        text = _decode(raw, source, problems)
        if text is None:
            continue
        loaded = _parse_yaml(text, source, problems)
        if loaded is None:
            continue
        data, lines = loaded
        data = _interpolate(data, (), source, lines, environ, problems, unresolved)
        model = _validate(data, source, lines, problems)
        if model is not None:
            parsed.append((source, lines, model))
    return parsed, problems, unresolved


def _expand(paths: Iterable[str | os.PathLike[str]], problems: list[PolicyProblem]) -> list[Path]:
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            try:
                entries = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
            except OSError as exc:
                problems.append(PolicyProblem(str(path), None, "", f"cannot list: {exc.strerror or exc}"))
                continue
            found = [p for p in entries if p.is_file()]
            # A dangling link is a policy file someone meant to load: skipping it would drop its budgets.
            broken = [p for p in entries if p.is_symlink() and not p.exists()]
            problems.extend(PolicyProblem(str(p), None, "", _broken_link(p)) for p in broken)
            if not found and not broken:
                problems.append(PolicyProblem(str(path), None, "", "directory holds no .yaml/.yml files"))
            out.extend(found)
        elif path.is_file():
            out.append(path)
        elif path.is_symlink():
            problems.append(PolicyProblem(str(path), None, "", _broken_link(path)))
        else:
            problems.append(PolicyProblem(str(path), None, "", "no such file or directory"))
    return out


def _broken_link(path: Path) -> str:
    try:
        target = os.readlink(path)
    except OSError:  # gone since we looked
        return "broken symlink"
    return f"broken symlink (to {target}): fix or remove it"


def _decode(raw: bytes, source: str, problems: list[PolicyProblem]) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        problems.append(
            PolicyProblem(
                source,
                line,
                "",
                f"not UTF-8: byte 0x{raw[exc.start]:02x} at offset {exc.start} (save the file as UTF-8)",
            )
        )
        return None


# A policy is a few hundred values, a dozen levels deep. These bounds answer a hostile file at once: PyYAML
# composes recursively (5,000 nested lists raised RecursionError), and every walk of a file expands its
# aliases (a 300-byte "billion laughs" file is 9**9 values once expanded, and ran out of memory).
MAX_YAML_DEPTH = 64
MAX_YAML_VALUES = 100_000  # after alias expansion
MAX_YAML_CHARS = 10_000_000  # of scalar text after alias expansion: ${VAR} interpolation copies each use


class _TooComplex(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


class _PolicyLoader(yaml.SafeLoader):
    """A SafeLoader that bounds nesting while it composes and locates values it cannot construct."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self._depth >= MAX_YAML_DEPTH and parent is not None:  # the root is never that deep
            raise _TooComplex(parent.start_mark.line + 1, f"nested deeper than {MAX_YAML_DEPTH} levels")
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        # SafeConstructor lets a ValueError escape without a mark: 2026-02-30, an integer of 5,000 digits.
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read this value: {exc}", node.start_mark
            ) from exc


def _check_expansion(root: yaml.Node) -> None:
    """Bound the document's size and depth as if its aliases were expanded, without expanding them.

    An alias is the node of its anchor, shared, so each node is measured once and its measure reused.
    """
    measured: dict[int, tuple[int, int, int]] = {}  # id(node) -> values, characters, height
    in_progress: set[int] = set()

    def measure(node: yaml.Node, depth: int) -> tuple[int, int, int]:
        line = node.start_mark.line + 1
        known = measured.get(id(node))
        if known is None:
            if id(node) in in_progress:
                raise _TooComplex(line, "an alias refers to an anchor around it, so the value contains itself")
            if depth > MAX_YAML_DEPTH:
                raise _TooComplex(line, f"nested deeper than {MAX_YAML_DEPTH} levels once aliases are expanded")
            in_progress.add(id(node))
            values, chars, height = 1, 0, 1
            if isinstance(node, yaml.ScalarNode):
                chars = len(node.value)
            for child in _children(node):
                child_values, child_chars, child_height = measure(child, depth + 1)
                values, chars, height = values + child_values, chars + child_chars, max(height, child_height + 1)
                if values > MAX_YAML_VALUES:
                    raise _TooComplex(line, f"more than {MAX_YAML_VALUES} values once aliases are expanded")
                if chars > MAX_YAML_CHARS:
                    raise _TooComplex(line, f"more than {MAX_YAML_CHARS} characters once aliases are expanded")
            in_progress.discard(id(node))
            known = measured[id(node)] = (values, chars, height)
        if depth + known[2] - 1 > MAX_YAML_DEPTH:
            raise _TooComplex(line, f"nested deeper than {MAX_YAML_DEPTH} levels once aliases are expanded")
        return known

    measure(root, 1)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _parse_yaml(
    text: str, source: str, problems: list[PolicyProblem]
) -> tuple[dict[str, Any], dict[Path_, int]] | None:
    lines: dict[Path_, int] = {}
    loader: _PolicyLoader | None = None
    try:
        loader = _PolicyLoader(text)
        node = loader.get_single_node()
        if node is None:
            data = None
        else:
            _check_expansion(node)
            # Lines first: constructing flattens merge keys (<<) into the nodes, in place.
            _index_lines(node, (), lines, source, problems)
            data = loader.construct_document(node)
    except _TooComplex as exc:
        problems.append(PolicyProblem(source, exc.line, "", f"policy too complex: {exc.message}"))
        return None
    except yaml.reader.ReaderError as exc:  # a control character; its position is an index into the text
        at = text.count("\n", 0, int(exc.position)) + 1
        problems.append(PolicyProblem(source, at, "", f"invalid YAML: {exc.reason} (#x{int(exc.character):04x})"))
        return None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc)
        problems.append(PolicyProblem(source, line, "", f"invalid YAML: {reason}"))
        return None
    finally:
        if loader is not None:
            loader.dispose()
    if not isinstance(data, dict):
        problems.append(PolicyProblem(source, 1, "", "a policy file must be a mapping with `version: 1`"))
        return None
    return data, lines


def _index_lines(
    node: yaml.Node, path: Path_, lines: dict[Path_, int], source: str, problems: list[PolicyProblem]
) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                problems.append(
                    PolicyProblem(source, key_node.start_mark.line + 1, _dotted((*path, key)), "duplicate key")
                )
            seen.add(key)
            lines[(*path, key)] = key_node.start_mark.line + 1
            _index_lines(value_node, (*path, key), lines, source, problems)
            lines[(*path, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index_lines(item, (*path, i), lines, source, problems)


def _interpolate(
    value: Any,
    path: Path_,
    source: str,
    lines: Mapping[Path_, int],
    environ: Mapping[str, str] | None,
    problems: list[PolicyProblem],
    unresolved: list[EnvReference],
) -> Any:
    if isinstance(value, dict):
        return {
            k: _interpolate(v, (*path, str(k)), source, lines, environ, problems, unresolved) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_interpolate(v, (*path, i), source, lines, environ, problems, unresolved) for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value

    def substitute(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, default = m.group(1), m.group(2)
        if environ is None:
            if default is None:
                unresolved.append(EnvReference(source, _line_of(lines, path), _dotted(path), name))
                return ""
            return default
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        problems.append(
            PolicyProblem(
                source,
                _line_of(lines, path),
                _dotted(path),
                f"environment variable {name} is not set (use ${{{name}:-default}} for a fallback)",
            )
        )
        return ""

    return _ENV.sub(substitute, value)


def _validate(
    data: dict[str, Any], source: str, lines: Mapping[Path_, int], problems: list[PolicyProblem]
) -> PolicyFileModel | None:
    _check_unique_names(data, source, lines, problems)
    try:
        return PolicyFileModel.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            loc: Path_ = tuple(p for p in error["loc"] if isinstance(p, str | int))
            message = _DECIMAL.sub(r"\1", error["msg"].removeprefix("Value error, "))
            if error["type"] == "extra_forbidden":
                message = "unknown field" + _did_you_mean(loc)
            elif error["type"] == "missing":
                message = "required field is missing"
            problems.append(PolicyProblem(source, _line_of(lines, loc), _dotted(loc), message))
        return None


def _did_you_mean(loc: Path_) -> str:
    """' (did you mean 'limits'?)' for a misspelt key, else the keys allowed there."""
    if not loc or not isinstance(loc[-1], str):
        return ""
    allowed = _fields_at(PolicyFileModel, loc[:-1])
    if not allowed:
        return ""
    close = difflib.get_close_matches(loc[-1], allowed, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (allowed here: {', '.join(allowed)})"


def _fields_at(model: type[BaseModel], path: Path_) -> list[str]:
    """The keys a policy file may hold at ``path``, read off the pydantic models."""
    annotation: Any = model
    for part in path:
        annotation = _unwrap(annotation)
        if isinstance(part, int):
            args = typing.get_args(annotation)
            if not args:
                return []
            annotation = args[0]
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(part) or next(
                (f for f in annotation.model_fields.values() if f.alias == part), None
            )
            if field is None:
                return []
            annotation = field.annotation
        elif typing.get_origin(annotation) is dict:
            annotation = typing.get_args(annotation)[1]
        else:
            return []
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [f.alias or name for name, f in annotation.model_fields.items()]
    return []


def _unwrap(annotation: Any) -> Any:
    """``X | None`` and ``Annotated[X, ...]`` as ``X``."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            options = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(options) != 1:
                return annotation
            annotation = options[0]
        else:
            return annotation


def _check_unique_names(
    data: dict[str, Any], source: str, lines: Mapping[Path_, int], problems: list[PolicyProblem]
) -> None:
    """On the raw data, so a duplicate is reported beside every other problem of the file."""
    for section in ("budgets", "loops"):
        items = data.get(section)
        if not isinstance(items, list):
            continue
        first: dict[str, int] = {}
        for i, item in enumerate(items):
            name = item.get("name") if isinstance(item, dict) else None
            if not isinstance(name, str):
                continue
            if name in first:
                problems.append(
                    PolicyProblem(
                        source,
                        _line_of(lines, (section, i, "name")),
                        f"{section}[{i}].name",
                        f"name {name!r} is already used by {section}[{first[name]}]",
                    )
                )
            first.setdefault(name, i)


def _compile(parsed: Sequence[tuple[str, Mapping[Path_, int], PolicyFileModel]]) -> Policy:
    problems: list[PolicyProblem] = []
    settings: dict[str, Any] = {}
    prices: dict[str, PriceOverride] = {}
    budgets: list[Budget] = []
    budget_origin: dict[str, str] = {}
    loops: list[LoopRule] | None = None
    alerts: AlertsConfig | None = None
    alerts_origin = ""
    identity: IdentityMapping | None = None
    identity_origin = ""
    settings_origin: dict[str, str] = {}
    routing_parsed: list[tuple[str, Mapping[Path_, int], int, RoutingRuleModel]] = []
    for source, lines, model in parsed:
        for name in model.settings.model_fields_set:
            if name in settings_origin and settings_origin[name] != source:
                problems.append(
                    PolicyProblem(
                        source,
                        _line_of(lines, ("settings", name)),
                        f"settings.{name}",
                        f"already set in {settings_origin[name]}: set each setting in one file",
                    )
                )
            settings_origin.setdefault(name, source)
            settings[name] = getattr(model.settings, name)
        for name, price in model.prices.items():
            if name in prices:
                problems.append(
                    PolicyProblem(source, _line_of(lines, ("prices", name)), f"prices.{name}", "price set in two files")
                )
            prices[name] = PriceOverride(price.input, price.output, price.cache_read, price.cache_write)
        for i, b in enumerate(model.budgets):
            if b.name in budget_origin and budget_origin[b.name] != source:
                problems.append(
                    PolicyProblem(
                        source,
                        _line_of(lines, ("budgets", i, "name")),
                        f"budgets[{i}].name",
                        f"budget name {b.name!r} is already defined in {budget_origin[b.name]}",
                    )
                )
            budget_origin.setdefault(b.name, source)
            budgets.append(_compile_budget(b))
        if model.loops is not None:
            loops = (loops or []) + [_compile_loop(r) for r in model.loops]
        routing_parsed += [(source, lines, i, r) for i, r in enumerate(model.routing)]
        if model.alerts is not None:
            if alerts is not None:
                problems.append(
                    PolicyProblem(
                        source,
                        _line_of(lines, ("alerts",)),
                        "alerts",
                        f"alerts already set in {alerts_origin}",
                    )
                )
            alerts, alerts_origin = model.alerts, source
        if model.identity is not None:
            if identity is not None:
                problems.append(
                    PolicyProblem(
                        source, _line_of(lines, ("identity",)), "identity", f"identity already set in {identity_origin}"
                    )
                )
            identity, identity_origin = model.identity.compile(), source
    routing = _compile_routing(routing_parsed, {b.name for b in budgets}, prices, problems)
    if problems:
        raise PolicyError(problems)
    compiled_settings = Settings(**settings)
    rules = (DEFAULT_LOOP_RULE,) if loops is None else tuple(loops)
    if compiled_settings.mode == "shadow":  # every halt becomes a would-be halt: the one place shadow mode is read
        budgets = [dataclasses.replace(b, action="shadow") if b.action == "kill" else b for b in budgets]
        rules = tuple(dataclasses.replace(r, action="shadow") if r.action == "kill" else r for r in rules)
    return Policy(
        settings=compiled_settings,
        prices=MappingProxyType(prices),
        budgets=tuple(budgets),
        loops=rules,
        alerts=alerts,
        sources=tuple(source for source, _, _ in parsed),
        identity=identity,
        routing=routing,
    )


def _compile_routing(
    parsed: Sequence[tuple[str, Mapping[Path_, int], int, RoutingRuleModel]],
    budget_names: set[str],
    prices: Mapping[str, PriceOverride],
    problems: list[PolicyProblem],
) -> tuple[RoutingRule, ...]:
    """Routing rules, each checked against the whole policy: its budget exists, every model in its routes has a
    price, and no route leads to a model that costs more per input or output token."""
    pricer = Pricer(prices)
    per_million = TokenUsage(1_000_000, 0), TokenUsage(0, 1_000_000)
    rules = []
    seen: dict[str, str] = {}
    for source, lines, i, r in parsed:

        def problem(path: Path_, message: str, source: str = source, lines: Mapping[Path_, int] = lines) -> None:
            problems.append(PolicyProblem(source, _line_of(lines, path), _dotted(path), message))

        if r.name in seen:
            problem(("routing", i, "name"), f"routing rule {r.name!r} is already defined in {seen[r.name]}")
        seen.setdefault(r.name, source)
        if r.when.budget is not None and r.when.budget not in budget_names:
            close = difflib.get_close_matches(r.when.budget, budget_names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problem(("routing", i, "when", "budget"), f"no budget named {r.when.budget!r} in the policy{hint}")
        for origin, target in r.route.items():
            costs: dict[str, list[int]] = {}
            for name in (origin, target):
                provider, model = model_ref(name)
                rates = [pricer.cost(provider, model, usage) for usage in per_million]
                known = [rate for rate in rates if rate is not None]
                if len(known) < len(rates):
                    problem(("routing", i, "route", origin), f"no price known for {name!r}: add it under prices:")
                else:
                    costs[name] = known
            if origin in costs and target in costs:
                dearer = [k for k, a, b in zip(("input", "output"), costs[origin], costs[target], strict=True) if b > a]
                if dearer:
                    problem(
                        ("routing", i, "route", origin),
                        f"{target!r} costs more per {' and '.join(dearer)} token than {origin!r}: a route must save",
                    )
        rules.append(
            RoutingRule(
                name=r.name,
                match=_compile_match(r.match),
                route=MappingProxyType({model_ref(a): model_ref(b) for a, b in r.route.items()}),
                budget=r.when.budget,
                used_at_least=r.when.used_at_least,
                loop_suspected=r.when.loop_suspected,
                run_cost_at_least_micro_usd=None
                if r.when.run_cost_at_least is None
                else micro_usd(r.when.run_cost_at_least),
            )
        )
    return tuple(rules)


def _compile_match(m: MatchModel) -> Match:
    return Match(m.agent, m.user, m.tenant, frozenset(m.tags))


def _compile_budget(b: BudgetModel) -> Budget:
    limits = []
    for metric in METRICS:
        value = getattr(b.limits, metric)
        if value is None:
            limits.append(NO_LIMIT)
        elif metric == "cost_usd":
            limits.append(micro_usd(value))
        else:
            limits.append(int(value))
    return Budget(
        name=b.name,
        scope=b.scope,
        window=b.window,
        timezone=ZoneInfo(b.timezone),
        match=_compile_match(b.match),
        limits=tuple(limits),
        action=b.action,
        alert_at=tuple(b.alert_at),
    )


def _compile_loop(r: LoopRuleModel) -> LoopRule:
    return LoopRule(
        name=r.name,
        match=_compile_match(r.match),
        settings=r.to_settings(),
        action=r.action,
        alert_on=frozenset(r.alert_on),
    )


def _line_of(lines: Mapping[Path_, int], path: Path_) -> int | None:
    for end in range(len(path), -1, -1):
        line = lines.get(path[:end])
        if line is not None:
            return line
    return None


def _dotted(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out
