"""Self-check of the sealed split #2 scenarios: ``python -m tests.loops.sealed2.check``.

Runs every scenario with a small counting callback of its own (no detector involved) and asserts the set's
invariants: unique names, counts and archetype coverage, normal completion, determinism, loop length past the
labelled loop start, token usage on every model call, and that an exception raised by a callback at a model call
propagates out of ``run()``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import LLMResult

from ._kit import HEALTHY_ARCHETYPES, LOOPING_ARCHETYPES, STYLE
from .scenarios import SCENARIOS, SealedScenario

MIN_LOOPING = 32
MIN_PROGRESSING = 32
MIN_ARCHETYPES = 25
MIN_PER_STYLE = 20
MIN_LOOP_TAIL = 12
# Archetypes whose loop repeats a model reply exactly: the first exact repeat must be the labelled loop start.
EXACT_ARCHETYPES = frozenset(
    {
        "stuck_same_call",
        "volatile_result_loop",
        "error_retry_loop",
        "ab_alternation",
        "rotation_loop",
        "supervisor_pingpong",
        "repeated_answer_no_input",
        "subgraph_loop",
    }
)

# Scenarios whose repeats are deliberately near-identical rather than exact.
NEAR_REPEATS = frozenset({"kpi_narrative_near_identical"})


class StopRun(Exception):
    """Raised by the counting handler to stop a run at a given model call."""


@dataclass(eq=False)
class Counting(BaseCallbackHandler):
    """Counts model calls in run order and records each reply; optionally raises at one model call."""

    stop_at: int | None = None
    model_calls: int = 0
    tool_calls: int = 0
    replies: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    missing_usage: int = 0
    raise_error: bool = True

    def on_chat_model_start(
        self, serialized: dict[str, Any], messages: list[list[BaseMessage]], *, run_id: UUID, **kwargs: Any
    ) -> None:
        self.model_calls += 1
        if self.stop_at is not None and self.model_calls == self.stop_at:
            raise StopRun(f"stopped at model call {self.model_calls}")

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        message = getattr(response.generations[0][0], "message", None)
        assert isinstance(message, AIMessage), type(message)
        if not message.usage_metadata or not message.usage_metadata.get("total_tokens"):
            self.missing_usage += 1
        calls = sorted(json.dumps([c["name"], c["args"]], sort_keys=True) for c in message.tool_calls)
        self.replies.append(json.dumps([message.content, calls]))
        self.ids.append(",".join(str(c["id"]) for c in message.tool_calls))

    def on_tool_start(self, serialized: dict[str, Any], input_str: str, *, run_id: UUID, **kwargs: Any) -> None:
        self.tool_calls += 1


def first_exact_repeat(replies: Sequence[str]) -> int | None:
    seen: set[str] = set()
    for index, reply in enumerate(replies, start=1):
        if reply in seen:
            return index
        seen.add(reply)
    return None


def run_once(item: SealedScenario, stop_at: int | None = None) -> Counting:
    handler = Counting(stop_at=stop_at)
    item.run([handler])
    return handler


def check_set(items: Sequence[SealedScenario]) -> list[str]:
    problems: list[str] = []
    names = Counter(s.name for s in items)
    problems += [f"duplicate name {n}" for n, c in names.items() if c > 1]
    looping = [s for s in items if s.looping]
    progressing = [s for s in items if not s.looping]
    if len(looping) < MIN_LOOPING:
        problems.append(f"only {len(looping)} looping scenarios")
    if len(progressing) < MIN_PROGRESSING:
        problems.append(f"only {len(progressing)} progressing scenarios")
    archetypes = {s.archetype for s in items}
    if len(archetypes) < MIN_ARCHETYPES:
        problems.append(f"only {len(archetypes)} archetypes")
    if not archetypes & HEALTHY_ARCHETYPES or not archetypes & LOOPING_ARCHETYPES:
        problems.append("both kinds of archetype must be covered")
    for s in items:
        kinds = LOOPING_ARCHETYPES if s.looping else HEALTHY_ARCHETYPES
        if s.archetype not in kinds:
            problems.append(f"{s.name}: archetype {s.archetype} does not match looping={s.looping}")
        if s.looping != (s.loop_start_call is not None):
            problems.append(f"{s.name}: loop_start_call must be set exactly for looping scenarios")
        if s.loop_start_call is not None and s.loop_start_call < 2:
            problems.append(f"{s.name}: a loop cannot start before the second model call")
        if s.name not in STYLE:
            problems.append(f"{s.name}: no style recorded")
    styles = Counter(STYLE[s.name] for s in items)
    agents = styles["create_agent"] + styles["both"]
    graphs = styles["StateGraph"] + styles["both"]
    if agents < MIN_PER_STYLE:
        problems.append(f"only {agents} create_agent scenarios")
    if graphs < MIN_PER_STYLE:
        problems.append(f"only {graphs} StateGraph scenarios")
    return problems


def check_scenario(item: SealedScenario) -> tuple[list[str], Counting, int | None, float]:
    problems: list[str] = []
    item.run([])  # no-op callbacks: the run must simply complete
    t0 = time.perf_counter()
    first = run_once(item)
    elapsed = time.perf_counter() - t0
    second = run_once(item)
    if first.replies != second.replies or first.ids != second.ids:
        problems.append("not deterministic: the two runs' model replies differ")
    if first.missing_usage:
        problems.append(f"{first.missing_usage} model calls without token usage")
    repeat = first_exact_repeat(first.replies)
    if item.loop_start_call is not None:
        if first.model_calls < item.loop_start_call + MIN_LOOP_TAIL:
            problems.append(f"only {first.model_calls} model calls, loop starts at {item.loop_start_call}")
        exact = item.archetype in EXACT_ARCHETYPES and item.name not in NEAR_REPEATS
        if exact and repeat != item.loop_start_call:
            problems.append(f"first exact repeat at {repeat}, labelled loop start {item.loop_start_call}")
        if repeat is not None and repeat < item.loop_start_call:
            problems.append(f"a reply repeats at call {repeat}, before the labelled loop start")
    # A callback raising at a model call must stop the run: try the loop start (or the middle) and the last call,
    # which for human-in-the-loop scenarios falls in a resume invoke.
    middle = item.loop_start_call or first.model_calls // 2 + 1
    for stop_at in sorted({middle, first.model_calls}):
        try:
            run_once(item, stop_at=stop_at)
        except StopRun:
            continue
        problems.append(f"an exception raised by a callback at model call {stop_at} did not propagate")
    return problems, first, repeat, elapsed


def main() -> int:
    started = time.perf_counter()
    # langchain-core logs every exception a handler raises; the propagation check raises on purpose.
    logging.getLogger("langchain_core.callbacks.manager").setLevel(logging.CRITICAL)
    problems = check_set(SCENARIOS)
    one_pass = 0.0
    print("start = labelled loop_start_call; calls/tools = model/tool calls seen; rep = first exact repeated reply")
    header = (
        f"{'name':<40} {'archetype':<26} {'style':<12} {'loop':<5} {'start':>5} {'calls':>5} {'tools':>5} {'rep':>4}"
    )
    print(header)
    print("-" * len(header))
    for item in SCENARIOS:
        try:
            found, counts, repeat, elapsed = check_scenario(item)
        except Exception as exc:
            problems.append(f"{item.name}: raised {type(exc).__name__}: {exc}")
            continue
        problems += [f"{item.name}: {p}" for p in found]
        one_pass += elapsed
        start = "-" if item.loop_start_call is None else str(item.loop_start_call)
        print(
            f"{item.name:<40} {item.archetype:<26} {STYLE[item.name]:<12} {item.looping!s:<5} {start:>5} "
            f"{counts.model_calls:>5} {counts.tool_calls:>5} {repeat or '-'!s:>4}"
            f"  {1000 * elapsed:5.0f} ms"
        )
    looping = sum(s.looping for s in SCENARIOS)
    styles = Counter(STYLE[s.name] for s in SCENARIOS)
    print("-" * len(header))
    print(
        f"{len(SCENARIOS)} scenarios: {looping} looping, {len(SCENARIOS) - looping} progressing; "
        f"{len({s.archetype for s in SCENARIOS})} archetypes; styles {dict(styles)}"
    )
    print(f"one pass {one_pass:.1f} s; total time {time.perf_counter() - started:.1f} s (each scenario run 5 times)")
    if problems:
        print(f"\n{len(problems)} PROBLEMS:")
        for p in problems:
            print(" -", p)
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
