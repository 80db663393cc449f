"""Unit tests of guardian.loops: each signal, normalization, the allow list, bounded memory."""

from __future__ import annotations

import dataclasses
import random
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
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
    mask_volatile,
    message_key,
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


class Chat:
    """A ReAct conversation as the detector sees it: every model call reads the whole history
    (the prompt), its reply and the tool results are appended to it."""

    def __init__(self, question: str = "Find the Q3 revenue figures.") -> None:
        self.history: list[BaseMessage] = [SystemMessage(content="You are a careful analyst."), HumanMessage(question)]
        self.observations: list[Observation] = []

    def reply(self, text: str = "", calls: Sequence[tuple[str, Any]] = (), *, tokens: int = 100) -> None:
        self.observations.append(ModelObservation(text, list(calls), tokens=tokens, prompt=list(self.history)))
        n = len(self.history)
        tool_calls = [{"name": name, "args": args, "id": f"call_{n}_{i}"} for i, (name, args) in enumerate(calls)]
        self.history.append(AIMessage(content=text, tool_calls=tool_calls, id=f"run-{n}"))

    def result(self, tool: str, args: Any, text: str, *, error: bool = False) -> None:
        self.observations.append(ToolObservation(tool, args, text, error=error))
        status = "error" if error else "success"
        self.history.append(ToolMessage(content=text, tool_call_id=f"call_{len(self.history)}", status=status))

    def step(self, tool: str, args: Any, text: str, *, error: bool = False, said: str = "") -> None:
        self.reply(said, [(tool, args)])
        self.result(tool, args, text, error=error)

    def human(self, text: str) -> None:
        self.history.append(HumanMessage(text))


# --- settings -----------------------------------------------------------------------------------


def test_settings_defaults_match_the_policy_defaults() -> None:
    """Defaults: window 20, max_repeats 3, max_tool_repeats 4, similarity 0.92, 5 stale turns, no allow."""
    settings = LoopSettings()
    assert (settings.window, settings.max_repeats, settings.max_tool_repeats, settings.similarity) == (20, 3, 4, 0.92)
    assert settings.max_steps_without_progress == 5
    assert dict(settings.allow) == {}


def test_settings_allow_is_a_frozen_hashable_copy() -> None:
    """``allow`` is copied into an immutable mapping, so settings hash and cannot be mutated."""
    source = {"wait_for_job": 30}
    settings = LoopSettings(allow=source)
    source["wait_for_job"] = 2
    assert settings.allow["wait_for_job"] == 30
    assert settings.max_repeats_for("wait_for_job") == 30
    assert settings.max_repeats_for("search") == 4
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
    with pytest.raises(ValueError, match="max_tool_repeats must be at least 2"):
        LoopSettings(max_tool_repeats=1)
    with pytest.raises(ValueError, match=r"window must be at most 1,000, got 5000; .*allow\['poll'\] must be at most"):
        LoopSettings(window=5000, allow={"poll": 20_000})


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


# --- volatile tokens ----------------------------------------------------------------------------


def test_volatile_tokens_are_masked_and_ordinary_numbers_are_not() -> None:
    """UUIDs, ISO and epoch timestamps, clock times, hex and long random ids are masked; the
    numbers of a progress report are not."""
    a = "ok (trace 3f2b8c1e-9d4a-4f6b-8e2d-1a2b3c4d5e6f at 2026-12-01T10:00:01Z, ts=1764583201, req_9f8e7d6c5b4a)"
    b = "ok (trace 0a1b2c3d-4e5f-4a6b-9c8d-7e6f5a4b3c2d at 2026-12-01T10:00:09Z, ts=1764583209, req_0a1b2c3d4e5f)"
    assert mask_volatile(a) == mask_volatile(b)
    assert mask_volatile("checked at 10:00:01") == mask_volatile("checked at 11:59:59")
    assert mask_volatile("session Xk29dLq8Zp03NmRt7Yv") == mask_volatile("session Q8mZ2pL0vN7tRk3Ds5W")
    assert mask_volatile("step 7 of 25, 28% done") != mask_volatile("step 8 of 25, 32% done")
    assert mask_volatile("order 12345678 shipped") != mask_volatile("order 12345679 shipped")


