"""Shared pytest configuration.

Hypothesis runs derandomized under CI (`CI` set in the environment): the same examples every
run, so a landing never depends on luck; locally it explores new examples each run.
"""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
