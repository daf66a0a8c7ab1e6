"""``mailwire serve --loop``: which event loop the server runs on.

asyncio's own loop is always there, and what the whole suite runs on;
uvloop (libuv, ``pip install 'mailwire[uvloop]'``) spends less CPU per
message on the socket calls around mailwire's code. ``auto``, the default,
takes uvloop when it is installed. The choice is made by installing uvloop's event loop
policy before anything runs: every ``asyncio.run`` after it, in this process
and in the worker processes it forks, makes a uvloop loop, and the server
code does not know or care which loop it has.

Programs that embed ``mailwire.server`` run their own loop: ``uvloop.run(main())``
instead of ``asyncio.run(main())`` is all they need.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from types import ModuleType

from .options import UsageError

__all__ = ["LOOPS", "use_loop", "describe"]

LOOPS = ("auto", "asyncio", "uvloop")


def _uvloop() -> ModuleType | None:
    if sys.platform == "win32":  # uvloop has no Windows build
        return None
    try:
        return importlib.import_module("uvloop")
    except ImportError:
        return None


def use_loop(name: str) -> str:
    """Make the event loops made from now on ``name``'s (one of ``LOOPS``);
    the loop chosen, ``asyncio`` or ``uvloop``. ``uvloop`` when it is not
    installed is a ``UsageError``."""
    if name == "asyncio":
        return name
    uvloop = _uvloop()
    if uvloop is None:
        if name == "uvloop":
            raise UsageError("--loop uvloop needs uvloop: pip install 'mailwire[uvloop]' (not on Windows)")
        return "asyncio"
    # Policies are deprecated from Python 3.14 (removed in 3.16); the one way
    # to reach the asyncio.run of forked workers as well until then.
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def describe() -> str:
    """The loops this install can run, for ``mailwire --version``."""
    uvloop = _uvloop()
    version = getattr(uvloop, "__version__", "") if uvloop is not None else ""
    return f"uvloop {version} (--loop auto takes it)" if uvloop is not None else "asyncio only (no uvloop)"
