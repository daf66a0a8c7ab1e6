"""Fixtures for this suite come from ``tests/helpers/fixtures.py``."""

import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:  # helpers/ lives next to this directory
    sys.path.insert(0, _TESTS)

from helpers.fixtures import *  # noqa: E402,F401,F403
