"""Accept-and-discard SMTP servers for the server benchmark, one per process.

``python bench/serve_sink.py mailwire --host H --port P`` runs mailwire's asyncio server with its
``Sink`` backend (what ``mailwire serve --sink`` runs, for when the CLI lacks that command);
``python3.11 bench/serve_sink.py smtpd --host H --port P`` runs CPython's ``smtpd`` on
``asyncore``, with a ``process_message`` that returns None (250, message dropped). ``smtpd`` and
``asyncore`` left the standard library in 3.12, so the second needs a 3.11 interpreter; it does not
import mailwire, so any 3.11 will do. Both serve until killed. aiosmtpd needs no launcher:
``python -m aiosmtpd -n -l H:P -c aiosmtpd.handlers.Sink`` is its own.
"""

from __future__ import annotations

import argparse
import asyncio
import warnings
from collections.abc import Sequence
from typing import Any

# smtpd.SMTPServer listens with a backlog of 5; smtp-source opens its 20 sessions at once, and a
# SYN dropped on a full accept queue is retried only after a second. Listen again with the backlog
# the other servers get (asyncio's create_server default) so the benchmark measures messages.
BACKLOG = 100


def serve_mailwire(host: str, port: int) -> None:
    from mailwire.server.aio import SMTPServer

    backend: Any
    try:
        from mailwire.server.handlers import Sink

        backend = Sink()
    except ImportError:  # the Sink backend is being written alongside: the same thing, inline

        async def backend(envelope: object) -> None:
            pass

    async def run() -> None:
        server = SMTPServer(backend, hostname="localhost")
        await server.start(host, port)
        await server.serve_forever()

    asyncio.run(run())


def serve_smtpd(host: str, port: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import asyncore
        import smtpd

    class Discard(smtpd.SMTPServer):
        def process_message(
            self, peer: Any, mailfrom: str, rcpttos: list[str], data: bytes | str, **kwargs: Any
        ) -> str | None:
            return None

    # remoteaddr is where PureProxy would relay; a plain SMTPServer only stores it
    server = Discard((host, port), (host, 0), decode_data=False)
    server.listen(BACKLOG)
    asyncore.loop()


SERVERS = {"mailwire": serve_mailwire, "smtpd": serve_smtpd}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("server", choices=sorted(SERVERS))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    try:
        SERVERS[args.server](args.host, args.port)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
