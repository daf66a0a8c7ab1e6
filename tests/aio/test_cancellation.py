"""Cancellation, timeouts and vanishing servers never leave a client out of step.

A dialog cut short (cancelled, timed out, or the peer gone) closes the
connection: a reply still in flight would otherwise be read as the answer to
the next command. The servers here delay one reply and then answer anyway,
with a text that names the transaction it belongs to, so a late reply paired
with a later command shows up in the later send's result.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from mailwire import AsyncSMTPClient, ConnectionClosed, RemoteProtocolError

from helpers.minismtp import MiniSMTP, Received
from helpers.scripted import Peer, ScriptedServer

from .support import Conn, Recorder, Txn, run, wait_until

Start = Callable[..., ScriptedServer]
pytestmark = pytest.mark.timeout(30)


def _greeted(peer: Peer, *keywords: str) -> None:
    peer.reply("220 slow ESMTP")
    assert peer.recv_line().startswith(b"EHLO ")
    lines = ["slow", *keywords]
    peer.reply(*(f"250{'-' if i < len(lines) - 1 else ' '}{k}" for i, k in enumerate(lines)))


def _named_final(txn: Received, rcpt: str | None) -> str:
    return f"250 2.0.0 queued for {txn.mail_from}"


# -- cancellation -----------------------------------------------------------------------


def test_cancel_while_waiting_for_the_data_reply() -> None:
    late_reply_sent: list[bool] = []

    async def final(conn: Conn, txn: Txn) -> str:
        if txn.mail_from == "first@example.org":
            await asyncio.sleep(0.5)  # the client gives up meanwhile; then answer anyway
            late_reply_sent.append(True)
            return "250 2.0.0 LATE reply for first"
        return f"250 2.0.0 queued for {txn.mail_from}"

    async def main() -> None:
        async with Recorder(final_reply=final) as rec:
            client = AsyncSMTPClient(*rec.address, tls="none", timeout=5)
            await client.connect()
            task = asyncio.create_task(client.send(b"first\r\n", "first@example.org", ["r@example.net"]))
            assert await wait_until(lambda: len(rec.transactions) == 1)  # content is in; reply pending
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not client.connected  # closed, never left with a reply in flight

            # The very next send reconnects (auto_reconnect) and gets its own replies.
            second = await client.send(b"second\r\n", "second@example.org", ["r@example.net"])
            assert second.data_reply is not None and second.data_reply.text == "queued for second@example.org"
            assert second.mail_reply.text == "Sender OK"
            assert await wait_until(lambda: bool(late_reply_sent))  # the late reply went out on the old connection
            third = await client.send(b"third\r\n", "third@example.org", ["r@example.net"])
            assert third.data_reply is not None and third.data_reply.text == "queued for third@example.org"
            await client.quit()
            assert rec.attempts == 2
            assert [t.mail_from for t in rec.conns[1].transactions] == ["second@example.org", "third@example.org"]
            assert rec.refused_replies == 0

    run(main())


def test_cancel_while_waiting_for_354(scripted: Start) -> None:
    calls = []

    def script(peer: Peer) -> None:
        calls.append(peer)
        if len(calls) == 1:
            _greeted(peer, "PIPELINING")
            for _ in range(3):  # MAIL, RCPT, DATA in one pipelined group
                peer.recv_line()
            peer.reply("250 2.1.0 mail ok", "250 2.1.5 rcpt ok")
            time.sleep(0.5)
            try:
                peer.reply("354 LATE go ahead")
            except OSError:
                pass
            peer.wait_closed(2)
            return
        MiniSMTP(final_reply=_named_final)(peer)

    server = scripted(script, connections=2, strict=False)

    async def main() -> None:
        async with AsyncSMTPClient(*server.address, tls="none", timeout=5) as client:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(client.send(b"one\r\n", "one@example.org", ["r@example.net"]), 0.2)
            assert not client.connected
            result = await client.send(b"two\r\n", "two@example.org", ["r@example.net"])
            assert result.data_reply is not None and result.data_reply.text == "queued for two@example.org"

    run(main())
    server.close()
    assert len(server.peers) == 2
    assert b"one\r\n" not in bytes(server.peers[0].received)  # content never followed a missing 354


def test_cancel_while_connecting_then_reconnect(scripted: Start) -> None:
    calls = []

    def script(peer: Peer) -> None:
        calls.append(peer)
        if len(calls) == 1:
            time.sleep(0.5)  # no greeting in time
            return
        MiniSMTP(final_reply=_named_final)(peer)

    server = scripted(script, connections=2, strict=False)

    async def main() -> None:
        client = AsyncSMTPClient(*server.address, tls="none", timeout=5)
        task = asyncio.create_task(client.send(b"x\r\n", "a@example.org", ["r@example.net"]))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not client.connected
        result = await client.send(b"y\r\n", "b@example.org", ["r@example.net"])
        assert result.data_reply is not None and result.data_reply.text == "queued for b@example.org"
        await client.quit()

    run(main())


def test_cancelled_waiters_do_not_disturb_the_running_dialog() -> None:
    # Tasks cancelled while queued for the lock never touch the wire.
    async def slow(conn: Conn, txn: Txn) -> str:
        await asyncio.sleep(0.2)
        return f"250 2.0.0 queued for {txn.mail_from}"

    async def main() -> None:
        async with Recorder(final_reply=slow) as rec:
            async with AsyncSMTPClient(*rec.address, tls="none", timeout=5) as client:
                first = asyncio.create_task(client.send(b"1\r\n", "s1@example.org", ["r@example.net"]))
                waiting = [asyncio.create_task(client.send(b"w\r\n", f"w{i}@example.org", ["r@example.net"]))
                           for i in range(5)]
                await asyncio.sleep(0.05)
                for task in waiting:
                    task.cancel()
                result = await first
                assert result.data_reply is not None and result.data_reply.text == "queued for s1@example.org"
                assert client.connected
                after = await client.send(b"2\r\n", "s2@example.org", ["r@example.net"])
                assert after.data_reply is not None and after.data_reply.text == "queued for s2@example.org"
            assert [t.mail_from for t in rec.transactions] == ["s1@example.org", "s2@example.org"]
            assert rec.attempts == 1

    run(main())


# -- timeouts -------------------------------------------------------------------------------


def test_timeout_waiting_for_the_greeting(scripted: Start) -> None:
    server = scripted(lambda peer: peer.wait_closed(), strict=False)

    async def main() -> None:
        client = AsyncSMTPClient(*server.address, tls="none", timeout=0.3)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await client.connect()
        assert 0.25 < time.monotonic() - started < 2
        assert not client.connected

    run(main())


@pytest.mark.parametrize("auto_reconnect", [False, True])
def test_timeout_mid_transaction(scripted: Start, auto_reconnect: bool) -> None:
    calls = []

    def script(peer: Peer) -> None:
        calls.append(peer)
        if len(calls) == 1:
            _greeted(peer, "PIPELINING")
            peer.wait_closed()  # MAIL, RCPT, DATA arrive; no reply ever
            return
        MiniSMTP(final_reply=_named_final)(peer)

    server = scripted(script, connections=2, strict=False)

    async def main() -> None:
        client = AsyncSMTPClient(*server.address, tls="none", timeout=0.3, auto_reconnect=auto_reconnect)
        await client.connect()
        started = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):  # the same class as TimeoutError on 3.11+
            await client.send(b"x\r\n", "s@example.org", ["r@example.net"])
        assert time.monotonic() - started < 2
        assert not client.connected
        if not auto_reconnect:
            with pytest.raises(ConnectionClosed):
                await client.send(b"y\r\n", "s@example.org", ["r@example.net"])
            with pytest.raises(ConnectionClosed):
                await client.noop()
            assert len(calls) == 1  # it did not try to reconnect
        else:
            result = await client.send(b"y\r\n", "t@example.org", ["r@example.net"])
            assert result.data_reply is not None and result.data_reply.text == "queued for t@example.org"
            await client.quit()

    run(main())
    if not auto_reconnect:
        server.close()
        assert len(server.peers) == 1


def test_explicit_connect_after_a_failure_with_auto_reconnect_off(scripted: Start) -> None:
    calls = []

    def script(peer: Peer) -> None:
        calls.append(peer)
        if len(calls) == 1:
            _greeted(peer, "PIPELINING")
            peer.wait_closed()
            return
        MiniSMTP()(peer)

    server = scripted(script, connections=2, strict=False)

    async def main() -> None:
        client = AsyncSMTPClient(*server.address, tls="none", timeout=0.3, auto_reconnect=False)
        await client.connect()
        with pytest.raises(TimeoutError):
            await client.noop()
        await client.connect()  # an explicit connect is always allowed
        assert (await client.noop()).code == 250
        await client.quit()

    run(main())


# -- a server that goes away -----------------------------------------------------------------


@pytest.mark.parametrize("pipelining", [True, False])
def test_server_drops_the_connection_mid_transaction(scripted: Start, pipelining: bool) -> None:
    def script(peer: Peer) -> None:
        _greeted(peer, *(["PIPELINING"] if pipelining else []))
        assert peer.recv_line().startswith(b"MAIL ")
        peer.reply("250 2.1.0 ok")
        peer.recv_line()  # RCPT, then gone

    server = scripted(script, strict=False)

    async def main() -> None:
        client = AsyncSMTPClient(*server.address, tls="none", timeout=2, auto_reconnect=False)
        await client.connect()
        with pytest.raises((ConnectionClosed, RemoteProtocolError)) as caught:
            await client.send(b"x\r\n", "s@example.org", ["r@example.net"])
        assert "closed" in str(caught.value)
        assert not client.connected
        with pytest.raises(ConnectionClosed):
            await client.noop()

    run(main())


def test_server_drops_the_connection_mid_reply(scripted: Start) -> None:
    def script(peer: Peer) -> None:
        _greeted(peer, "PIPELINING")
        peer.recv_line()
        peer.send(b"250-partial\r\n250-more")

    server = scripted(script, strict=False)

    async def main() -> None:
        client = AsyncSMTPClient(*server.address, tls="none", timeout=2)
        await client.connect()
        with pytest.raises(RemoteProtocolError, match="in the middle of a reply"):
            await client.noop()
        assert not client.connected

    run(main())


def test_server_resets_the_connection_while_the_message_is_delivered() -> None:
    async def crash(conn: Conn, txn: Txn) -> str:
        conn.kill()  # RST, no reply
        return "250 never sent"

    async def main() -> None:
        async with Recorder(final_reply=crash) as rec:
            client = AsyncSMTPClient(*rec.address, tls="none", timeout=2)
            await client.connect()
            with pytest.raises(ConnectionClosed, match="closed"):
                await client.send(b"x\r\n", "s@example.org", ["r@example.net"])
            assert not client.connected
            await client.close()

    run(main())


def test_server_gone_before_the_send() -> None:
    async def main() -> None:
        async with Recorder() as rec:
            client = AsyncSMTPClient(*rec.address, tls="none", timeout=2, auto_reconnect=False)
            await client.connect()
            rec.conns[0].kill()
            assert await wait_until(lambda: not client.connected)
            with pytest.raises(ConnectionClosed):
                await client.send(b"x\r\n", "s@example.org", ["r@example.net"])
            assert await client.quit() is None  # QUIT to a server already gone is not an error

    run(main())


def test_timeout_when_the_server_stops_reading(scripted: Start) -> None:
    # The write side has a deadline too: a server that stops reading in the
    # middle of a large message makes the send time out, not hang.
    def script(peer: Peer) -> None:
        _greeted(peer, "PIPELINING")
        for _ in range(3):
            peer.recv_line()
        peer.reply("250 2.1.0 ok", "250 2.1.5 ok", "354 go ahead")
        time.sleep(2)  # and read nothing more

    server = scripted(script, strict=False)
    big = (b"y" * 998 + b"\r\n") * 40_000  # 40 MB: more than the socket buffers hold

    async def main() -> None:
        client = AsyncSMTPClient(*server.address, tls="none", timeout=0.3, auto_reconnect=False)
        await client.connect()
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await client.send(big, "s@example.org", ["r@example.net"])
        assert time.monotonic() - started < 1.5  # well before the server gives up
        assert not client.connected

    run(main())


def test_timeouts_are_the_builtin_timeout_error_and_asyncios_alike() -> None:
    # On 3.11+ the two are one class; on 3.10 the client's timeout is both.
    from mailwire.client.aio_transport import ClientTimeout

    assert issubclass(ClientTimeout, TimeoutError) and issubclass(ClientTimeout, asyncio.TimeoutError)
