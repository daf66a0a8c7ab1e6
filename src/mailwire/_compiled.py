"""The optional compiled build: which modules it compiles, and whether this install is it.

mailwire is pure Python, and that is the default, tested build. For servers
where CPU per message matters, ``MAILWIRE_COMPILE=1 pip install .`` compiles
the modules below with mypyc (``setup.py`` reads ``MODULES`` from here; the
code is the same source, type-checked by ``mypy --strict``), and the suite's
protocol, server, asyncio and client tests run against that build too
(``dev/test.sh``).

Why these modules: they are the per-command and per-chunk path of the server
(the flat profile of ``serve --sink`` under 1 KB messages, ``bench/server_path.py``:
the protocol core, the connection's policy and clock, the input buffer and
the DATA reader, the deadline armed before every wait, the replies it sends).
Compiled, they take about 40% off the server's CPU per 1 KB message
(``bench/server_bench.py --compiled``). Left out: ``server/connection.py``
(it derives from an asyncio class, which a compiled class cannot), the backends and everything a user subclasses
or patches (compiled classes take no interpreted subclasses), and the
clients, whose time is spent waiting.

This module imports only the standard library: ``setup.py`` runs it before
mailwire is installed.
"""

from __future__ import annotations

import os
from importlib.machinery import EXTENSION_SUFFIXES

__all__ = ["MODULES", "compiled"]

MODULES = (
    "mailwire.protocol.server",
    "mailwire.protocol.buffer",
    "mailwire.protocol.data",
    "mailwire.protocol.commands",
    "mailwire.protocol.state",
    "mailwire.protocol.events",
    "mailwire.server.policy",
    "mailwire.server.clock",
    "mailwire._aio.deadline",
    "mailwire.reply",
)


def compiled() -> bool:
    """Whether this install runs the compiled modules: each has an extension
    module beside its source, which Python's import system loads in its place.
    Found without importing them (``mailwire.server`` would bring in asyncio)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return all(
        any(os.path.exists(os.path.join(root, *module.split(".")) + suffix) for suffix in EXTENSION_SUFFIXES)
        for module in MODULES
    )