def test_a_message_key_ignores_ids_and_role_but_not_content() -> None:
    """The same words read back (as the model's reply, or relayed to another agent as a human
    message) have one key; different words or calls do not."""
    reply = AIMessage(content="Try the EU region.", id="run-1")
    relayed = HumanMessage(content="Try the EU region.", name="planner", id="x")
    assert message_key(reply) == message_key(relayed)
    assert message_key(reply) != message_key(AIMessage(content="Try the US region."))
    call = AIMessage(content="", tool_calls=[{"name": "s", "args": {"q": 1}, "id": "a"}])
    again = AIMessage(content="", tool_calls=[{"name": "s", "args": {"q": 1}, "id": "b"}])
    other = AIMessage(content="", tool_calls=[{"name": "s", "args": {"q": 2}, "id": "c"}])
    assert message_key(call) == message_key(again) != message_key(other)


# --- repeated tool call -------------------------------------------------------------------------


def test_repeated_tool_call_fires_on_the_fourth_identical_call() -> None:
    """Same tool, args and result four times with nothing new read in between: a verdict after
    the fourth result, before the fifth model call; the loop counted after the first call."""
    chat = Chat()
    for _ in range(6):
        chat.step("search", {"q": "llamas"}, "no results")
    found = run(LoopDetector(), chat.observations)
    assert found is not None
    index, verdict = found
    assert index == 7  # the fourth ToolObservation
    assert (verdict.signal, verdict.subject, verdict.repeats) == ("repeated_tool_call", "search", 4)
    assert verdict.model_calls == 3
    assert verdict.loop_tokens == 300
    assert "'search' was called 4 times" in verdict.description
    assert "limit 4" in verdict.description
    assert "300 tokens" in verdict.description


def test_a_result_that_differs_only_by_a_timestamp_or_id_is_the_same_result() -> None:
    """A tool answering the same text with a fresh timestamp, UUID or request id is caught."""
    chat = Chat()
    for n in range(6):
        stamp = f"2026-12-01T10:{n:02d}:00Z, request {uuid.UUID(int=n + 1)}"
        chat.step("get_status", {"name": "etl"}, f"Pipeline idle ({stamp})")
    found = run(LoopDetector(), chat.observations)
    assert found is not None
    assert (found[0], found[1].signal) == (7, "repeated_tool_call")


def test_identical_failures_fire_on_the_third_and_a_retry_that_succeeds_does_not() -> None:
    """A call that fails the same way (attempt numbers and request ids aside) three times is a
    loop; two failures and then success is work."""
    chat = Chat()
    for n in range(4):
        chat.step("charge", {"amount": 5}, f"HTTP 503 (attempt {n + 1}, request {n:08x}ab)", error=True)
    found = run(LoopDetector(), chat.observations)
    assert found is not None
    assert (found[0], found[1].signal, found[1].repeats) == (5, "repeated_tool_call", 3)
    assert "failed the same way" in found[1].description

    recovering = Chat()
    for n in range(2):
        recovering.step("charge", {"amount": 5}, f"HTTP 503 (attempt {n + 1})", error=True)
    recovering.step("charge", {"amount": 5}, "charged")
    recovering.step("email", {"to": "a"}, "sent")
    assert run(LoopDetector(), recovering.observations) is None


