"""A ``ConnectionClosed`` from the asyncio client says who closed the connection.

The client closes the connection itself after a timeout, a cancellation or
``close()`` with a send in flight (a reply arriving later must never be read
as the next command's). The error a caller then meets says so, with the
reason, instead of "the server closed the connection".
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from mailwire import AsyncSMTPClient, ConnectionClosed

from helpers.scripted import Peer, ScriptedServer

from .support import Conn, Recorder, Txn, run, wait_until

Start = Callable[..., ScriptedServer]
pytestmark = pytest.mark.timeout(30)


def test_close_with_a_send_in_flight() -> None:
    async def slow(conn: Conn, txn: Txn) -> str:
        await asyncio.sleep(3)
        return "250 2.0.0 late"

    async def main() -> None:
        async with Recorder(final_reply=slow) as rec:
            client = AsyncSMTPClient(*rec.address, tls="none", timeout=10, auto_reconnect=False)
            await client.connect()
            task = asyncio.create_task(client.send(b"x\r\n", "s@example.org", ["r@example.net"]))
            assert await wait_until(lambda: len(rec.transactions) == 1)  # the reply is pending
            await client.close()
            with pytest.raises(ConnectionClosed) as caught:
                await task
            assert str(caught.value) == "the connection was closed by us because close() was called"
            with pytest.raises(ConnectionClosed, match="^the connection was closed by us because close"):
                await client.noop()

    run(main())


def test_after_our_timeout_the_error_says_we_closed(scripted: Start) -> None:
    def script(peer: Peer) -> None:
        peer.reply("220 mute ESMTP")
        assert peer.recv_line().startswith(b"EHLO ")
        peer.reply("250 mute")
        peer.wait_closed()  # the NOOP arrives; no reply ever

    server = scripted(script, strict=False)

    async def main() -> None:
        client = AsyncSMTPClient(*server.address, tls="none", timeout=0.3, auto_reconnect=False)
        await client.connect()
        with pytest.raises(TimeoutError):
            await client.noop()
        with pytest.raises(ConnectionClosed) as caught:
            await client.noop()
        assert str(caught.value) == "the connection was closed by us after a timeout"

    run(main())


def test_after_a_cancellation_the_error_says_we_closed(scripted: Start) -> None:
    def script(peer: Peer) -> None:
        peer.reply("220 mute ESMTP")
        assert peer.recv_line().startswith(b"EHLO ")
        peer.reply("250 mute")
        peer.wait_closed()

    server = scripted(script, strict=False)

    async def main() -> None:
        client = AsyncSMTPClient(*server.address, tls="none", timeout=10, auto_reconnect=False)
        await client.connect()
        task = asyncio.create_task(client.noop())
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(ConnectionClosed, match="^the connection was closed by us after the operation was cancelled$"):
            await client.noop()

    run(main())


def test_when_the_server_hangs_up_the_error_says_so() -> None:
    async def main() -> None:
        async with Recorder() as rec:
            client = AsyncSMTPClient(*rec.address, tls="none", timeout=5, auto_reconnect=False)
            await client.connect()
            rec.conns[0].kill()
            assert await wait_until(lambda: not client.connected)
            for _ in range(2):  # the send, and any use after it
                with pytest.raises(ConnectionClosed, match="^the server closed the connection$"):
                    await client.send(b"x\r\n", "s@example.org", ["r@example.net"])
            await client.close()  # closing our side later changes nothing of it
            with pytest.raises(ConnectionClosed, match="^the server closed the connection$"):
                await client.noop()

    run(main())
