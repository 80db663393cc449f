"""Self-check of the sealed split #3: runs every scenario and validates its shape.

Run from the repository root: ``.venv/bin/python -m tests.loops.sealed3.check``
(``--dump NAME`` prints the model calls of one scenario).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import Counter
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, LLMResult

from .scenarios import SCENARIOS, SealedScenario

HEALTHY = {
    "batch_classification",
    "extraction_map",
    "fanout_summaries",
    "pagination",
    "polling_finishes",
    "retry_then_success",
    "rate_limit_clears",
    "research",
    "edit_test_coding",
    "reread_after_edit",
    "planner_executor",
    "reflection_improves",
    "human_in_the_loop",
    "tool_error_recovers",
    "progress_reports",
    "supervisor_handoff",
    "subgraph_pipeline",
    "multi_turn_chat",
}
LOOPING = {
    "stuck_same_call",
    "volatile_result_loop",
    "error_retry_loop",
    "ab_alternation",
    "paraphrased_reflection",
    "rotation_loop",
    "supervisor_pingpong",
    "repeated_answer_no_input",
    "pagination_stuck",
    "reworded_search_loop",
    "subgraph_loop",
}
# Looping archetypes whose loop start is, by construction, the first verbatim repeat of an earlier reply.
EXACT = {
    "stuck_same_call",
    "volatile_result_loop",
    "error_retry_loop",
    "ab_alternation",
    "rotation_loop",
    "supervisor_pingpong",
    "repeated_answer_no_input",
    "pagination_stuck",
    "subgraph_loop",
}
# Scenarios of those archetypes whose repeats are deliberately not verbatim (near-identical text, or a paging
# argument that changes while the result does not).
NOT_VERBATIM = {"ticket_export_ignores_page", "standup_summary_repeat"}

Signature = tuple[str, tuple[tuple[str, str, str], ...]]


class Boom(RuntimeError):
    """Raised by the failing callback."""


class Recorder(BaseCallbackHandler):
    """Counts model and tool calls and records each model reply."""

    def __init__(self) -> None:
        self.model_calls = 0
        self.tool_calls = 0
        self.replies: list[Signature] = []
        self.usage_missing = 0

    def on_chat_model_start(
        self, serialized: dict[str, Any], messages: list[list[BaseMessage]], *, run_id: UUID, **kwargs: Any
    ) -> None:
        self.model_calls += 1

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        generation = response.generations[0][0]
        assert isinstance(generation, ChatGeneration)
        message = generation.message
        assert isinstance(message, AIMessage)
        if not message.usage_metadata:
            self.usage_missing += 1
        text = message.content if isinstance(message.content, str) else json.dumps(message.content)
        calls = tuple((c["name"], json.dumps(c["args"], sort_keys=True), str(c["id"])) for c in message.tool_calls)
        self.replies.append((text, calls))

    def on_tool_start(self, serialized: dict[str, Any], input_str: str, *, run_id: UUID, **kwargs: Any) -> None:
        self.tool_calls += 1


class FailAt(BaseCallbackHandler):
    """Raises from the n-th model call."""

    raise_error = True

    def __init__(self, at: int) -> None:
        self.at = at
        self.seen = 0

    def on_chat_model_start(
        self, serialized: dict[str, Any], messages: list[list[BaseMessage]], *, run_id: UUID, **kwargs: Any
    ) -> None:
        self.seen += 1
        if self.seen == self.at:
            raise Boom(f"callback failure at model call {self.at}")


def _loose(sig: Signature) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The work a reply asks for: its tool calls (ids aside) if it makes any, else its text."""
    if sig[1]:
        return "", tuple((name, args) for name, args, _ in sig[1])
    return sig[0].strip(), ()


def first_repeat(replies: list[Signature]) -> int | None:
    """1-based index of the first reply asking for the same work as an earlier one."""
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for i, sig in enumerate(replies, 1):
        key = _loose(sig)
        if key in seen:
            return i
        seen.add(key)
    return None


def _kind(scenario: SealedScenario) -> str:
    """A = create_agent, G = hand-built StateGraph, G+A = a graph around create_agent sub-agents."""
    head = scenario.description.split(":")[0]
    return "+".join(k for k, word in (("G", "StateGraph"), ("A", "create_agent")) if word in head)


def _record(scenario: SealedScenario) -> tuple[Recorder, float]:
    rec = Recorder()
    t0 = time.perf_counter()
    scenario.run([rec])
    return rec, time.perf_counter() - t0


