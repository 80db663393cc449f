"""SEALED split of agent-loop scenarios.

Written independently from the archetype descriptions alone, without seeing the detector or any other
evaluation data. Do not tune the detector on it: it exists to measure, not to fit.
"""
