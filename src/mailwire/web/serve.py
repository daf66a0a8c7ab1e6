"""Running the web inbox beside the SMTP server, on the same event loop.

``mailwire serve`` (``cli/serve_web.py``) builds a ``WebInbox`` for the
Maildir it stores in: ``open_inbox`` opens the ``Inbox`` (the index is
brought up to date with the Maildir) and gives the ``Catcher`` backend
that the SMTP server stores through, so what arrives is indexed as it is
stored. ``WebInbox.start`` binds aiohttp's ``AppRunner``/``TCPSite`` on the
running loop (the SMTP server's: one loop, no second thread of requests;
the inbox's blocking calls run in threads, ``asyncio.to_thread``) and
answers the banner's words; ``stop`` ends open event streams and waits,
closes the listener and then the inbox. The start/stop pair is what
``serve_run`` calls a companion: it knows nothing of HTTP.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace

from aiohttp import web

from .._aio.accepting import stop_accepting
from ..inbox import Catcher, Inbox
from ..inbox.release import ReleaseRelay
from ..server.chaos import Chaos
from ..server.config import ServerConfig
from ..server.envelope import Envelope
from .app import Stats, make_app
from .hosts import is_loopback

__all__ = ["WebInbox", "open_inbox", "SHUTDOWN_TIMEOUT"]

SHUTDOWN_TIMEOUT = 2.0  # seconds requests in progress get when the server stops


def _url(address: object) -> str:
    if isinstance(address, tuple):
        host = str(address[0])
        return f"http://[{host}]:{address[1]}/" if ":" in host else f"http://{host}:{address[1]}/"
    return str(address)


# How long and for how many messages the catcher's deliveries may wait to be
# indexed while nobody reads or waits (Inbox's index_delay and index_backlog).
# The web inbox is the index's one reader and flushes before every read, and a
# waiter (the API's wait, the page's live list) has each message indexed at
# once; so no time limit: a burst is indexed when it pauses (a quarter second)
# or every INDEX_BACKLOG messages, not while its SMTP sessions want the CPU
# (indexing costs about a fifth of what receiving and storing a 1 KB message
# does: 8,000 in a row went at 0.75x the plain Maildir's rate with the
# library's 5 s limit, at par without it). Another process opening the same
# index sees a message once the burst pauses.
INDEX_DELAY: float | None = None
INDEX_BACKLOG = 20_000


def open_inbox(maildir: str) -> tuple[Inbox, Catcher]:
    """The inbox of ``maildir`` and the backend that fills it (``OSError``
    or ``sqlite3.Error`` if the index cannot be opened)."""
    inbox = Inbox(maildir, index_delay=INDEX_DELAY, index_backlog=INDEX_BACKLOG)
    return inbox, Catcher(inbox)


class WebInbox:
    """Mailpit's API v1 over ``inbox``, served on ``host:port`` (port 0: a
    free one) once started; ``auth``: (user, password) for basic auth;
    ``relay``: where the release route sends; ``catcher``: the SMTP side's
    backend, which the send route stores through too; ``chaos``: the
    failures the SMTP server injects, set over the API (``hook`` gives them
    to the server)."""

    def __init__(self, inbox: Inbox, host: str, port: int, *, auth: tuple[str, str] | None = None,
                 relay: ReleaseRelay | None = None, catcher: Catcher | None = None,
                 chaos: Chaos | None = None) -> None:
        self.inbox = inbox
        self.host = host
        self.port = port
        self.stats = Stats()
        self.chaos = chaos
        self.app = make_app(inbox, auth=auth, stats=self.stats, local_only=is_loopback(host), relay=relay,
                            catcher=catcher, chaos=chaos)
        self._runner: web.AppRunner | None = None

    @property
    def where(self) -> str:
        """Where it listens (or is to), for messages."""
        return _url((self.host, self.port)).removeprefix("http://").rstrip("/")

    def hook(self, config: ServerConfig) -> ServerConfig:
        """``config`` with ``on_delivered`` also counting for ``info``, and
        with this inbox's ``chaos`` (if it has one)."""
        if self.chaos is not None:
            config = replace(config, chaos=self.chaos)
        earlier = config.on_delivered
        if earlier is None:
            return replace(config, on_delivered=self.stats.delivered)

        def both(envelope: Envelope, recipients: Sequence[str]) -> None:
            earlier(envelope, recipients)
            self.stats.delivered(envelope, recipients)

        return replace(config, on_delivered=both)

    @property
    def urls(self) -> list[str]:
        if self._runner is None:
            return []
        return [_url(a) for a in self._runner.addresses]

    async def start(self) -> str:
        """Listen (``OSError`` if it cannot); the banner's words."""
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = runner.addresses[0][1] if runner.addresses else self.port
        return "web inbox on " + " and ".join(self.urls)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        try:
            if runner is not None:
                server = runner.server
                # aiohttp does not expose a site's asyncio.Server, hence getattr.
                await stop_accepting(getattr(site, "_server", None) for site in runner.sites)
                await runner.cleanup()
                if server is not None:
                    await _close_late(server)
        finally:
            self.inbox.close()


LATE_ROUNDS = 5  # loop rounds after the stop in which a connection accepted before it may still appear


async def _close_late(server: web.Server) -> None:
    """Close connections that reached aiohttp after it closed its own.

    A connection attached in the rounds while the sites stopped reaches its
    protocol a round later; aiohttp's shutdown has by then closed the
    connections it knew, so one arriving after is never closed by it, and
    its client would wait for ever if the loop stops next (as an embedding
    program's or a test's does).
    """
    for _ in range(LATE_ROUNDS):
        await asyncio.sleep(0)
        for handler in server.connections:
            handler.force_close()