def dump(name: str) -> None:
    scenario = next(s for s in SCENARIOS if s.name == name)
    rec, _ = _record(scenario)
    for i, (text, calls) in enumerate(rec.replies, 1):
        mark = " <== loop start" if i == scenario.loop_start_call else ""
        tools = "; ".join(f"{n}({a})" for n, a, _ in calls)
        print(f"{i:3d}{mark}\n     text: {text[:300]!r}\n     tools: {tools[:300]}")
    print(f"model calls={rec.model_calls} tool calls={rec.tool_calls}")


def main() -> None:
    logging.getLogger("langchain_core.callbacks.manager").setLevel(logging.ERROR)  # the failing callback's warnings
    t_start = time.perf_counter()
    problems: list[str] = []
    names = [s.name for s in SCENARIOS]
    dupes = [n for n, c in Counter(names).items() if c > 1]
    if dupes:
        problems.append(f"duplicate names: {dupes}")
    looping = [s for s in SCENARIOS if s.looping]
    healthy = [s for s in SCENARIOS if not s.looping]
    archetypes = Counter(s.archetype for s in SCENARIOS)
    kinds = Counter(
        kind for s in SCENARIOS for kind in ("create_agent", "StateGraph") if kind in s.description.split(":")[0]
    )
    if any(not _kind(s) for s in SCENARIOS):
        problems.append("a description does not start with its structure")
    if len(SCENARIOS) < 64 or len(looping) < 32 or len(healthy) < 32:
        problems.append(f"too few scenarios: {len(looping)} looping / {len(healthy)} progressing")
    if len(archetypes) < 25:
        problems.append(f"only {len(archetypes)} archetypes")
    if kinds["create_agent"] < 20 or kinds["StateGraph"] < 20:
        problems.append(f"structures: {dict(kinds)}")
    if archetypes["paraphrased_reflection"] < 5:
        problems.append("fewer than 5 paraphrased_reflection scenarios")
    for s in SCENARIOS:
        expected = LOOPING if s.looping else HEALTHY
        if s.archetype not in expected:
            problems.append(f"{s.name}: archetype {s.archetype} does not match looping={s.looping}")
        if s.looping != (s.loop_start_call is not None):
            problems.append(f"{s.name}: loop_start_call inconsistent with looping")

    header = (
        f"{'scenario':38} {'archetype':26} {'kind':>4} {'loop':>4} {'start':>5} {'calls':>5} {'tools':>5} "
        f"{'rep':>4} {'ms':>6}"
    )
    print(header)
    print("-" * len(header))
    for s in SCENARIOS:
        try:
            first, elapsed = _record(s)
            second, _ = _record(s)
        except Exception as exc:  # the check reports every failure instead of stopping at the first
            problems.append(f"{s.name}: run failed: {type(exc).__name__}: {exc}")
            continue
        rep = first_repeat(first.replies)
        if first.replies != second.replies:
            problems.append(f"{s.name}: not deterministic")
        if first.usage_missing:
            problems.append(f"{s.name}: {first.usage_missing} replies without usage")
        if first.model_calls != len(first.replies):
            problems.append(f"{s.name}: {first.model_calls} model starts vs {len(first.replies)} ends")
        if s.loop_start_call is not None:
            if first.model_calls < s.loop_start_call + 12:
                problems.append(f"{s.name}: only {first.model_calls} model calls for loop start {s.loop_start_call}")
            if rep is not None and rep < s.loop_start_call:
                problems.append(f"{s.name}: verbatim repeat at call {rep}, before loop start {s.loop_start_call}")
            if s.archetype in EXACT and s.name not in NOT_VERBATIM and rep != s.loop_start_call:
                problems.append(f"{s.name}: first verbatim repeat {rep} != loop start {s.loop_start_call}")
        for at in sorted({min(2, first.model_calls), first.model_calls}):
            try:
                s.run([FailAt(at)])
            except Boom:
                pass
            else:
                problems.append(f"{s.name}: a callback exception at model call {at} did not propagate")
        start = "-" if s.loop_start_call is None else str(s.loop_start_call)
        print(
            f"{s.name:38} {s.archetype:26} {_kind(s):>4} {'yes' if s.looping else 'no':>4} {start:>5} "
            f"{first.model_calls:>5} {first.tool_calls:>5} {rep if rep is not None else '-':>4} {elapsed * 1000:>6.0f}"
        )
    total = time.perf_counter() - t_start
    print("-" * len(header))
    print(
        f"{len(SCENARIOS)} scenarios: {len(looping)} looping, {len(healthy)} progressing; "
        f"{len(archetypes)} archetypes; create_agent={kinds['create_agent']} StateGraph={kinds['StateGraph']}"
    )
    print(f"total time {total:.1f} s")
    if problems:
        print("PROBLEMS:")
        for p in problems:
            print("  -", p)
        sys.exit(1)
    print("OK")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--dump":
        dump(sys.argv[2])
    else:
        main()
