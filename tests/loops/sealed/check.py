"""Sanity check of the SEALED scenario set: runs every scenario with a plain counting callback.

Usage (from the repository root)::

    .venv/bin/python -m tests.loops.sealed.check            # run all (twice), assert the invariants, print a table
    .venv/bin/python -m tests.loops.sealed.check --trace X  # print every model reply of scenario X, numbered

Each scenario also runs twice more to check that it is deterministic and that an exception raised by a callback
(at a model call, and at the first tool call) propagates out of ``run``.

The table's ``1st-rep`` column is the first model call whose reply (digits and hex masked) equals an earlier
reply exactly: a cross-check of hand-written ``loop_start_call`` labels for loops that repeat verbatim.
"""

import argparse
import inspect
import logging
import re
import sys
import time
from collections import Counter
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, LLMResult
from langgraph.types import Command

from tests.loops.sealed.scenarios import HEALTHY_ARCHETYPES, LOOPING_ARCHETYPES, SCENARIOS, SealedScenario

MIN_SCENARIOS = 64
MIN_PER_KIND = 32
MIN_ARCHETYPES = 25
MIN_CALLS_AFTER_START = 12
MIN_PER_STYLE = 20

_MASK = re.compile(r"\b(?:[0-9a-f]{6,}|\d+(?:\.\d+)?)\b", re.IGNORECASE)


class CallCounter(BaseCallbackHandler):
    """Counts model calls and records each reply in order."""

    raise_error = True

    def __init__(self) -> None:
        self.model_calls = 0
        self.tool_calls = 0
        self.replies: list[str] = []
        self.events: list[str] = []  # replies and tool results in order, for --trace

    def on_chat_model_start(
        self, serialized: dict[str, Any], messages: list[list[BaseMessage]], *, run_id: UUID, **kwargs: Any
    ) -> None:
        self.model_calls += 1

    def on_llm_start(self, serialized: dict[str, Any], prompts: list[str], *, run_id: UUID, **kwargs: Any) -> None:
        self.model_calls += 1

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        generation = response.generations[0][0]
        message = generation.message if isinstance(generation, ChatGeneration) else None
        if isinstance(message, AIMessage):
            text = message.content if isinstance(message.content, str) else str(message.content)
            calls = "; ".join(f"{c['name']}({sorted(c['args'].items())})" for c in message.tool_calls)
            self.replies.append(f"{text} || {calls}" if calls else text)
        else:
            self.replies.append(generation.text)
        self.events.append(f"M{len(self.replies):<4} {self.replies[-1]!r}")

    def on_tool_start(self, serialized: dict[str, Any], input_str: str, *, run_id: UUID, **kwargs: Any) -> None:
        self.tool_calls += 1

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        if isinstance(output, Command):  # a handoff; its repr carries random message ids
            self.events.append(f"  tool -> Command(goto={output.goto!r})")
            return
        content = getattr(output, "content", output)
        self.events.append(f"  tool {str(content)!r}")

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self.events.append(f"  tool raised {error!r}")


class StopRun(Exception):
    """Raised by ``Stopper`` to check that a callback's exception ends the run."""


class Stopper(BaseCallbackHandler):
    """Raises ``StopRun`` at the ``at``-th model call, or at the first tool call when ``at`` is 0."""

    raise_error = True

    def __init__(self, at: int) -> None:
        self.at = at
        self.model_calls = 0

    def on_chat_model_start(
        self, serialized: dict[str, Any], messages: list[list[BaseMessage]], *, run_id: UUID, **kwargs: Any
    ) -> None:
        self.model_calls += 1
        if self.model_calls == self.at:
            raise StopRun(f"stopped at model call {self.at}")

    def on_tool_start(self, serialized: dict[str, Any], input_str: str, *, run_id: UUID, **kwargs: Any) -> None:
        if self.at == 0:
            raise StopRun("stopped at the first tool call")


def propagates(scenario: SealedScenario, at: int) -> bool:
    """Whether an exception raised by a callback comes out of ``scenario.run``."""
    manager_log = logging.getLogger("langchain_core.callbacks.manager")
    level = manager_log.level
    manager_log.setLevel(logging.CRITICAL)  # it logs every handler error before re-raising it
    try:
        scenario.run([Stopper(at)])
    except StopRun:
        return True
    finally:
        manager_log.setLevel(level)
    return False


def first_exact_repeat(replies: list[str]) -> int | None:
    seen: set[str] = set()
    for index, reply in enumerate(replies, start=1):
        key = _MASK.sub("#", reply)
        if key in seen:
            return index
        seen.add(key)
    return None


def run_one(scenario: SealedScenario) -> tuple[CallCounter, float]:
    counter = CallCounter()
    started = time.perf_counter()
    scenario.run([counter])
    return counter, time.perf_counter() - started


def uses(scenario: SealedScenario, needle: str) -> bool:
    return needle in inspect.getsource(scenario.run)


