"""Content given as an iterable of bytes pieces: sent as it comes, exactly as if given whole.

The encoding across piece boundaries (a CR split from its LF, a line that
starts with '.' cut at every offset, the final CRLF.CRLF) is checked on the
sans-I/O path with hypothesis: the dialog's writes go through a real
``ClientConnection`` and the wire must equal the one for the whole message.
Then against a scripted server: DATA and BDAT, blocking and asyncio, and an
iterable that fails part-way, which must deliver nothing.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailwire import AsyncSMTPClient, MailOptions, SMTPClient, SMTPPool
from mailwire.client import dialog
from mailwire.client.bdat import BdatFramer
from mailwire.client.steps import Program, Pull
from mailwire.client.transaction import Transaction
from mailwire.protocol.client import ClientConnection, PreparedWrite
from mailwire.protocol.data import DotStuffer, stuff
from mailwire.protocol.events import NEED_DATA, Bdat, Mail, MessageData, Rcpt
from mailwire.reply import Reply

from helpers.minismtp import MiniSMTP
from helpers.pieces import pieces
from helpers.scripted import ScriptedServer

Start = Callable[..., ScriptedServer]

# Everything a piece boundary could break: dots at line starts, CR and LF
# apart, the terminator inside the content, a last line with no newline.
messages = st.lists(
    st.one_of(
        st.sampled_from([b"\r", b"\n", b".", b"\r\n", b"..", b"\r\n.\r\n", b"\n.\n", b".\r\n", b"From "]),
        st.binary(max_size=6),
    ),
    max_size=24,
).map(b"".join)
cuts = st.lists(st.integers(0, 120), max_size=12)


def in_transaction() -> ClientConnection:
    conn = ClientConnection()
    conn.receive_data(b"220 hi\r\n")
    assert isinstance(conn.next_event(), Reply)
    conn.send(Mail("a@example.com"))
    conn.send(Rcpt("b@example.com"))
    conn.receive_data(b"250 ok\r\n250 ok\r\n")
    while conn.next_event() is not NEED_DATA:
        pass
    return conn


def wire_of(program: Program[Reply], conn: ClientConnection, replies: list[bytes]) -> bytes:
    """Pump ``program`` as a driver would, with a real core and canned replies."""
    wire = bytearray()
    request = next(program)
    while True:
        value: tuple[Reply, ...] | bytes | None = None
        if isinstance(request, dialog.Write):
            assert not isinstance(request.events, PreparedWrite)
            for event in request.events:
                wire += conn.send(event)
        elif isinstance(request, dialog.Read):
            conn.receive_data(replies.pop(0))
            got = []
            while (event := conn.next_event()) is not NEED_DATA:
                assert isinstance(event, Reply)
                got.append(event)
            value = tuple(got)
        else:
            assert isinstance(request, Pull)
            value = request.take()
        try:
            request = program.send(value)
        except StopIteration:
            return bytes(wire)


@settings(max_examples=300, deadline=None)
@given(messages, cuts)
def test_data_from_pieces_is_the_wire_of_the_whole(message: bytes, at: list[int]) -> None:
    whole = wire_of(dialog.data(message), in_transaction(), [b"354 go\r\n", b"250 ok\r\n"])
    streamed = wire_of(dialog.data(iter(pieces(message, at))), in_transaction(), [b"354 go\r\n", b"250 ok\r\n"])
    assert streamed == whole == b"DATA\r\n" + stuff(message)


def test_a_dot_line_cut_at_every_offset() -> None:
    message = b"a\r\n.\r\n..b\r\n.\r\n"
    for cut in range(len(message) + 1):
        for second in range(cut, len(message) + 1):
            parts = [message[:cut], message[cut:second], message[second:]]
            wire = wire_of(dialog.data(iter(parts)), in_transaction(), [b"354 go\r\n", b"250 ok\r\n"])
            assert wire == b"DATA\r\n" + stuff(message)


def frames(txn: Transaction) -> list[list[object]]:
    framer = BdatFramer(txn)
    out: list[list[object]] = []
    while True:
        program = framer.next()
        try:
            request = next(program)
            while True:
                assert isinstance(request, Pull)
                request = program.send(request.take())
        except StopIteration as stop:
            if stop.value is None:
                return out
            out.append(stop.value)


@settings(max_examples=300, deadline=None)
@given(messages, cuts, st.booleans())
def test_bdat_framing_of_pieces(message: bytes, at: list[int], binary: bool) -> None:
    options = MailOptions(body="BINARYMIME") if binary else MailOptions()
    framed = frames(Transaction("a@x", ["b@x"], iter(pieces(message, at)), options))
    bdats = [f[0] for f in framed]
    assert all(isinstance(b, Bdat) for b in bdats)
    assert [b.last for b in bdats] == [False] * (len(bdats) - 1) + [True]  # type: ignore[union-attr]
    content = b"".join(f[1].data for f in framed if len(f) > 1)  # type: ignore[union-attr]
    assert [b.size for b in bdats] == [len(f[1].data) if len(f) > 1 else 0 for f in framed]  # type: ignore[union-attr]
    expected = message if binary else DotStuffer(stuff=False).feed(message)
    assert content == expected
    # The same as the message given whole (small messages: one BDAT LAST).
    whole = frames(Transaction("a@x", ["b@x"], message, options))
    assert b"".join(f[1].data for f in whole if len(f) > 1) == expected  # type: ignore[union-attr]


MESSAGE = b"Subject: streamed\r\n\r\n.dot\r\n..two\r\n.\r\nFrom here\r\nlast line, no newline"


def split(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


@pytest.mark.parametrize("extensions", [
    ("PIPELINING", "8BITMIME"), ("8BITMIME",), ("PIPELINING", "CHUNKING"), ("CHUNKING",),
], ids=["pipelined-data", "lockstep-data", "pipelined-bdat", "lockstep-bdat"])
def test_send_an_iterable_arrives_as_the_whole(scripted: Start, extensions: tuple[str, ...]) -> None:
    smtp = MiniSMTP(extensions=extensions)
    server = scripted(smtp)
    with SMTPClient(*server.address, tls="none", timeout=5) as client:
        result = client.send(split(MESSAGE, 3), "s@example.org", ["r@example.net"])
        client.send(iter([]), "s@example.org", ["r@example.net"])  # an empty message
    first, empty = smtp.transactions
    expected = MESSAGE + b"\r\n" if "CHUNKING" not in extensions else MESSAGE
    assert first.content == expected and first.delivered
    assert empty.content == b"" and empty.delivered
    assert result.size == len(MESSAGE)


def test_the_asyncio_client_sends_an_async_iterable(scripted: Start) -> None:
    smtp = MiniSMTP()
    server = scripted(smtp)

    async def source() -> AsyncIterator[bytes]:
        for piece in split(MESSAGE, 5):
            await asyncio.sleep(0)
            yield piece

    async def main() -> None:
        async with AsyncSMTPClient(*server.address, tls="none", timeout=5) as client:
            await client.send(source(), "s@example.org", ["r@example.net"])
            await client.mail("s@example.org")
            await client.rcpt("r@example.net")
            reply = await client.data(source())
            assert reply.code == 250

    asyncio.run(main())
    assert [t.content for t in smtp.transactions] == [MESSAGE + b"\r\n"] * 2


class Gone(Exception):
    pass


def failing() -> Iterator[bytes]:
    yield b"Subject: half\r\n\r\n"
    yield b"some of it\r\n"
    raise Gone("the source failed")


@pytest.mark.parametrize("extensions", [("PIPELINING",), ("PIPELINING", "CHUNKING")], ids=["data", "bdat"])
def test_a_failing_iterable_delivers_nothing_and_closes(scripted: Start, extensions: tuple[str, ...]) -> None:
    smtp = MiniSMTP(extensions=extensions)
    server = scripted(smtp, strict=False)
    with SMTPClient(*server.address, tls="none", timeout=5) as client:
        with pytest.raises(Gone):
            client.send(failing(), "s@example.org", ["r@example.net"])
        assert not client.connected
    server.close()
    assert not any(t.delivered for t in smtp.transactions)
    assert b"\r\n.\r\n" not in server.received and b" LAST" not in server.received
    if "CHUNKING" not in extensions:
        assert [type(e) for e in server.errors] == [EOFError]  # cut off in the middle of DATA


def test_the_step_api_with_a_failing_async_source_never_ends_the_data(scripted: Start) -> None:
    smtp = MiniSMTP()
    server = scripted(smtp, strict=False)

    async def source() -> AsyncIterator[bytes]:
        yield b"Subject: half\r\n\r\n"
        raise Gone("the sender left")

    async def main() -> None:
        client = AsyncSMTPClient(*server.address, tls="none", timeout=5, auto_reconnect=False)
        await client.connect()
        await client.mail("s@example.org")
        await client.rcpt("r@example.net")
        with pytest.raises(Gone):
            await client.data(source())
        assert not client.connected

    asyncio.run(main())
    server.close()
    assert not any(t.delivered for t in smtp.transactions)
    assert re.search(rb"\r\n\.\r\n", server.received) is None
    assert [type(e) for e in server.errors] == [EOFError]  # cut off in the middle of DATA


def test_the_blocking_client_refuses_an_async_iterable_before_sending(scripted: Start) -> None:
    smtp = MiniSMTP()
    server = scripted(smtp)

    async def source() -> AsyncIterator[bytes]:
        yield b"x"

    with SMTPClient(*server.address, tls="none", timeout=5) as client:
        agen = source()
        with pytest.raises(TypeError):
            client.send(agen, "s@example.org", ["r@example.net"])
        with pytest.raises(TypeError):
            client.data(agen)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            client.send("text", "s@example.org", ["r@example.net"])  # type: ignore[arg-type]
        assert client.connected and client.noop().code == 250
    asyncio.run(agen.aclose())
    assert smtp.transactions == []


def test_a_pool_hands_a_failing_source_s_error_to_its_sender_and_goes_on(scripted: Start) -> None:
    smtp = MiniSMTP()
    server = scripted(smtp, connections=2, strict=False)

    async def source() -> AsyncIterator[bytes]:
        yield b"Subject: half\r\n\r\n"
        raise Gone("the source failed")

    async def main() -> None:
        async with SMTPPool(*server.address, size=1, tls="none", timeout=5) as pool:
            with pytest.raises(Gone):
                await pool.send(source(), "s@example.org", ["r@example.net"])
            result = await pool.send(MESSAGE, "s@example.org", ["r@example.net"])
            assert result.ok

    asyncio.run(main())
    assert [t.content for t in smtp.transactions if t.delivered] == [MESSAGE + b"\r\n"]
