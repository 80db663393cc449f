"""SEALED split #3 of agent-run scenarios for loop detection.

Written independently, from archetype descriptions only, without seeing the detector or any other
corpus. It is an evaluation set: do not tune the detector on it.
"""