def test_paging_and_polling_that_finishes_are_progress() -> None:
    """A new page each time, or a job whose status changes (the same status three times at
    most), never fires; pages that all come back the same (a tool ignoring its page argument)
    are no progress."""
    pages = Chat()
    for n in range(1, 30):
        pages.step("list_orders", {"page": n}, f"orders {10 * n} to {10 * n + 9}")
    assert run(LoopDetector(), pages.observations) is None
    ignored = Chat()
    for n in range(1, 30):
        ignored.step("list_orders", {"page": n}, "orders 10 to 19")
    found = run(LoopDetector(), ignored.observations)
    assert found is not None
    assert (found[1].signal, found[1].repeats) == ("no_progress", 5)
    polls = Chat()
    for status in ["queued", "queued", "queued", "running 10%", "running 60%", "running 60%", "done"]:
        polls.step("check_job", {"id": 7}, status, said="Checking the job again.")
    assert run(LoopDetector(), polls.observations) is None


def test_parallel_duplicates_in_one_turn_count_once() -> None:
    """Three identical calls requested in one reply are one turn, not three repeats."""
    chat = Chat()
    call = ("lookup", {"sku": "A1"})
    chat.reply("", [call, call, call])
    for _ in range(3):
        chat.result("lookup", {"sku": "A1"}, "in stock")
    chat.reply("In stock.")
    assert run(LoopDetector(), chat.observations) is None


def test_a_new_human_message_makes_a_repeat_work() -> None:
    """The same call and result, but a user message in between brought something new: the
    count starts again with the first call after it."""
    chat = Chat()
    for _ in range(2):
        chat.step("search", {"q": "q3"}, "no results")
    chat.human("The file was just uploaded, try again.")
    for _ in range(2):
        chat.step("search", {"q": "q3"}, "no results")
    chat.step("search", {"q": "q3"}, "no results")
    assert run(LoopDetector(), chat.observations) is None
    chat.step("search", {"q": "q3"}, "no results")  # four since the user's message
    assert run(LoopDetector(), chat.observations) is not None


def test_rereading_a_file_between_edits_is_work() -> None:
    """Re-reading the same file (same content) between edits of others never fires."""
    chat = Chat()
    for n in range(8):
        chat.step("read_file", {"path": "cfg.yaml"}, "debug: true")
        chat.step("edit_file", {"path": f"src/m{n}.py"}, f"edited m{n}")
    assert run(LoopDetector(), chat.observations) is None


def test_allowed_tool_gets_its_own_limit() -> None:
    """allow={"wait_for_job": 30}: 29 identical polls pass, the 30th fires; without the
    allowance the fourth does."""
    chat = Chat()
    for _ in range(40):
        chat.step("wait_for_job", {"id": 1}, "pending", said="Still waiting.")
    found = run(LoopDetector(LoopSettings(allow={"wait_for_job": 30})), chat.observations)
    assert found is not None
    index, verdict = found
    assert (verdict.signal, verdict.subject, verdict.repeats) == ("repeated_tool_call", "wait_for_job", 30)
    assert index == 29 * 2 + 1
    assert "limit 30" in verdict.description
    default = run(LoopDetector(), chat.observations)
    assert default is not None
    assert default[0] == 7


def test_without_prompts_new_tool_results_are_the_news() -> None:
    """An adapter that sends no prompt still gets a detector: a new tool result counts as new
    input, and a tool call outside any model turn is a turn of its own."""
    assert run(LoopDetector(), turns(*[("search", {"q": "x"}, "none")] * 4)) is not None
    assert run(LoopDetector(), turns(*[("search", {"q": n}, "none") for n in range(20)])) is None
    standalone = [ToolObservation("ping", {}, "pong")] * 4
    found = run(LoopDetector(), standalone)
    assert found is not None
    assert found[0] == 3


# --- maps, replies, cycles ----------------------------------------------------------------------


