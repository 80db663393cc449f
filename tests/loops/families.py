"""The whole labeled corpus: the first families and the graph families, seeded variants of each."""

from __future__ import annotations

import random
from collections.abc import Callable

from tests.loops.corpus import BASE_LOOPING, BASE_PROGRESSING, PER_FAMILY, Trace
from tests.loops.corpus_graphs import GRAPH_LOOPING, GRAPH_PROGRESSING

__all__ = ["LOOPING", "PROGRESSING", "build_corpus"]

LOOPING: tuple[Callable[[random.Random], Trace], ...] = BASE_LOOPING + GRAPH_LOOPING
PROGRESSING: tuple[Callable[[random.Random], Trace], ...] = BASE_PROGRESSING + GRAPH_PROGRESSING


def build_corpus(per_family: int = PER_FAMILY) -> list[Trace]:
    """Every scenario family, ``per_family`` seeded variants each (the same on every run)."""
    traces = []
    for family in (*LOOPING, *PROGRESSING):
        for i in range(per_family):
            trace = family(random.Random(f"{family.__name__}-{i}"))
            trace.name = f"{family.__name__}-{i}"
            traces.append(trace)
    return traces
