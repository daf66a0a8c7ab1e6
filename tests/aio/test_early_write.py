"""The asyncio client writes a pipelined message's content from data_received.

Across a slow link the hop from data_received to the waiting task sits
between the server's 354 and our content; the transport writes the content
(formatted ahead) the moment the replies allow it, and the task never writes
it a second time. When the replies do not allow it, nothing is written early.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mailwire import AsyncSMTPClient, RecipientsRefused, SendResult
from mailwire.client.aio_transport import AsyncTransport
from mailwire.errors import ConnectionClosed, LocalProtocolError
from mailwire.protocol.client import prepare_write
from mailwire.protocol.events import Data, EndOfData, Mail, MessageData, Rcpt
from mailwire.reply import Reply

from helpers.scripted import Peer, ScriptedServer

pytestmark = pytest.mark.timeout(30)


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def close(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


async def _in_transaction() -> tuple[AsyncTransport, FakeTransport]:
    transport, fake = AsyncTransport(), FakeTransport()
    transport.connection_made(fake)  # type: ignore[arg-type]
    transport.data_received(b"220 hi\r\n")
    await transport.read_replies(1, 1)
    await transport.write([Mail("a@x.org"), Rcpt("b@x.org"), Data()], 1)
    return transport, fake


@pytest.mark.parametrize("wire", [
    b"250 ok\r\n250 ok\r\n354 go\r\n",  # plain: judged on the bytes, before parsing
    b"250 ok\r\n250-ok\r\n250 forwarding\r\n354 go\r\n",  # a multi-line reply: parsed first
], ids=["one-line", "multi-line"])
def test_content_goes_out_from_data_received(wire: bytes) -> None:
    async def main() -> None:
        transport, fake = await _in_transaction()
        prepared = prepare_write([MessageData(b"hi\r\n"), EndOfData()])
        task = asyncio.create_task(transport.read_replies(3, 1, prepared))
        await asyncio.sleep(0)  # the task now waits for the replies
        transport.data_received(wire)
        assert fake.writes[-1] == b"hi\r\n.\r\n" and not task.done()  # before the task ran
        replies = await task
        assert [r.code for r in replies] == [250, 250, 354]
        assert fake.writes.count(b"hi\r\n.\r\n") == 1  # and never a second time

    asyncio.run(main())


@pytest.mark.parametrize("wire", [
    b"250 ok\r\n550 no such user\r\n354 go\r\n",  # nobody to deliver to: no content
    b"250 ok\r\n250 ok\r\n554 no\r\n",  # DATA refused
    b"250 ok\r\n421 closing\r\n",  # the server is leaving
])
def test_nothing_is_written_early_when_the_replies_forbid_it(wire: bytes) -> None:
    async def main() -> None:
        transport, fake = await _in_transaction()
        before = len(fake.writes)
        prepared = prepare_write([MessageData(b"hi\r\n"), EndOfData()])
        task = asyncio.create_task(transport.read_replies(3, 1, prepared))
        await asyncio.sleep(0)
        transport.data_received(wire)
        await task
        assert len(fake.writes) == before

    asyncio.run(main())


def test_replies_already_in_are_answered_by_the_task() -> None:
    async def main() -> None:
        transport, fake = await _in_transaction()
        transport.data_received(b"250 ok\r\n250 ok\r\n354 go\r\n")  # before anyone reads
        prepared = prepare_write([MessageData(b"hi\r\n"), EndOfData()])
        await transport.read_replies(3, 1, prepared)
        assert fake.writes.count(b"hi\r\n.\r\n") == 1

    asyncio.run(main())


def test_data_accepted_with_every_recipient_refused_sends_no_content(
    scripted: "type[ScriptedServer] | Any",
) -> None:
    """RFC 2920 3.1, as the blocking client does it: just the dot."""
    received: list[bytes] = []

    def script(peer: Peer) -> None:
        peer.reply("220 scripted ESMTP")
        assert peer.recv_line().startswith(b"EHLO ")
        peer.reply("250-scripted", "250 PIPELINING")
        peer.recv_until(b"DATA\r\n")
        peer.reply("250 sender ok", "550 no such user", "354 go ahead")
        received.append(peer.recv_until(b"DATA\r\n"))
        peer.reply("554 no valid recipients", "250 sender ok", "250 rcpt ok", "354 go ahead")
        received.append(peer.recv_until(b"\r\n.\r\n"))
        peer.reply("250 queued")
        assert peer.recv_line() == b"QUIT\r\n"
        peer.reply("221 bye")

    server = scripted(script)

    async def main() -> list[SendResult | Exception]:
        async with AsyncSMTPClient(*server.address, tls="none", timeout=5) as client:
            return await client.send_many([
                (b"Subject: secret\r\n\r\nfor nobody\r\n", "s@example.org", ["x@example.net"]),
                (b"Subject: ok\r\n\r\nfine\r\n", "s@example.org", ["y@example.net"]),
            ])

    first, second = asyncio.run(main())
    assert isinstance(first, RecipientsRefused)
    assert isinstance(second, SendResult) and second.ok
    assert received[0].startswith(b".\r\nMAIL FROM:<s@example.org>\r\n")
    assert b"for nobody" not in server.peers[0].received


@pytest.mark.parametrize("early", [True, False], ids=["from data_received", "from the task"])
def test_a_prepared_write_that_cannot_follow_the_354_closes_the_connection(early: bool) -> None:
    """The server now waits for content: if what was prepared cannot be sent,
    going on would pair its next reply with something else."""
    async def main() -> None:
        transport, fake = await _in_transaction()
        before = len(fake.writes)
        wrong = prepare_write([Mail("a@x.org")])  # starts from READY, not after a 354
        if not early:
            transport.data_received(b"250 ok\r\n250 ok\r\n354 go\r\n")
        task = asyncio.create_task(transport.read_replies(3, 1, wrong))
        await asyncio.sleep(0)
        if early:
            transport.data_received(b"250 ok\r\n250 ok\r\n354 go\r\n")
        with pytest.raises((LocalProtocolError, ConnectionClosed)):
            await task
        assert not transport.open and len(fake.writes) == before

    asyncio.run(main())
