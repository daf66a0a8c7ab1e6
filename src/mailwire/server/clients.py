"""What a server remembers about a client address across its connections.

A limit per connection is no limit for a client that opens another one, so
two things are counted per client address, shared by all its connections:
how many connections it holds (``Limits.connections_per_client``, Postfix's
``smtpd_client_connection_count_limit``) and how many times it failed AUTH
in its current window (``Limits.auth_failures`` per
``Limits.auth_failure_window``, as Postfix's anvil counts per address and
time unit). A window opens at a failure and lasts its length; past the
budget, AUTH from the address is refused until the window ends.

The networks of ``ServerConfig.client_limit_exempt`` are not counted at
all: by default loopback, as Postfix exempts ``$mynetworks`` (which holds
127.0.0.0/8 and ::1) from its per-client limits. A local catcher under a load
test, or a proxy on the same host that does not speak the PROXY protocol,
comes from there and must not be capped as one client. Unix-socket peers are
not counted either. An IPv6 client is counted by its /64, the block one site
usually gets, so that rotating through its own addresses evades nothing.

The table stays bounded: an address leaves the connection count with its
last connection, and expired windows are swept whenever the table has
doubled since the last sweep. Logging is bounded the same way: one line per
client and window, never one per failure.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Iterable

from ..limits import Limits
from .networks import in_networks, parse_networks, peer_ip

__all__ = ["ClientTable", "LogThrottle"]

log = logging.getLogger("mailwire.server")

class LogThrottle:
    """Says whether to log about ``key`` now: once per key per ``interval``."""

    __slots__ = ("interval", "_until", "_sweep_at")

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._until: dict[str, float] = {}
        self._sweep_at = 1024

    def __call__(self, key: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        until = self._until.get(key)
        if until is not None and now < until:
            return False
        if len(self._until) >= self._sweep_at:
            self._until = {k: u for k, u in self._until.items() if u > now}
            self._sweep_at = max(1024, 2 * len(self._until))
        self._until[key] = now + self.interval
        return True


class _Window:
    __slots__ = ("end", "failures")

    def __init__(self, end: float) -> None:
        self.end = end
        self.failures = 0


class ClientTable:
    """Per-address counts for one server (all on its event loop)."""

    def __init__(self, limits: Limits, exempt: Iterable[str]) -> None:
        self.limits = limits
        self.exempt = parse_networks(exempt)
        self._open: dict[str, int] = {}
        self._windows: dict[str, _Window] = {}
        self._sweep_at = 1024
        self.refusal_log = LogThrottle(60.0)
        self.auth_log = LogThrottle(limits.auth_failure_window)

    def key(self, peer: object) -> str | None:
        """The name a peer is counted under, or None: not counted (an exempt
        network, a Unix socket, anything that is not an IP address)."""
        ip = peer_ip(peer)
        if ip is None or in_networks(ip, self.exempt):
            return None
        if isinstance(ip, ipaddress.IPv6Address):
            return f"{ipaddress.IPv6Address(int(ip) >> 64 << 64)}/64"
        return str(ip)

    # -- connections ---------------------------------------------------------------

    def connect(self, key: str | None) -> bool:
        """Count a connection from ``key``; False (not counted) if it holds its share."""
        cap = self.limits.connections_per_client
        if key is None or not cap:
            return True
        held = self._open.get(key, 0)
        if held >= cap:
            return False
        self._open[key] = held + 1
        return True

    def disconnect(self, key: str | None) -> None:
        """A connection ``connect`` counted is gone."""
        if key is None or not self.limits.connections_per_client:
            return
        held = self._open.get(key, 0) - 1
        if held > 0:
            self._open[key] = held
        else:
            self._open.pop(key, None)

    def connections(self, key: str) -> int:
        return self._open.get(key, 0)

    # -- AUTH failures ---------------------------------------------------------------

    def _window(self, key: str, now: float) -> _Window | None:
        window = self._windows.get(key)
        if window is not None and now >= window.end:
            del self._windows[key]
            return None
        return window

    def auth_refused(self, key: str | None, now: float | None = None) -> bool:
        """Has ``key`` spent its failure budget for the current window?"""
        budget = self.limits.auth_failures
        if key is None or not budget:
            return False
        window = self._window(key, time.monotonic() if now is None else now)
        return window is not None and window.failures >= budget

    def auth_failed(self, key: str | None, now: float | None = None) -> int:
        """Count a failed AUTH; the failures of ``key`` in its window so far
        (0 for a client that is not counted)."""
        if key is None:
            return 0
        now = time.monotonic() if now is None else now
        window = self._window(key, now)
        if window is None:
            if len(self._windows) >= self._sweep_at:
                self._windows = {k: w for k, w in self._windows.items() if w.end > now}
                self._sweep_at = max(1024, 2 * len(self._windows))
            window = self._windows[key] = _Window(now + self.limits.auth_failure_window)
        window.failures += 1
        return window.failures
