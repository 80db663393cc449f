"""SEALED split #2: agent runs written independently from archetype descriptions, without seeing the detector
or any other corpus. Do not tune the detector on it."""
