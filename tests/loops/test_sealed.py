"""The sealed split: scenarios written independently (``tests/loops/sealed/``), scored with default
settings. Never tune the detector on it; its figures are reported beside the main corpus.

Run with ``-s`` to see the per-archetype table. Each scenario is one stream of observations, as
a ``TraceRecorder`` sees it (a scenario that spans several ``invoke`` calls on one thread is one
stream here; online, Guardian gives each ``invoke`` its own run and detector).
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest

from guardian.loops import LoopDetector, LoopSettings, LoopVerdict, ModelObservation, Observation
from guardian.testing import TraceRecorder
from tests.loops.sealed import scenarios as split1
from tests.loops.sealed2 import scenarios as split2
from tests.loops.sealed3 import scenarios as split3


@dataclass(frozen=True)
class Scored:
    scenario: Any
    observations: list[Observation]
    index: int | None
    verdict: LoopVerdict | None

    def call_index(self, call: int) -> int:
        """The observation index of the ``call``-th model call (1-based)."""
        seen = 0
        for i, obs in enumerate(self.observations):
            if isinstance(obs, ModelObservation):
                seen += 1
                if seen == call:
                    return i
        raise ValueError(f"{self.scenario.name} has only {seen} model calls")

    @property
    def caught(self) -> bool:
        assert self.scenario.loop_start_call is not None
        return self.index is not None and self.index >= self.call_index(self.scenario.loop_start_call)

    @property
    def wasted_calls(self) -> int:
        """Model calls from the labeled loop start up to the verdict, both included."""
        assert self.scenario.loop_start_call is not None
        assert self.index is not None
        start = self.call_index(self.scenario.loop_start_call)
        return sum(isinstance(o, ModelObservation) for o in self.observations[start : self.index + 1])


def score(scenario: Any) -> Scored:
    recorder = TraceRecorder()
    scenario.run([recorder])
    observations = recorder.observations
    detector = LoopDetector(LoopSettings())
    for index, obs in enumerate(observations):
        verdict = detector.observe(obs)
        if verdict is not None:
            return Scored(scenario, observations, index, verdict)
    return Scored(scenario, observations, None, None)


def report(scored: list[Scored], title: str) -> tuple[list[Scored], list[Scored], list[Scored], list[Scored]]:
    """Print the per-archetype table and the totals; return (looping, caught, false alarms, early)."""
    looping = [s for s in scored if s.scenario.looping]
    progressing = [s for s in scored if not s.scenario.looping]
    caught = [s for s in looping if s.caught]
    false_alarms = [s for s in progressing if s.verdict is not None]
    early = [s for s in looping if s.index is not None and not s.caught]
    print(f"\n{'archetype':<28} {'n':>3} {'flagged':>7} {'signals':<40} {'wasted calls'}")
    for archetype in sorted({s.scenario.archetype for s in scored}):
        group = [s for s in scored if s.scenario.archetype == archetype]
        signals = Counter(s.verdict.signal for s in group if s.verdict)
        wasted = [s.wasted_calls for s in group if s.scenario.looping and s.caught]
        shown = ", ".join(f"{k} {v}" for k, v in signals.most_common())
        flagged = sum(s.verdict is not None for s in group)
        print(f"{archetype:<28} {len(group):>3} {flagged:>7} {shown:<40} {wasted}")
    for s in [*false_alarms, *early]:
        print(f"  {'FALSE ALARM' if not s.scenario.looping else 'EARLY'} {s.scenario.name}: {s.verdict}")
    for s in looping:
        if not s.caught:
            print(f"  MISSED {s.scenario.name} ({s.scenario.archetype})")
    wasted = [s.wasted_calls for s in caught]
    recall = len(caught) / len(looping)
    print(
        f"{title}: recall {recall:.3f} ({len(caught)}/{len(looping)}), false positives {len(false_alarms)}/"
        f"{len(progressing)}, early {len(early)}, model calls from loop start to verdict: median "
        f"{statistics.median(wasted) if wasted else '-'}, max {max(wasted) if wasted else '-'}"
    )
    return looping, caught, false_alarms, early


def test_sealed_split_1(scored1: list[Scored]) -> None:
    """Split #1, 87 scenarios. Scored blind once at b1154eb: recall 34/44, 0/43 false positives, median 3,
    max 4. Three generic rules added after looking at its misses (a node's own words are not news to it,
    news is a sentence not read before, a stale turn whose results all came before is no progress) bring
    it to 40/44; those rules were then checked on split #2, scored once. The assertions hold the figures,
    not the targets."""
    looping, caught, false_alarms, early = report(scored1, "sealed split #1 (seen)")
    assert false_alarms == [], [s.scenario.name for s in false_alarms]
    assert early == [], [s.scenario.name for s in early]
    assert len(caught) >= 40, [s.scenario.name for s in looping if not s.caught]


def test_sealed_split_2(scored2: list[Scored]) -> None:
    """Split #2, written after the rules above by a second writer who saw neither the detector nor any
    other corpus; scored once: recall 34/37, 0/44 false positives, median 3, max 5 (the misses: three
    paraphrased reflections, reworded beyond a few words each round). The assertions hold those figures."""
    looping, caught, false_alarms, early = report(scored2, "sealed split #2")
    assert false_alarms == [], [s.scenario.name for s in false_alarms]
    assert early == [], [s.scenario.name for s in early]
    assert len(caught) >= 34, [s.scenario.name for s in looping if not s.caught]


@pytest.fixture(scope="module")
def scored1() -> list[Scored]:
    return [score(s) for s in split1.SCENARIOS]


@pytest.fixture(scope="module")
def scored2() -> list[Scored]:
    return [score(s) for s in split2.SCENARIOS]


def test_sealed_split_3(scored3: list[Scored]) -> None:
    """Split #3, a third writer (seven paraphrased reflections in different styles), scored once on the final
    detector: recall 31/36, 0/36 false positives, median 3, max 11 (the misses: four paraphrased reflections
    and a reworded search). The assertions hold those figures."""
    looping, caught, false_alarms, early = report(scored3, "sealed split #3")
    assert false_alarms == [], [s.scenario.name for s in false_alarms]
    assert early == [], [s.scenario.name for s in early]
    assert len(caught) >= 31, [s.scenario.name for s in looping if not s.caught]


@pytest.fixture(scope="module")
def scored3() -> list[Scored]:
    return [score(s) for s in split3.SCENARIOS]