def test_the_same_answer_to_new_inputs_is_work_and_to_the_same_input_a_loop() -> None:
    """A map over distinct reviews answered "positive" every time never fires; the same review
    sent again and again fires repeated_output on the third answer."""
    system = SystemMessage(content="Classify the sentiment. Answer with one word.")
    batch: list[Observation] = [
        ModelObservation("positive", tokens=20, prompt=[system, HumanMessage(f"Review {n}: great service")])
        for n in range(30)
    ]
    batch += [NodeObservation("classify", {"results": ["positive"]})] * 30  # reducer updates look alike
    assert run(LoopDetector(), batch) is None
    stuck = [
        ModelObservation(
            "positive", tokens=20, prompt=[system, HumanMessage("Review 7: great service")], node="classify"
        )
        for _ in range(5)
    ]
    found = run(LoopDetector(), stuck)
    assert found is not None
    assert (found[0], found[1].signal, found[1].subject) == (2, "repeated_output", "classify")


def test_progress_reports_whose_numbers_move_are_not_repeats() -> None:
    """ "Processed 7 of 25 (28% done)" then "8 of 25 (32%)": different replies, even when the
    model reads nothing new in between."""
    trace = [ModelObservation(f"Processed {n} of 25 records ({n * 100 // 25}% done).", prompt=[]) for n in range(25)]
    assert run(LoopDetector(), trace) is None


ANSWER = (
    "I could not find the Q3 revenue figures in the documents you shared. The closest match is the "
    "Q2 board deck, which lists revenue by region but not by quarter. Please send the finance export."
)


def test_near_duplicate_replies_fire_and_revisions_do_not() -> None:
    """Light paraphrases of one answer, with the same feedback read between them, fire; drafts
    that each add a new sentence do not."""
    feedback = HumanMessage("Cite a source.")
    variants = [
        ANSWER,
        "Sorry, " + ANSWER.replace("could not", "couldn't"),
        ANSWER.replace("find", "locate"),
        ANSWER + " Again!",
    ]
    trace: list[Observation] = []
    history: list[BaseMessage] = [HumanMessage("What was Q3 revenue?")]
    for text in variants:
        trace.append(ModelObservation(text, tokens=50, model="gpt-4o-mini", prompt=list(history)))
        history += [AIMessage(content=text), feedback]
    found = run(LoopDetector(), trace)
    assert found is not None
    index, verdict = found
    assert index == 3  # the feedback was news once: the second answer starts the count
    assert (verdict.signal, verdict.subject, verdict.repeats) == ("repeated_output", "gpt-4o-mini", 3)
    assert (verdict.loop_tokens, verdict.model_calls) == (100, 2)

    extra = [
        "The Q2 deck is in the board folder.",
        "Finance closes the quarter on the 5th.",
        "Revenue by product is in the ERP export.",
        "The EU entity reports separately.",
    ]
    drafts, history = [], [HumanMessage("What was Q3 revenue?")]
    for n in range(len(extra) + 1):
        text = " ".join([ANSWER, *extra[:n]])
        drafts.append(ModelObservation(text, prompt=list(history)))
        history += [AIMessage(content=text), feedback]
    assert run(LoopDetector(), drafts) is None


def test_two_agents_bouncing_the_same_messages_while_the_state_grows_are_caught() -> None:
    """Planner and executor relaying the same two messages (state growing with each round)
    fire within three rounds; the same two tools alternating fire a cycle."""
    history: list[BaseMessage] = [HumanMessage("Migrate the billing DB.")]
    trace: list[Observation] = []
    for n in range(6):
        node, text = (
            ("planner", "Run the migration script.") if n % 2 == 0 else ("executor", "Migration failed: lock held.")
        )
        trace.append(ModelObservation(text, prompt=list(history), node=node))
        trace.append(NodeObservation(node, {"messages": [HumanMessage(text, name=node)], "round": n}))
        history.append(HumanMessage(text, name=node))
    found = run(LoopDetector(), trace)
    assert found is not None
    assert found[1].signal in ("repeated_output", "cycle")
    assert found[0] <= 8  # by the fifth model call

    chat = Chat()
    for _ in range(4):
        chat.step("get_config", {"env": "prod"}, "replicas: 3")
        chat.step("get_metrics", {"env": "prod"}, "cpu 40%")
    found = run(LoopDetector(), chat.observations)
    assert found is not None
    index, verdict = found
    assert (verdict.signal, verdict.subject) == ("cycle", "model: get_config -> model: get_metrics")
    assert index == 9  # the fifth turn: A B A B A


