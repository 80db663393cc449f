"""SEALED split #3: the scenario list (see the package docstring; do not tune a detector on it).

Every ``run(callbacks)`` builds its agent or graph from scratch and performs one deterministic run
(one ``invoke``, plus ``resume`` invokes on the same thread for the human-in-the-loop scenarios).
"""

from __future__ import annotations

from . import _healthy_agents, _healthy_flows, _healthy_maps, _loops_agents, _loops_graphs
from ._base import SealedScenario

__all__ = ["SCENARIOS", "SealedScenario"]

SCENARIOS: list[SealedScenario] = [
    *_loops_agents.SCENARIOS,
    *_loops_graphs.SCENARIOS,
    *_healthy_agents.SCENARIOS,
    *_healthy_maps.SCENARIOS,
    *_healthy_flows.SCENARIOS,
]
