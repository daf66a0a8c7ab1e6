"""Run a coroutine with ``asyncio.run`` on asyncio's own loop or on uvloop.

The tests that care how a run *ends* (what ``asyncio.run`` cancels, what it
reports) run through ``asyncio.run`` itself on either loop, not a loop made by
hand: its shutdown is part of what they check.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

__all__ = ["LOOPS", "run_on"]

T = TypeVar("T")
LOOPS = ["asyncio", "uvloop"]


def run_on(loop: str, main: Coroutine[Any, Any, T], deadline: float = 20.0) -> T:
    """``asyncio.run(main)`` on ``loop`` ("asyncio" or "uvloop", skipped when
    uvloop is absent), failing as TimeoutError after ``deadline`` seconds."""

    async def bounded() -> T:
        return await asyncio.wait_for(main, deadline)

    if loop == "asyncio":
        return asyncio.run(bounded())
    uvloop = pytest.importorskip("uvloop", reason="uvloop is not installed")
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(bounded())
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        return asyncio.run(bounded())
    finally:
        asyncio.set_event_loop_policy(None)
