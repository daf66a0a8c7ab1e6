"""Fixtures for the asyncio client suite.

The shared fixtures (trustme CA and contexts, scripted servers, aiosmtpd,
smtp-sink, ``short_tmp``) come from ``tests/helpers/fixtures.py``; the
in-loop servers these tests also need live in ``tests/aio/support.py``.
"""

import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:  # helpers/ lives next to this directory
    sys.path.insert(0, _TESTS)

from helpers.fixtures import *  # noqa: E402,F401,F403
