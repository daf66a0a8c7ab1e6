"""Which host names are this machine's own: the loopback guard's one rule.

No aiohttp here, so ``mailwire serve`` can ask it (to warn about a web
inbox bound beyond loopback) where the extra is not installed. The same
rule guards a loopback-bound inbox against DNS rebinding (``app.py``): a
web page elsewhere can make a browser send requests to 127.0.0.1 under a
name of its own, which a request's ``Host`` header betrays.
"""

from __future__ import annotations

import ipaddress

__all__ = ["is_loopback"]


def is_loopback(host: str) -> bool:
    """``localhost`` (and ``*.localhost``, RFC 6761) or a loopback address."""
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
