"""``SendResult`` moved to ``mailwire.result``, a value module below ``errors``
(which carries it); this name stays for the modules not yet moved to it."""

from __future__ import annotations

from ..result import SendResult

__all__ = ["SendResult"]
