"""Unit tests of guardian.loops: each signal, normalization, the allow list, bounded memory."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.types import Command, Send
from pydantic import BaseModel

from guardian import loops
from guardian.loops import (
    LoopDetector,
    LoopSettings,
    LoopVerdict,
    ModelObservation,
    NodeObservation,
    Observation,
    ToolObservation,
    fingerprint,
    normalize,
    normalize_text,
)


def run(detector: LoopDetector, observations: Iterable[Observation]) -> tuple[int, LoopVerdict] | None:
    """Feed observations in order; the index and verdict of the first signal, if any."""
    for index, obs in enumerate(observations):
        verdict = detector.observe(obs)
        if verdict is not None:
            return index, verdict
    return None


def react(tool: str, args: Any, result: str, *, text: str = "", tokens: int = 100) -> list[Observation]:
    """One ReAct turn as the detector sees it: the reply that requests a call, then the call."""
    return [ModelObservation(text, [(tool, args)], tokens=tokens), ToolObservation(tool, args, result)]


def turns(*steps: tuple[str, Any, str]) -> list[Observation]:
    return [obs for tool, args, result in steps for obs in react(tool, args, result)]


# --- settings -----------------------------------------------------------------------------------


def test_settings_defaults_match_the_policy_defaults() -> None:
    """Defaults: window 20, max_repeats 3, similarity 0.92, 12 steps without progress, no allow."""
    settings = LoopSettings()
    assert (settings.window, settings.max_repeats, settings.similarity) == (20, 3, 0.92)
    assert settings.max_steps_without_progress == 12
    assert dict(settings.allow) == {}


def test_settings_allow_is_a_frozen_hashable_copy() -> None:
    """``allow`` is copied into an immutable mapping, so settings hash and cannot be mutated."""
    source = {"wait_for_job": 30}
    settings = LoopSettings(allow=source)
    source["wait_for_job"] = 2
    assert settings.allow["wait_for_job"] == 30
    assert settings.max_repeats_for("wait_for_job") == 30
    assert settings.max_repeats_for("search") == 3
    with pytest.raises(TypeError):
        settings.allow["x"] = 1  # type: ignore[index]
    assert hash(settings) == hash(LoopSettings(allow={"wait_for_job": 30}))
    assert settings == LoopSettings(allow={"wait_for_job": 30})


def test_invalid_settings_list_every_problem() -> None:
    """Out-of-range settings raise one ValueError that names each problem."""
    with pytest.raises(ValueError, match="invalid loop settings") as caught:
        LoopSettings(max_repeats=1, similarity=0, max_steps_without_progress=0, allow={"t": 1})
    message = str(caught.value)
    for field in ("max_repeats", "similarity", "max_steps_without_progress", "allow['t']"):
        assert field in message
    with pytest.raises(ValueError, match=r"window \(3\) must be at least max_repeats \(5\)"):
        LoopSettings(window=3, max_repeats=5)


# --- normalization ------------------------------------------------------------------------------


def test_normalize_drops_message_and_tool_call_ids() -> None:
    """Two AI messages that differ only in ids, usage and provider metadata normalize the same."""
    first = AIMessage(
        content="Let me look.",
        id="lc_run--1",
        tool_calls=[{"name": "search", "args": {"q": "x"}, "id": "call_1", "type": "tool_call"}],
        usage_metadata={"input_tokens": 5, "output_tokens": 2, "total_tokens": 7},
        response_metadata={"model_name": "gpt-4o-mini", "system_fingerprint": "fp_1"},
    )
    second = AIMessage(
        content="Let me look.",
        id="lc_run--2",
        tool_calls=[{"name": "search", "args": {"q": "x"}, "id": "call_2", "type": "tool_call"}],
    )
    assert normalize(first) == normalize(second)
    assert fingerprint({"messages": [first]}) == fingerprint({"messages": [second]})
    canonical = normalize(first)
    assert not {"id", "usage_metadata", "response_metadata"} & canonical.keys()
    assert canonical["tool_calls"] == [{"name": "search", "args": {"q": "x"}, "type": "tool_call"}]


def test_normalize_drops_tool_message_call_ids_but_keeps_content() -> None:
    """A ToolMessage loses its tool_call_id and id; its content and name stay."""
    a = ToolMessage(content="42 rows", tool_call_id="call_a", name="run_sql", id="m1")
    b = ToolMessage(content="42 rows", tool_call_id="call_b", name="run_sql", id="m2")
    c = ToolMessage(content="43 rows", tool_call_id="call_a", name="run_sql", id="m1")
    assert fingerprint(a) == fingerprint(b) != fingerprint(c)
    assert normalize(a) == {"content": "42 rows", "type": "tool", "name": "run_sql", "status": "success"}


def test_normalize_keeps_ids_that_are_tool_arguments() -> None:
    """``id`` is dropped from messages and tool calls only: {"id": 42} vs {"id": 43} differ."""
    assert normalize({"id": 42, "fields": ["a"]}) == {"id": 42, "fields": ["a"]}
    assert fingerprint({"id": 42}) != fingerprint({"id": 43})
    assert fingerprint({"type": "order", "id": 1}) != fingerprint({"type": "order", "id": 2})
    assert fingerprint({"run_id": 7}) != fingerprint({"run_id": 8})  # e.g. get_workflow_run(run_id=...)


def test_normalize_drops_ids_in_raw_provider_payloads_and_content_blocks() -> None:
    """OpenAI tool calls in additional_kwargs, content blocks and role dicts lose their ids."""
    raw = {"id": "call_9", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    block = {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}
    role = {"role": "assistant", "content": "hi", "id": "msg_1"}
    assert normalize(raw) == {"type": "function", "function": {"name": "f", "arguments": "{}"}}
    assert "id" not in normalize(block)
    assert normalize(role) == {"role": "assistant", "content": "hi"}
    assert normalize({"type": "function_call", "call_id": "x", "run_id": "r", "name": "f"}) == {
        "type": "function_call",
        "name": "f",
    }
    assert normalize({"tool_call_id": "c", "usage_metadata": {}, "response_metadata": {}}) == {}


def test_normalize_is_canonical_for_order_and_container_types() -> None:
    """Key order, tuple vs list and set order do not change the fingerprint."""
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": (1, 2), "a": 1})
    assert fingerprint({"tags": {"x", "y", "z"}}) == fingerprint({"tags": {"z", "y", "x"}})
    assert fingerprint({1: "a"}) == fingerprint({"1": "a"})
    assert fingerprint(1.5) != fingerprint(2.5)
    assert len(fingerprint("x")) == 16


def test_normalize_handles_pydantic_dataclasses_and_langgraph_records() -> None:
    """Pydantic models, dataclasses (Command) and slotted records (Send) become typed dicts."""

    class Plan(BaseModel):
        steps: list[str]

    @dataclasses.dataclass
    class Point:
        x: int

    assert normalize(Plan(steps=["a"])) == {"__type__": "Plan", "steps": ["a"]}
    assert normalize(Point(1)) == {"__type__": "Point", "x": 1}
    command = normalize(Command(update={"messages": [AIMessage(content="hi", id="1")]}, goto=Send("w", {"n": 1})))
    assert command["__type__"] == "Command"
    assert command["update"] == {"messages": [{"content": "hi", "type": "ai", "tool_calls": []}]}
    assert command["goto"]["node"] == "w"
    assert command["goto"]["arg"] == {"n": 1}


def test_normalize_masks_noise_in_failed_tool_messages() -> None:
    """An error ToolMessage that differs only by request id or number fingerprints the same."""
    a = ToolMessage(content="upstream 503 (request 9f8e7d6c5b)", tool_call_id="1", status="error")
    b = ToolMessage(content="upstream 503 (request 0a1b2c3d4e)", tool_call_id="2", status="error")
    ok_a = ToolMessage(content="created #123", tool_call_id="1")
    ok_b = ToolMessage(content="created #124", tool_call_id="2")
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(ok_a) != fingerprint(ok_b)


def test_normalize_text_folds_case_punctuation_and_contractions() -> None:
    """Near-duplicate comparison ignores case, punctuation, spacing and spelled-out contractions."""
    assert normalize_text("I couldn't find it!  Sorry.") == normalize_text("i could not find it, sorry")
    assert normalize_text("Can’t do; won't do.") == "can not do will not do"
    assert normalize_text("Straße — ok") == "strasse ok"


# --- repeated tool call -------------------------------------------------------------------------


def test_repeated_tool_call_fires_on_the_third_identical_call() -> None:
    """Same tool, args and result three times: a verdict after the third call's result, with
    the loop counted from after the first (legitimate) call."""
    detector = LoopDetector()
    trace = turns(*[("search", {"q": "llamas"}, "no results")] * 5)
    found = run(detector, trace)
    assert found is not None
    index, verdict = found
    assert index == 5  # the third ToolObservation: before the fourth model call
    assert verdict.signal == "repeated_tool_call"
    assert verdict.subject == "search"
    assert verdict.repeats == 3
    assert verdict.steps_in_loop == 4  # model, tool, model, tool after the first call
    assert verdict.model_calls == 2
    assert verdict.loop_tokens == 200
    assert "'search'" in verdict.description
    assert "3 times" in verdict.description
    assert "200 tokens" in verdict.description


def test_paging_with_different_arguments_is_progress() -> None:
    """The same tool with a new page each time never fires, even with identical results."""
    trace = turns(*[("list_orders", {"page": n}, "10 orders") for n in range(1, 40)])
    assert run(LoopDetector(), trace) is None


def test_polling_until_the_job_finishes_is_progress() -> None:
    """Same call, changing result (and the same result twice at most): not a loop."""
    results = ["queued", "queued", "running 10%", "running 60%", "running 60%", "done"]
    trace = turns(*[("check_job", {"id": 7}, r) for r in results])
    assert run(LoopDetector(), trace) is None


def test_identical_failures_count_and_a_retry_that_succeeds_does_not() -> None:
    """A retried call that fails the same way (new request ids aside) counts toward repeats;
    two failures then success is fine."""
    failing = [
        obs
        for n in range(3)
        for obs in (
            ModelObservation("", [("charge", {"amount": 5})]),
            ToolObservation("charge", {"amount": 5}, f"HTTP 503 request {n:08x}ab", error=True),
        )
    ]
    found = run(LoopDetector(), failing)
    assert found is not None
    assert found[1].signal == "repeated_tool_call"
    assert "failed the same way" in found[1].description

    recovering = failing[:4] + react("charge", {"amount": 5}, "charged") + react("email", {"to": "a"}, "sent")
    assert run(LoopDetector(), recovering) is None


def test_parallel_duplicates_in_one_turn_count_once() -> None:
    """Three identical calls requested in one reply are one repeat, not three."""
    call = ("lookup", {"sku": "A1"})
    trace: list[Observation] = [ModelObservation("", [call, call, call])]
    trace += [ToolObservation("lookup", {"sku": "A1"}, "in stock")] * 3
    assert run(LoopDetector(), trace) is None


def test_repeats_with_new_work_in_between_are_not_a_loop() -> None:
    """Re-reading the same file between edits of others (new results each time) never fires;
    reading it again with nothing new in between does."""
    trace: list[Observation] = []
    for n in range(6):
        trace += react("read_file", {"path": "cfg.yaml"}, "debug: true")
        trace += react("edit_file", {"path": f"src/m{n}.py"}, f"edited m{n}")
    assert run(LoopDetector(), trace) is None

    stuck = [*trace, *react("read_file", {"path": "cfg.yaml"}, "debug: true")]
    stuck += react("read_file", {"path": "cfg.yaml"}, "debug: true")
    found = run(LoopDetector(), stuck)
    assert found is not None
    assert found[0] == len(stuck) - 1


def test_repeats_must_fall_within_the_window() -> None:
    """Calls of one rotation (X A B C D, repeated) count only inside ``window`` tool calls."""
    rotation: list[tuple[str, dict[str, Any], str]] = [
        ("x", {}, "rx"),
        ("a", {}, "ra"),
        ("b", {}, "rb"),
        ("c", {}, "rc"),
        ("d", {}, "rd"),
    ]
    trace = [ToolObservation(t, args, r) for t, args, r in rotation * 2 + rotation[:1]]  # X at 0, 5, 10
    quiet = LoopSettings(window=10, max_steps_without_progress=100)
    assert run(LoopDetector(quiet), trace) is None
    found = run(LoopDetector(dataclasses.replace(quiet, window=11)), trace)
    assert found is not None
    assert found[0] == 10
    assert found[1].subject == "x"


def test_allowed_tool_gets_its_own_limit() -> None:
    """allow={"wait_for_job": 30}: 29 identical polls pass, the 30th fires; the loop around
    the poll (model replies, node updates) is not a cycle or stall meanwhile."""
    settings = LoopSettings(allow={"wait_for_job": 30})
    poll: list[Observation] = [
        ModelObservation("Still waiting.", [("wait_for_job", {"id": 1})], tokens=10),
        NodeObservation("model", {"messages": [AIMessage(content="Still waiting.")]}),
        ToolObservation("wait_for_job", {"id": 1}, "pending"),
        NodeObservation("tools", {"messages": [ToolMessage(content="pending", tool_call_id="c")]}),
    ]
    found = run(LoopDetector(settings), poll * 40)
    assert found is not None
    index, verdict = found
    assert (verdict.signal, verdict.subject, verdict.repeats) == ("repeated_tool_call", "wait_for_job", 30)
    assert index == 29 * 4 + 2
    assert "limit 30" in verdict.description

    assert run(LoopDetector(), poll * 40) is not None  # without the allowance it is a loop early
    found_default = run(LoopDetector(), poll * 40)
    assert found_default is not None
    assert found_default[0] < 12


# --- cycles -------------------------------------------------------------------------------------


def node(name: str, content: str, *, message_id: str = "") -> NodeObservation:
    return NodeObservation(name, {"messages": [AIMessage(content=content, id=message_id or None)]})


def test_two_node_cycle_fires_after_three_rounds_despite_fresh_ids() -> None:
    """planner/executor updates repeating A, B, A, B, A, B (new message ids each time) is a
    cycle named "planner -> executor"."""
    trace: list[Observation] = []
    for n in range(5):
        trace += [
            node("planner", "do step 1", message_id=f"p{n}"),
            node("executor", "step 1 failed", message_id=f"e{n}"),
        ]
    found = run(LoopDetector(), trace)
    assert found is not None
    index, verdict = found
    assert index == 5
    assert (verdict.signal, verdict.subject, verdict.repeats) == ("cycle", "planner -> executor", 3)
    assert verdict.steps_in_loop == 4


def test_three_node_cycle_and_counters_in_the_state() -> None:
    """A period-3 cycle fires after three rounds even though a top-level counter ticks."""
    trace = [
        NodeObservation(name, {"out": name + " said the same", "revision": n})
        for n in range(5)
        for name in ("draft", "critique", "route")
    ]
    found = run(LoopDetector(), trace)
    assert found is not None
    assert found[0] == 8
    assert found[1].subject == "draft -> critique -> route"


def test_changing_updates_and_identical_parallel_workers_are_not_cycles() -> None:
    """A, B, A, B with new content, and a fan-out of identical worker updates, never fire."""
    progressing = [node(n, f"{n} round {i}") for i in range(10) for n in ("a", "b")]
    assert run(LoopDetector(), progressing) is None
    fan_out: list[Observation] = []
    for batch in range(4):
        fan_out += [node("dispatch", f"batch {batch}")]
        fan_out += [NodeObservation("worker", {"processed": ["ok"]})] * 5
    assert run(LoopDetector(), fan_out) is None


# --- repeated model output ----------------------------------------------------------------------

ANSWER = (
    "I could not find the Q3 revenue figures in the documents you shared. The closest match is the "
    "Q2 board deck, which lists revenue by region but not by quarter. Please send the finance export."
)


def test_near_duplicate_answers_fire_repeated_output() -> None:
    """Three light paraphrases of one answer, with the same feedback between them, fire."""
    variants = [ANSWER, "Sorry, " + ANSWER.replace("could not", "couldn't"), ANSWER.replace("find", "locate")]
    trace: list[Observation] = []
    for text in variants:
        trace += [
            ModelObservation(text, tokens=50, model="gpt-4o-mini"),
            NodeObservation("writer", {"messages": [AIMessage(content=text)]}),
            NodeObservation("checker", {"messages": [HumanMessage(content="Cite a source.")]}),
        ]
    found = run(LoopDetector(), trace)
    assert found is not None
    index, verdict = found
    assert index == 6
    assert (verdict.signal, verdict.subject, verdict.repeats) == ("repeated_output", "gpt-4o-mini", 3)
    assert verdict.loop_tokens == 100
    assert verdict.model_calls == 2


def test_similarity_threshold_is_configurable() -> None:
    """With similarity 1.0 only exact (normalized) repeats count."""
    paraphrases = [ModelObservation(t) for t in (ANSWER, "Sorry, " + ANSWER, ANSWER + " Thanks.")]
    assert run(LoopDetector(LoopSettings(similarity=1.0)), paraphrases) is None
    assert run(LoopDetector(), paraphrases) is not None
    exact = [ModelObservation(t) for t in (ANSWER, ANSWER.upper(), ANSWER + "!")]
    assert run(LoopDetector(LoopSettings(similarity=1.0)), exact) is not None


def test_same_words_with_new_work_in_between_are_not_repeated_output() -> None:
    """A planner saying "Continue." while the executor reports new results is progress."""
    trace: list[Observation] = []
    for n in range(8):
        trace += [
            ModelObservation("Continue with the next step."),
            ModelObservation(f"Step {n}: {n * 17} rows loaded"),
        ]
    assert run(LoopDetector(), trace) is None


def test_replies_requesting_tools_are_left_to_repeated_tool_call() -> None:
    """The same words and call with a changing result (polling) never fire repeated_output."""
    trace: list[Observation] = []
    for pct in range(0, 100, 10):
        trace += react("check_job", {"id": 3}, f"{pct}% done", text="Checking the job again.")
    assert run(LoopDetector(), trace) is None


# --- no progress --------------------------------------------------------------------------------


def test_no_progress_fires_after_the_configured_number_of_stale_steps() -> None:
    """A rotation through five sources (max_repeats out of the way) stalls after 12 stale steps."""
    rotation = [ToolObservation(f"source_{n}", {}, f"r{n}") for n in range(5)]
    found = run(LoopDetector(LoopSettings(max_repeats=10)), rotation * 4)
    assert found is not None
    index, verdict = found
    assert index == 5 + 11
    assert verdict.signal == "no_progress"
    assert verdict.repeats == 12
    assert verdict.steps_in_loop == 12
    assert verdict.subject == "source_0, source_1, source_2, source_3, source_4"


def test_anything_new_resets_the_no_progress_count() -> None:
    """One new tool result every few stale steps keeps the run alive."""
    trace: list[Observation] = []
    for n in range(30):
        trace += [ToolObservation("a", {}, "same"), ToolObservation("b", {}, "same")] * 2
        trace.append(ToolObservation("c", {"n": n}, f"new {n}"))
    assert run(LoopDetector(LoopSettings(max_repeats=100, window=100)), trace) is None


# --- lifecycle, memory, incrementality ----------------------------------------------------------


def test_detector_trips_once_and_reset_rearms_it() -> None:
    """After a verdict observe() returns None and ``verdict`` keeps it; reset() re-arms."""
    detector = LoopDetector()
    trace = turns(*[("search", {"q": "x"}, "none")] * 3)
    found = run(detector, trace)
    assert found is not None
    assert detector.verdict == found[1]
    assert detector.observe(trace[-1]) is None
    assert detector.verdict == found[1]
    detector.reset()
    assert detector.verdict is None
    assert run(detector, trace) is not None


def test_memory_stays_bounded_on_a_long_run() -> None:
    """10,000 observations (all new) keep every structure within its window-derived bound."""
    settings = LoopSettings(window=20, allow={"poll": 50})
    detector = LoopDetector(settings)
    for n in range(2_500):
        message = AIMessage(content=f"reply {n}", id=str(n))
        trace: Sequence[Observation] = [
            ModelObservation(f"reply {n}", [("search", {"q": n})]),
            NodeObservation("model", {"messages": [message]}),
            ToolObservation("search", {"q": n}, f"result {n}"),
            NodeObservation("tools", {"messages": [ToolMessage(content=f"result {n}", tool_call_id=str(n))]}),
        ]
        assert run(detector, trace) is None
    sizes = detector.memory()
    assert sizes["tools"] <= 50
    assert sizes["tool_fingerprints"] <= 50
    assert sizes["tool_window"] <= 20
    assert sizes["nodes"] <= 20
    assert sizes["node_window"] <= 20
    assert sizes["outputs"] <= 20
    assert sizes["output_window"] <= 40
    assert sizes["message_cache"] <= max(64, 8 * 20)
    assert detector.steps == 10_000


def test_growing_state_hashes_each_message_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A node returning the whole, growing message list costs one message hash per new
    message: the history is never re-hashed."""
    hashed: list[int] = []
    original = loops._message_fields

    def counting(message: Any, hook: Any) -> dict[str, Any]:
        hashed.append(id(message))
        return original(message, hook)

    monkeypatch.setattr(loops, "_message_fields", counting)
    detector = LoopDetector(LoopSettings(max_steps_without_progress=1000))
    history: list[Any] = []
    for n in range(60):
        history.append(HumanMessage(content=f"message {n}", id=str(n)))
        assert detector.observe(NodeObservation("agent", {"messages": list(history[-20:])})) is None
    assert len(hashed) == 60
