"""SEALED split #2 of LangGraph/LangChain agent runs, looping and progressing.

Every scenario is one deterministic run of a ``create_agent`` agent or a hand-built ``StateGraph`` driven by
scripted chat models. ``loop_start_call`` is the 1-based index, in run order, of the first model call whose reply
repeats earlier work; progressing scenarios have none.
"""

from __future__ import annotations

from . import agents_loop, agents_ok, graphs_loop, graphs_ok
from ._kit import REGISTRY, STYLE, SealedScenario

__all__ = ["SCENARIOS", "STYLE", "SealedScenario"]

_MODULES = (agents_ok, agents_loop, graphs_ok, graphs_loop)

SCENARIOS: list[SealedScenario] = list(REGISTRY)
