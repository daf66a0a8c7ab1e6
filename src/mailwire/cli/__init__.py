"""The command lines: argument parsing and wiring over the public API, nothing more.

``main`` is the ``mailwire`` command (``mailwire send``, ``mailwire serve``;
also ``python -m mailwire``); ``smtpd`` is ``python -m mailwire.smtpd``'s,
the removed ``smtpd`` module's command line. Each subcommand is a module
that turns options into a plan, checked before anything connects or binds,
and one that runs it (``send`` and ``send_run``, ``serve`` and
``serve_run``); ``options`` holds what their options share. This package is
the top of mailwire: nothing in the library imports it (the layering test
holds that), so whatever a command needs must exist as a library API first.
"""

from __future__ import annotations

__all__: list[str] = []