def trace(name: str, tail: int = 170) -> None:
    (scenario,) = [s for s in SCENARIOS if s.name == name]
    counter, _ = run_one(scenario)
    print(f"{scenario.name} [{scenario.archetype}] looping={scenario.looping} start={scenario.loop_start_call}")
    for event in counter.events:
        marker = ">> " if event.startswith(f"M{scenario.loop_start_call} ") else "   "
        print(f"{marker}{event[:tail]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trace", help="print the numbered model replies of one scenario")
    args = parser.parse_args()
    if args.trace:
        trace(args.trace)
        return 0

    names = [s.name for s in SCENARIOS]
    duplicates = [n for n, c in Counter(names).items() if c > 1]
    assert not duplicates, f"duplicate names: {duplicates}"
    looping = [s for s in SCENARIOS if s.looping]
    healthy = [s for s in SCENARIOS if not s.looping]
    archetypes = {s.archetype for s in SCENARIOS}
    assert len(SCENARIOS) >= MIN_SCENARIOS, len(SCENARIOS)
    assert len(looping) >= MIN_PER_KIND, len(looping)
    assert len(healthy) >= MIN_PER_KIND, len(healthy)
    assert len(archetypes) >= MIN_ARCHETYPES, sorted(archetypes)
    for s in SCENARIOS:
        assert s.archetype in (LOOPING_ARCHETYPES if s.looping else HEALTHY_ARCHETYPES), s.name
        assert (s.loop_start_call is not None) == s.looping, s.name
        assert s.loop_start_call is None or s.loop_start_call >= 1, s.name
    for kind in (LOOPING_ARCHETYPES, HEALTHY_ARCHETYPES):
        missing = [a for a in kind if a not in archetypes]
        assert not missing, f"archetypes without a scenario: {missing}"
    with_agent = {s.name for s in SCENARIOS if uses(s, "_run_agent(") or uses(s, "create_agent(")}
    with_graph = {s.name for s in SCENARIOS if uses(s, "StateGraph(")}
    assert len(with_agent) >= MIN_PER_STYLE, len(with_agent)
    assert len(with_graph) >= MIN_PER_STYLE, len(with_graph)

    header = (
        f"{'name':44} {'archetype':26} {'loop':5} {'start':>5} {'calls':>5} {'tools':>5} {'1st-rep':>7} {'secs':>6}"
    )
    print(header)
    print("-" * len(header))
    failures: list[str] = []
    started = time.perf_counter()
    for s in SCENARIOS:
        try:
            counter, seconds = run_one(s)
        except Exception as exc:  # report every failing scenario, then fail the check
            failures.append(f"{s.name}: raised {exc!r}")
            print(f"{s.name:44} {s.archetype:26} ERROR {exc!r}")
            continue
        again, _ = run_one(s)
        if again.events != counter.events:
            failures.append(f"{s.name}: a second run differs (not deterministic)")
        stop_at = s.loop_start_call + 1 if s.loop_start_call else max(1, counter.model_calls // 2)
        if not propagates(s, stop_at):
            failures.append(f"{s.name}: an exception raised at model call {stop_at} did not propagate")
        if counter.tool_calls and not propagates(s, 0):
            failures.append(f"{s.name}: an exception raised at the first tool call did not propagate")
        repeat = first_exact_repeat(counter.replies)
        print(
            f"{s.name:44} {s.archetype:26} {s.looping!s:5} {s.loop_start_call or '-':>5} {counter.model_calls:>5} "
            f"{counter.tool_calls:>5} {repeat or '-':>7} {seconds:6.2f}"
        )
        if counter.model_calls == 0:
            failures.append(f"{s.name}: no model call was seen")
        if s.loop_start_call is not None and counter.model_calls < s.loop_start_call + MIN_CALLS_AFTER_START:
            failures.append(f"{s.name}: {counter.model_calls} calls < {s.loop_start_call} + 12")
    total = time.perf_counter() - started
    print("-" * len(header))
    per_archetype = Counter((s.archetype, s.looping) for s in SCENARIOS)
    print(
        "per archetype: "
        + ", ".join(f"{a}={n}" for (a, _), n in sorted(per_archetype.items(), key=lambda x: (x[0][1], x[0][0])))
    )
    print(
        f"{len(SCENARIOS)} scenarios: {len(looping)} looping, {len(healthy)} progressing; "
        f"{len(archetypes)} archetypes ({len({s.archetype for s in looping})} looping, "
        f"{len({s.archetype for s in healthy})} progressing); "
        f"create_agent {len(with_agent)} ({len(with_agent - with_graph)} without a StateGraph), "
        f"StateGraph {len(with_graph)} ({len(with_graph & with_agent)} also with create_agent); "
        f"total {total:.1f}s"
    )
    for failure in failures:
        print("FAIL", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