def test_node_updates_alone_never_fire() -> None:
    """Node updates are state, not what the model read: identical reducer updates and a ticking
    counter decide nothing."""
    trace = [NodeObservation("worker", {"processed": ["ok"]}) for _ in range(50)]
    trace += [NodeObservation(n, {"out": "same", "revision": i}) for i in range(20) for n in ("draft", "critique")]
    assert run(LoopDetector(), trace) is None


# --- no progress --------------------------------------------------------------------------------


def test_no_progress_fires_after_the_configured_number_of_stale_repeats() -> None:
    """An agent wandering among three sources in no fixed order, reading nothing new, stalls
    after five turns that repeat earlier ones."""
    chat = Chat()
    for name in ["a", "b", "c", "b", "a", "c", "c", "b", "a", "a", "c"]:
        chat.step(f"source_{name}", {}, f"r{name}")
    found = run(LoopDetector(LoopSettings(max_tool_repeats=10)), chat.observations)
    assert found is not None
    index, verdict = found
    assert (verdict.signal, verdict.repeats) == ("no_progress", 5)
    assert index == 2 * 8 - 1  # the fifth repeated turn (turns 4..8)
    assert verdict.model_calls == 5


def test_anything_new_resets_the_no_progress_count() -> None:
    """One new tool result every few repeated turns keeps the run alive."""
    chat = Chat()
    for n in range(30):
        for name in ("a", "b", "a", "b"):
            chat.step(name, {}, "same")
        chat.step("c", {"n": n}, f"new {n}")
    settings = LoopSettings(max_repeats=100, max_tool_repeats=100, window=100)
    assert run(LoopDetector(settings), chat.observations) is None


# --- lifecycle, memory, incrementality ----------------------------------------------------------


def test_detector_trips_once_and_reset_rearms_it() -> None:
    """After a verdict observe() returns None and ``verdict`` keeps it; reset() re-arms."""
    detector = LoopDetector()
    trace = turns(*[("search", {"q": "x"}, "none")] * 4)
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
    chat = Chat()
    for n in range(2_500):
        chat.step("search", {"q": n}, f"result {n}", said=f"reply {n}")
        chat.history = chat.history[-30:]
        chat.observations.append(NodeObservation("tools", {"n": n}))
        chat.observations.append(ModelObservation(f"note {n}", prompt=chat.history[-3:]))
    assert run(detector, chat.observations) is None
    sizes = detector.memory()
    assert sizes["turns"] <= 50 + 6
    assert sizes["texts"] <= 20
    assert sizes["seen_messages"] <= 64 * 20
    assert sizes["seen_results"] <= 64 * 20
    assert sizes["message_cache"] <= 16 * 20
    assert detector.steps == 10_000


