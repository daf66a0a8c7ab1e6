"""A timeout bounds the whole wait for a reply, however the server paces its bytes.

A server that sends a reply one byte every 0.3 s never leaves a read waiting
longer than that, so a timeout re-armed per read never fires and the server
holds the client as long as it likes. Every client here — ``SMTPClient``,
``AsyncSMTPClient`` (asyncio's loop and uvloop), ``SMTPPool`` and the drop-in
``mailwire.smtplib.SMTP`` — must raise its documented timeout error well
inside three times its timeout of 1 s while such a trickle (about 12 s of it)
goes on: for the greeting, for a reply mid-session, and for one reply of a
pipelined group. The deadline is per reply, not per group: a group whose
replies each come inside the timeout succeeds however long the group takes.
The TLS handshake and a server that barely reads what the client writes are
bounded the same way.
"""

from __future__ import annotations

import asyncio
import smtplib as std
import ssl
import time
from collections.abc import Callable
from typing import Any

import pytest

import mailwire.smtplib as dropin
from mailwire import AsyncSMTPClient, SMTPClient, SMTPPool
from mailwire.client.aio_transport import AsyncTransport

from helpers.loops import LOOPS, run_on
from helpers.scripted import Peer, ScriptedServer
from helpers.slowpeer import Quiet, read_slowly, trickle, trickle_handshake

Start = Callable[..., ScriptedServer]
pytestmark = pytest.mark.timeout(40)

TIMEOUT = 1.0
BOUND = 3 * TIMEOUT  # generous: the trickle below lasts four times as long
SLOW_REPLY = b"250 2.0.0 " + b"x" * 30 + b"\r\n"  # 42 bytes at 0.3 s: about 12 s
MESSAGE = b"Subject: slow\r\n\r\nhello\r\n"
ENVELOPE = ("a@example.org", ["b@example.net", "c@example.net"])


def _trickled(reply: bytes = SLOW_REPLY) -> Callable[[Peer], object]:
    return lambda peer: trickle(peer, reply)


def _group_then_trickle(peer: Peer) -> None:
    """MAIL, RCPT, RCPT, DATA arrived pipelined: two replies at once, the third trickled."""
    peer.reply("250 2.1.0 sender ok", "250 2.1.5 first ok")
    trickle(peer, SLOW_REPLY)


def _group_slowly(peer: Peer) -> None:
    """Each reply of the group (and the final one) half the timeout after the
    last: each inside it (with room for a loaded machine's scheduling: 0.6 s
    once failed under load), the group as a whole beyond twice the timeout."""
    for reply in ("250 2.1.0 sender ok", "250 2.1.5 first ok", "250 2.1.5 second ok", "354 go ahead"):
        time.sleep(0.5)
        peer.reply(reply)
    peer.recv_until(b"\r\n.\r\n")
    time.sleep(0.5)
    peer.reply("250 2.0.0 queued")
    if peer.recv_line().upper().startswith(b"QUIT"):
        peer.reply("221 2.0.0 bye")


GREETING = dict(until=b"", then=_trickled(b"220 " + SLOW_REPLY[4:]))
MID_SESSION = dict(until=b"NOOP", then=_trickled())
IN_A_GROUP = dict(until=b"MAIL", then=_group_then_trickle)
SCRIPTS = {"greeting": GREETING, "mid-session": MID_SESSION, "in-a-group": IN_A_GROUP}


# -- SMTPClient -------------------------------------------------------------------


def _sync_client(server: ScriptedServer, **options: Any) -> SMTPClient:
    return SMTPClient(*server.address, tls="none", timeout=TIMEOUT, connect=False, **options)


@pytest.mark.parametrize("where", ["greeting", "mid-session", "in-a-group"])
def test_blocking_timeouts_come_in_time(scripted: Start, where: str) -> None:
    script = SCRIPTS[where]
    client = _sync_client(scripted(Quiet(**script), strict=False))  # type: ignore[arg-type]
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        client.connect()
        client.noop() if where == "mid-session" else client.send(MESSAGE, *ENVELOPE)
    assert time.monotonic() - started < BOUND
    assert not client.connected


