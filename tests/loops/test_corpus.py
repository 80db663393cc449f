"""The detector on the labeled corpus: recall on looping runs, no false alarm on progressing ones.

Run with ``-s`` to see the per-family table and the similarity margins.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass

import pytest

from guardian.loops import (
    LoopDetector,
    LoopSettings,
    LoopVerdict,
    ModelObservation,
    fingerprint,
)
from tests.loops.corpus import Trace
from tests.loops.families import LOOPING, PROGRESSING, build_corpus


@dataclass(frozen=True)
class Outcome:
    trace: Trace
    index: int | None  # where the verdict came, in observations
    verdict: LoopVerdict | None

    @property
    def caught(self) -> bool:
        """A looping trace caught at or after the loop began (earlier would be a false alarm)."""
        assert self.trace.loop_start is not None
        return self.index is not None and self.index >= self.trace.loop_start

    @property
    def wasted_calls(self) -> int:
        """Model calls made from the loop's first step up to the verdict: paid for nothing."""
        assert self.trace.loop_start is not None
        assert self.index is not None
        window = self.trace.observations[self.trace.loop_start : self.index + 1]
        return sum(isinstance(o, ModelObservation) for o in window)


def evaluate(trace: Trace, settings: LoopSettings) -> Outcome:
    detector = LoopDetector(settings)
    for index, obs in enumerate(trace.observations):
        verdict = detector.observe(obs)
        if verdict is not None:
            return Outcome(trace, index, verdict)
    return Outcome(trace, None, None)


@pytest.fixture(scope="module")
def corpus() -> list[Trace]:
    return build_corpus()


def test_corpus_has_at_least_two_hundred_varied_traces_over_twenty_five_archetypes(corpus: list[Trace]) -> None:
    """At least 200 traces (80 of each kind) over at least 25 families, every family present, no
    two alike, and every looping trace ran long past its labeled start (to the recursion limit)."""
    looping = [t for t in corpus if t.looping]
    progressing = [t for t in corpus if not t.looping]
    assert len(corpus) >= 200
    assert len({t.family for t in corpus}) >= 25
    assert len(looping) >= 80
    assert len(progressing) >= 80
    assert {t.family for t in corpus} == {f.__name__ for f in (*LOOPING, *PROGRESSING)}
    shapes = {fingerprint([fingerprint(o) for o in t.observations]) for t in corpus}
    assert len(shapes) == len(corpus)
    for trace in looping:
        assert trace.loop_start is not None
        assert isinstance(trace.observations[trace.loop_start], ModelObservation)
        assert trace.model_calls >= 15, trace.name
    assert all(t.loop_start is None for t in progressing)


def test_detector_recall_false_positives_and_delay_on_the_corpus(corpus: list[Trace]) -> None:
    """Default settings: recall >= 0.95 on looping traces, zero verdicts on progressing ones,
    and the median number of model calls spent in a loop before its verdict is small."""
    settings = LoopSettings()
    outcomes = [evaluate(t, settings) for t in corpus]
    looping = [o for o in outcomes if o.trace.looping]
    caught = [o for o in looping if o.caught]
    false_alarms = [o for o in outcomes if not o.trace.looping and o.verdict is not None]
    early = [o for o in looping if o.index is not None and not o.caught]

    print(f"\n{'family':<28} {'traces':>6} {'flagged':>7} {'signals':<40} {'median wasted calls':>19}")
    for family in (*LOOPING, *PROGRESSING):
        group = [o for o in outcomes if o.trace.family == family.__name__]
        signals = Counter(o.verdict.signal for o in group if o.verdict)
        wasted = [o.wasted_calls for o in group if o.trace.looping and o.caught]
        median = f"{statistics.median(wasted):.1f}" if wasted else "-"
        flagged = sum(o.verdict is not None for o in group)
        shown = ", ".join(f"{k} {v}" for k, v in signals.most_common())
        print(f"{family.__name__:<28} {len(group):>6} {flagged:>7} {shown:<40} {median:>19}")
    recall = len(caught) / len(looping)
    median_wasted = statistics.median(o.wasted_calls for o in caught)
    print(
        f"recall {recall:.3f} ({len(caught)}/{len(looping)}), false positives {len(false_alarms)}, "
        f"early alarms {len(early)}, model calls from loop start to verdict: median {median_wasted}, "
        f"max {max(o.wasted_calls for o in caught)}"
    )

    assert recall >= 0.95, [o.trace.name for o in looping if not o.caught]
    assert false_alarms == [], [(o.trace.name, o.verdict and o.verdict.description) for o in false_alarms]
    assert median_wasted <= 3
    # One trace (planner_executor-5) is slower: its planner swaps a random word into a six-word plan
    # each round, so the executor's identical answers follow new input and are not counted as
    # repeats until a plan recurs exactly. Every other looping trace is caught within six calls.
    slow = [o.trace.name for o in caught if o.wasted_calls > 6]
    assert slow == ["planner_executor-5"], slow


def test_loop_verdicts_report_what_the_loop_cost(corpus: list[Trace]) -> None:
    """Each verdict's tokens and model calls are those spent after the loop's first,
    legitimate occurrence: positive, and never more than the trace spent."""
    for trace in corpus:
        if not trace.looping:
            continue
        outcome = evaluate(trace, LoopSettings())
        assert outcome.verdict is not None
        assert outcome.index is not None
        spent = sum(o.tokens for o in trace.observations[: outcome.index + 1])
        assert 0 < outcome.verdict.loop_tokens <= spent
        assert outcome.verdict.model_calls >= 1
        assert f"{outcome.verdict.loop_tokens:,} tokens" in outcome.verdict.description


def test_corpus_is_reproducible(corpus: list[Trace]) -> None:
    """Rebuilding the corpus gives the same traces (same labels, same normalized steps; the
    order of parallel tool calls may differ)."""
    again = {t.name: t for t in build_corpus(per_family=1)}
    for trace in corpus:
        if trace.name not in again:
            continue
        twin = again[trace.name]
        assert twin.loop_start == trace.loop_start
        assert Counter(map(fingerprint, twin.observations)) == Counter(map(fingerprint, trace.observations))
