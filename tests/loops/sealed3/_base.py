"""The scenario record shared by every scenario module."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from langchain_core.callbacks import BaseCallbackHandler


@dataclass(frozen=True)
class SealedScenario:
    """One deterministic agent run.

    ``loop_start_call`` is the 1-based index of the first model call whose reply repeats (or re-says in
    other words) earlier work; ``None`` for progressing runs. ``description`` starts with the structure used:
    ``create_agent:`` or ``StateGraph:`` (or both, for graphs built around ``create_agent`` sub-agents).
    """

    name: str
    archetype: str
    looping: bool
    loop_start_call: int | None
    description: str
    run: Callable[[list[BaseCallbackHandler]], None]
