"""Accept-and-discard SMTP servers for the server benchmark, one per process.

``python bench/serve_sink.py mailwire --host H --port P`` runs mailwire's asyncio server with its
``Sink`` backend (what ``mailwire serve --sink`` runs, for when the CLI lacks that command);
``python3.11 bench/serve_sink.py smtpd --host H --port P`` runs CPython's ``smtpd`` on
``asyncore``, with a ``process_message`` that returns None (250, message dropped). ``smtpd`` and
``asyncore`` left the standard library in 3.12, so the second needs a 3.11 interpreter; it does not
import mailwire, so any 3.11 will do. ``bare`` is the reference ceiling: an asyncio Protocol that
only finds CRLF with ``bytes.find`` and writes canned replies. ``mailwire-stream`` is mailwire with
a streaming session (``StreamingSession.data_stream``) that reads each message to its end and drops
it: what taking a message as it arrives costs over taking it whole. All serve until killed. aiosmtpd
needs no launcher:
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
        from mailwire.server import Sink

        backend = Sink()
    except ImportError:  # the Sink backend is being written alongside: the same thing, inline

        async def backend(envelope: object) -> None:
            pass

    async def run() -> None:
        server = SMTPServer(backend, hostname="localhost")
        await server.start(host, port)
        await server.serve_forever()

    asyncio.run(run())


def serve_mailwire_stream(host: str, port: int) -> None:
    from mailwire.server import BaseSession, Envelope, MessageContent, SessionInfo, SMTPServer

    class StreamSink(BaseSession):
        async def data_stream(self, envelope: Envelope, content: MessageContent) -> None:
            async for _ in content:
                pass

    class Backend:
        async def new_session(self, info: SessionInfo) -> StreamSink:
            return StreamSink(info)

    async def run() -> None:
        server = SMTPServer(Backend(), hostname="localhost")
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


class _BareProtocol(asyncio.Protocol):
    """The ceiling, not a server: finds CRLF (and the end of DATA) with
    bytes.find and writes canned replies. No parsing, no checks, no backend."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buffer = b""
        self.in_data = False
        transport.write(b"220 bare ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        buffer, out = self.buffer + data, []
        while True:
            if self.in_data:
                end = buffer.find(b"\r\n.\r\n")
                if end < 0:
                    buffer = buffer[-4:]
                    break
                buffer, self.in_data = buffer[end + 5:], False
                out.append(b"250 2.0.0 Ok\r\n")
                continue
            end = buffer.find(b"\r\n")
            if end < 0:
                break
            verb, buffer = buffer[:4].upper(), buffer[end + 2:]
            if verb == b"DATA":
                self.in_data, buffer = True, b"\r\n" + buffer
                out.append(b"354 go ahead\r\n")
            elif verb == b"QUIT":
                self.transport.write(b"".join(out) + b"221 2.0.0 Bye\r\n")
                self.transport.close()
                return
            elif verb in (b"EHLO", b"HELO"):
                out.append(b"250-bare\r\n250 PIPELINING\r\n")
            else:
                out.append(b"250 2.0.0 Ok\r\n")
        self.buffer = buffer
        if out:
            self.transport.write(b"".join(out))


def serve_bare(host: str, port: int) -> None:
    async def run() -> None:
        server = await asyncio.get_running_loop().create_server(_BareProtocol, host, port, backlog=BACKLOG)
        await server.serve_forever()

    asyncio.run(run())


SERVERS = {
    "mailwire": serve_mailwire, "mailwire-stream": serve_mailwire_stream, "smtpd": serve_smtpd, "bare": serve_bare,
}


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