def test_blocking_group_deadline_is_per_reply(scripted: Start) -> None:
    client = _sync_client(scripted(Quiet(b"MAIL", then=_group_slowly), strict=False))
    client.connect()
    started = time.monotonic()
    result = client.send(MESSAGE, *ENVELOPE)
    assert time.monotonic() - started > 2 * TIMEOUT  # the group outlasted the timeout, reply by reply
    assert result.ok and result.data_reply is not None and result.data_reply.text == "queued"
    client.quit()


# -- AsyncSMTPClient and SMTPPool --------------------------------------------------


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("where", ["greeting", "mid-session", "in-a-group"])
def test_asyncio_timeouts_come_in_time(scripted: Start, loop: str, where: str) -> None:
    server = scripted(Quiet(**SCRIPTS[where]), strict=False)  # type: ignore[arg-type]

    async def main() -> None:
        client = AsyncSMTPClient(*server.address, tls="none", timeout=TIMEOUT)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await client.connect()
            await (client.noop() if where == "mid-session" else client.send(MESSAGE, *ENVELOPE))
        assert time.monotonic() - started < BOUND
        assert not client.connected
        await client.close()

    run_on(loop, main())


@pytest.mark.parametrize("loop", LOOPS)
def test_an_expiry_while_the_reader_is_between_waits_is_not_lost(
    scripted: Start, loop: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deadline's timer may run just after a byte woke the reader and
    before it waits again (a busy loop makes that likely). Here it is made to
    happen at the trickle's first byte: the expiry must still end the wait,
    not be dropped while the trickle goes on (it was, under load: found by
    the suite's runs side by side)."""
    quiet = Quiet(**SCRIPTS["mid-session"])  # type: ignore[arg-type]
    server = scripted(quiet, strict=False)
    received = AsyncTransport.data_received
    fired: list[bool] = []

    def data_received(self: AsyncTransport, data: bytes) -> None:
        received(self, data)
        if quiet.seen.is_set() and not fired and self._wake is not None and self._wake.done():
            fired.append(True)
            self._deadline.cancel()  # as the timer is once it has run
            self._expired()

    monkeypatch.setattr(AsyncTransport, "data_received", data_received)

    async def main() -> None:
        client = AsyncSMTPClient(*server.address, tls="none", timeout=TIMEOUT)
        await client.connect()
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await client.noop()
        assert fired
        assert time.monotonic() - started < BOUND
        assert not client.connected
        await client.close()

    run_on(loop, main())


@pytest.mark.parametrize("loop", LOOPS)
def test_asyncio_group_deadline_is_per_reply(scripted: Start, loop: str) -> None:
    server = scripted(Quiet(b"MAIL", then=_group_slowly), strict=False)

    async def main() -> None:
        async with AsyncSMTPClient(*server.address, tls="none", timeout=TIMEOUT) as client:
            started = time.monotonic()
            result = await client.send(MESSAGE, *ENVELOPE)
            assert time.monotonic() - started > 2 * TIMEOUT
            assert result.ok and result.data_reply is not None and result.data_reply.text == "queued"

    run_on(loop, main())


@pytest.mark.parametrize("where", ["greeting", "in-a-group"])
def test_pool_timeouts_come_in_time(scripted: Start, where: str) -> None:
    server = scripted(Quiet(**SCRIPTS[where]), strict=False)  # type: ignore[arg-type]

    async def main() -> None:
        async with SMTPPool(*server.address, size=1, tls="none", timeout=TIMEOUT) as pool:
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                await pool.send(MESSAGE, *ENVELOPE)
            assert time.monotonic() - started < BOUND

    run_on("asyncio", main())


# -- the drop-in ------------------------------------------------------------------


def test_dropin_greeting(scripted: Start) -> None:
    server = scripted(Quiet(**GREETING), strict=False)  # type: ignore[arg-type]
    started = time.monotonic()
    with pytest.raises(std.SMTPServerDisconnected, match="timed out"):
        dropin.SMTP(*server.address, local_hostname="client.test", timeout=TIMEOUT)
    assert time.monotonic() - started < BOUND


def test_dropin_mid_session(scripted: Start) -> None:
    server = scripted(Quiet(**MID_SESSION), strict=False)  # type: ignore[arg-type]
    smtp = dropin.SMTP(*server.address, local_hostname="client.test", timeout=TIMEOUT)
    smtp.ehlo()
    started = time.monotonic()
    with pytest.raises(std.SMTPServerDisconnected, match="timed out"):
        smtp.noop()
    assert time.monotonic() - started < BOUND
    assert smtp.sock is None


def test_dropin_keeps_its_socket_timeout_between_replies(scripted: Start) -> None:
    # The deadline narrows the socket's timeout while a reply trickles in and
    # gives it back after: ``sock.gettimeout()`` says what the program set.
    def script(peer: Peer) -> None:
        trickle(peer, b"220 ok\r\n", 0.05)
        peer.recv_line()
        peer.reply("250 2.0.0 OK")

    server = scripted(script)
    smtp = dropin.SMTP(*server.address, local_hostname="client.test", timeout=7)
    assert smtp.sock is not None and smtp.sock.gettimeout() == 7
    assert smtp.noop()[0] == 250
    assert smtp.sock.gettimeout() == 7
    smtp.close()


# -- the TLS handshake and a server that stops reading --------------------------------


@pytest.mark.parametrize("tls", ["implicit", "starttls"])
def test_blocking_tls_handshake(scripted: Start, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext, tls: str) -> None:
    handshake = lambda peer: trickle_handshake(peer, server_tls)  # noqa: E731
    if tls == "implicit":
        quiet = Quiet(b"", then=handshake)
    else:
        quiet = Quiet(b"STARTTLS", then=lambda peer: (peer.reply("220 go"), handshake(peer)), keywords=["STARTTLS"])
    server = scripted(quiet, strict=False)
    client = SMTPClient(*server.address, tls=tls, ssl_context=client_tls, timeout=TIMEOUT, connect=False)  # type: ignore[arg-type]
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        client.connect()
    assert time.monotonic() - started < BOUND


@pytest.mark.parametrize("tls", ["implicit", "starttls"])
def test_asyncio_tls_handshake(scripted: Start, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext, tls: str) -> None:
    handshake = lambda peer: trickle_handshake(peer, server_tls)  # noqa: E731
    if tls == "implicit":
        quiet = Quiet(b"", then=handshake)
    else:
        quiet = Quiet(b"STARTTLS", then=lambda peer: (peer.reply("220 go"), handshake(peer)), keywords=["STARTTLS"])
    server = scripted(quiet, strict=False)

    async def main() -> None:
        client = AsyncSMTPClient(*server.address, tls=tls, ssl_context=client_tls, timeout=TIMEOUT)  # type: ignore[arg-type]
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await client.connect()
        assert time.monotonic() - started < BOUND

    run_on("asyncio", main())


BIG = b"Subject: big\r\n\r\n" + (b"y" * 998 + b"\r\n") * 12_000  # 12 MB: more than the socket buffers hold


def _drain_slowly(peer: Peer) -> None:
    peer.reply("354 go ahead")
    read_slowly(peer)


def test_blocking_write_to_a_server_that_barely_reads(scripted: Start) -> None:
    server = scripted(Quiet(b"DATA", then=_drain_slowly), strict=False)
    client = _sync_client(server)
    client.connect()
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        client.send(BIG, *ENVELOPE)
    assert time.monotonic() - started < BOUND + 2  # writing what the buffers take counts too


def test_asyncio_write_to_a_server_that_barely_reads(scripted: Start) -> None:
    server = scripted(Quiet(b"DATA", then=_drain_slowly), strict=False)

    async def main() -> None:
        client = AsyncSMTPClient(*server.address, tls="none", timeout=TIMEOUT)
        await client.connect()
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await client.send(BIG, *ENVELOPE)
        assert time.monotonic() - started < BOUND + 2
        await client.close()

    run_on("asyncio", main())