def test_a_growing_prompt_keys_each_message_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each model call reads the whole, growing history, yet every message is keyed once."""
    keyed: list[int] = []
    original = loops.message_key

    def counting(message: BaseMessage, mask: loops.Masker = loops.mask_volatile) -> bytes:
        keyed.append(id(message))
        return original(message, mask)

    monkeypatch.setattr(loops, "message_key", counting)
    detector = LoopDetector()
    history: list[BaseMessage] = []
    for n in range(60):
        history.append(HumanMessage(content=f"message {n}", id=str(n)))
        assert detector.observe(ModelObservation(f"answer {n}", prompt=list(history))) is None
    assert len(keyed) == 60


def test_a_stall_longer_than_the_turn_window_is_still_judged() -> None:
    """max_steps_without_progress may exceed the turns kept in memory: the streak is counted,
    not looked up, so an 80-turn limit over a 50-turn window judges without failing."""
    rng = random.Random(3)
    order = list("abcd")
    for _ in range(200):  # a wander with no back-to-back block repeats, so no cycle fires first
        for name in rng.sample("abcd", 4):
            tail = [*order, name]
            if not any(
                all(tail[-k] == tail[-k - p] for k in range(1, max(p, 3) + 1))
                for p in range(2, 7)
                if len(tail) >= p + max(p, 3)
            ):
                order.append(name)
                break
    chat = Chat()
    for name in order:
        chat.step(f"source_{name}", {}, f"r{name}")
    settings = LoopSettings(window=50, max_tool_repeats=50, max_steps_without_progress=80)
    found = run(LoopDetector(settings), chat.observations)
    assert found is not None
    assert (found[1].signal, found[1].repeats, found[1].model_calls) == ("no_progress", 80, 80)


def test_a_models_own_words_are_not_news_to_it_but_are_to_another_node() -> None:
    """A reply read back by the node that wrote it brings nothing new; the same reply read by
    another agent does (a planner's "Continue." while an executor reports new results is work)."""
    history: list[BaseMessage] = [HumanMessage("Load the Q3 files.")]
    trace: list[Observation] = []
    for n in range(8):
        trace.append(ModelObservation("Continue with the next file.", prompt=list(history), node="planner"))
        history.append(AIMessage("Continue with the next file."))
        report = f"Loaded file {n}: {n * 17} rows."
        trace.append(ModelObservation(report, prompt=list(history), node="executor"))
        history.append(HumanMessage(report, name="executor"))
    assert run(LoopDetector(), trace) is None
    alone: list[Observation] = []
    history = [HumanMessage("Summarise the call.")]
    for _ in range(4):
        alone.append(ModelObservation("The call went well.", prompt=list(history), node="model"))
        history.append(AIMessage("The call went well."))
    found = run(LoopDetector(), alone)
    assert found is not None
    assert (found[0], found[1].signal) == (2, "repeated_output")


def test_a_transcript_that_grows_by_lines_already_read_is_not_news() -> None:
    """Two negotiators reading one growing transcript message: once the offers only repeat,
    each new transcript holds no line not read before, and the ping-pong is caught."""
    offers = [
        "BUYER: We offer $30,000.",
        "SELLER: List price is $72,000.",
        "BUYER: $40,000, final.",
        "SELLER: $55,000.",
    ]
    offers += ["BUYER: $40,000, final.", "SELLER: $55,000."] * 6
    trace: list[Observation] = []
    for n in range(1, len(offers)):
        transcript = HumanMessage("Transcript so far:\n" + "\n".join(offers[:n]))
        node = "seller" if n % 2 else "buyer"
        trace.append(ModelObservation(offers[n].split(": ", 1)[1], prompt=[transcript], node=node))
    found = run(LoopDetector(), trace)
    assert found is not None
    assert found[0] <= 6  # by the seventh reply: loop start is the fifth offer


def test_reworded_queries_that_keep_finding_nothing_are_no_progress() -> None:
    """New arguments, the same empty result, nothing new read: five turns in a row are
    no_progress (an alert under the default rule), while a refinement that finds something
    after four empty searches is not."""
    chat = Chat()
    for n in range(12):
        chat.step("search_kb", {"query": f"reset 2FA wording {n}"}, "0 results.")
    found = run(LoopDetector(), chat.observations)
    assert found is not None
    assert (found[1].signal, found[1].repeats) == ("no_progress", 5)
    refined = Chat()
    for n in range(4):
        refined.step("search_kb", {"query": f"reset 2FA wording {n}"}, "0 results.")
    refined.step("search_kb", {"query": "reset MFA"}, "[IT-12] Resetting MFA for SSO users")
    refined.reply("Follow IT-12.")
    assert run(LoopDetector(), refined.observations) is None
