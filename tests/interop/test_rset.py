"""RSET only where a transaction may be left open, counted by the servers themselves.

Postfix counted ``rset=19`` for 20 messages of one ``send_many``: RFC 5321
needs no RSET after a completed transaction (4.1.1.4: the end of data clears
it, accepted or refused), only after one left open (a refused DATA). After a
refused BDAT (RFC 3030 2) the next MAIL, pipelined behind it, tells whether
the server ended the transaction, as mailwire's does; only the last of a
batch, which nothing follows, is reset. Two real servers count the commands
they read:

* Postfix's smtp-sink, whose ``-v`` log has every command line (PIPELINING,
  no CHUNKING: the DATA dialog; ``-f DATA`` refuses DATA and turns
  PIPELINING off);
* mailwire's own server (PIPELINING and CHUNKING: the BDAT dialog), behind a
  tap that reads the client's command lines on their way to it, skipping
  each BDAT chunk by its octet count.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from mailwire import (
    AsyncLMTPClient, AsyncSMTPClient, RecipientsRefused, SendResult, SMTPClient, SMTPError, SMTPPool,
)
from mailwire.protocol.params import RcptOptions
from mailwire.server import BaseSession, SessionInfo

from helpers.smtp_sink import Sink

from aio.support import CountingBackend, mailwire_server, run

SinkFactory = Callable[..., Sink]
COUNT = 20


def _items(count: int = COUNT, bad: frozenset[int] = frozenset()) -> list[tuple[bytes, str, list[str]]]:
    return [
        (f"Subject: {i}\r\n\r\nmessage {i}\r\n".encode(), "s@example.org",
         [f"{'bad' if i in bad else 'ok'}{i}@example.net"])
        for i in range(count)
    ]


def _verbs(lines: list[str]) -> Counter[str]:
    return Counter(line.split(" ", 1)[0].upper() for line in lines)


# -- smtp-sink: the DATA dialog ----------------------------------------------------------------


def test_send_many_of_20_sends_no_rset_to_smtp_sink(sink_factory: SinkFactory) -> None:
    sink = sink_factory(["-v"])
    with SMTPClient(*sink.address, tls="none", timeout=10) as client:
        assert client.capabilities.pipelining
        outcomes = client.send_many(_items())
    assert all(isinstance(o, SendResult) and o.ok for o in outcomes)
    verbs = _verbs(sink.commands())
    assert (verbs["MAIL"], verbs["DATA"], verbs["."]) == (COUNT, COUNT, COUNT)
    assert verbs["RSET"] == 0


def test_refused_data_is_still_reset_by_smtp_sink(sink_factory: SinkFactory) -> None:
    sink = sink_factory(["-v", "-f", "DATA"])  # DATA refused: each transaction is left open
    with SMTPClient(*sink.address, tls="none", timeout=10) as client:
        outcomes = client.send_many(_items(5))
        assert all(isinstance(o, SMTPError) and o.code == 500 for o in outcomes)
    assert sink.commands()[-5:] == ["MAIL FROM:<s@example.org>", "RCPT TO:<ok4@example.net>", "DATA", "RSET", "QUIT"]
    assert _verbs(sink.commands())["RSET"] == 5


# -- mailwire's server through a tap: the BDAT dialog -------------------------------------------


class _Tap:
    """A relay to ``upstream`` that records every command line the client sends."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.lines: list[str] = []
        self.connections = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        back = asyncio.ensure_future(_pump(up_reader, writer))
        try:
            while line := await reader.readline():
                up_writer.write(line)
                text = line.decode("ascii", "replace").rstrip("\r\n")
                self.lines.append(text)
                words = text.upper().split()
                assert words[:1] != ["DATA"], "this tap reads no DATA content"
                if words[:1] == ["BDAT"]:
                    up_writer.write(await reader.readexactly(int(words[1])))
                await up_writer.drain()
        finally:
            up_writer.close()
            await back
            writer.close()

    def verbs(self) -> Counter[str]:
        return _verbs(self.lines)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()


class _Session(BaseSession):
    async def rcpt(self, address: str, options: RcptOptions) -> None:
        if address.startswith("bad"):
            raise SMTPError(550, "5.1.1", "No such user")


class _Backend:
    async def new_session(self, info: SessionInfo) -> _Session:
        return _Session(info)


@asynccontextmanager
async def _tapped(backend: object = None, **config: object) -> AsyncIterator[tuple[_Tap, tuple[str, int]]]:
    async with mailwire_server(backend or _Backend(), **config) as server:
        tap = _Tap(("127.0.0.1", server.port))
        relay = await asyncio.start_server(tap.serve, "127.0.0.1", 0)
        try:
            yield tap, relay.sockets[0].getsockname()[:2]
        finally:
            relay.close()
            await relay.wait_closed()


def test_send_many_of_20_over_bdat_sends_no_rset() -> None:
    async def main() -> None:
        async with _tapped() as (tap, address):
            async with AsyncSMTPClient(*address, tls="none", timeout=10) as client:
                assert client.capabilities.chunking and client.capabilities.pipelining
                before = client.round_trips
                outcomes = await client.send_many(_items())
                assert client.round_trips - before <= 2  # the 20 went back to back
            assert all(isinstance(o, SendResult) and o.ok for o in outcomes)
            await asyncio.sleep(0.1)  # the QUIT through the tap
            verbs = tap.verbs()
            assert (verbs["MAIL"], verbs["BDAT"]) == (COUNT, COUNT)
            assert verbs["RSET"] == 0

    run(main())


def test_aborted_bdat_transactions_are_reset_and_the_rest_delivered() -> None:
    async def main() -> None:
        async with _tapped() as (tap, address):
            async with AsyncSMTPClient(*address, tls="none", timeout=10) as client:
                outcomes = await client.send_many(_items(bad=frozenset({3, 11, 19})))
                assert (await client.send(b"after\r\n", "s@example.org", ["ok@example.net"])).ok
            assert [i for i, o in enumerate(outcomes) if isinstance(o, RecipientsRefused)] == [3, 11, 19]
            assert all(isinstance(o, SendResult) and o.ok for i, o in enumerate(outcomes) if i not in (3, 11, 19))
            # The server ended each refused transaction: the next MAIL was its own.
            assert all(o.mail_reply.code == 250 for o in outcomes if isinstance(o, SendResult))
            await asyncio.sleep(0.1)
            verbs = tap.verbs()
            assert verbs["RSET"] == 1  # after the last refused one only: nothing followed it
            assert (verbs["MAIL"], verbs["BDAT"]) == (COUNT + 1, COUNT + 1)
            after = [tap.lines[i + 1].split(" ")[0] for i, line in enumerate(tap.lines) if line.startswith("RSET")]
            assert after == ["MAIL"]  # straight before the next transaction

    run(main())


def test_a_pool_sends_no_rset_over_bdat() -> None:
    async def main() -> None:
        async with _tapped() as (tap, address):
            async with SMTPPool(*address, size=2, tls="none", timeout=10) as pool:
                results = await asyncio.gather(*(pool.send(*item) for item in _items(100)))
            assert all(r.ok for r in results)
            await asyncio.sleep(0.1)
            verbs = tap.verbs()
            assert verbs["MAIL"] == 100 and verbs["RSET"] == 0

    run(main())


def test_a_pool_over_bdat_resets_only_after_the_last_refused_one_of_a_batch() -> None:
    async def main() -> None:
        async with _tapped() as (tap, address):
            async with SMTPPool(*address, size=1, batch=COUNT, tls="none", timeout=10) as pool:
                sent = await asyncio.gather(
                    *(pool.send(*item) for item in _items(bad=frozenset({3, 11}))), return_exceptions=True,
                )
            assert [i for i, o in enumerate(sent) if isinstance(o, RecipientsRefused)] == [3, 11]
            assert all(isinstance(o, SendResult) and o.ok for i, o in enumerate(sent) if i not in (3, 11))
            await asyncio.sleep(0.1)
            verbs = tap.verbs()
            assert (verbs["MAIL"], verbs["RSET"]) == (COUNT, 0)

    run(main())


def _lmtp_refuse(address: str) -> SMTPError | None:
    return SMTPError(550, "5.1.1", "No such user") if address.startswith("bad") else None


def _lmtp_outcome(address: str) -> SMTPError | None:
    return SMTPError(452, "4.2.2", "Mailbox full") if address.startswith("full") else None


def test_lmtp_over_bdat_sends_no_rset_and_reports_every_recipient() -> None:
    # One reply per accepted recipient after each LAST, a message whose every
    # recipient was refused in the middle: mailwire's LMTP server ends that
    # transaction with its refusal, so the window goes on without RSET.
    backend = CountingBackend(lmtp=True, lmtp_outcome=_lmtp_outcome, refuse=_lmtp_refuse)
    items = [
        (f"Subject: {i}\r\n\r\nmessage {i}\r\n".encode(), "s@example.org",
         ["bad@example.net"] if i == 7 else [f"ok{i}@example.net", f"full{i}@example.net", "bad@example.net"])
        for i in range(COUNT)
    ]

    async def main() -> None:
        async with _tapped(backend, lmtp=True) as (tap, address):
            async with AsyncLMTPClient(*address, tls="none", timeout=10) as client:
                assert client.capabilities.chunking and client.capabilities.pipelining
                before = client.round_trips
                outcomes = await client.send_many(items)
                assert client.round_trips - before <= 2
            await asyncio.sleep(0.1)
            assert isinstance(outcomes[7], RecipientsRefused)
            for i, outcome in enumerate(outcomes):
                if i == 7:
                    continue
                assert isinstance(outcome, SendResult) and outcome.mail_reply.code == 250
                assert outcome.accepted == [f"ok{i}@example.net"]
                assert {r: reply.code for r, reply in outcome.refused.items()} == {
                    f"full{i}@example.net": 452, "bad@example.net": 550}
            verbs = tap.verbs()
            assert (verbs["MAIL"], verbs["BDAT"], verbs["RSET"]) == (COUNT, COUNT, 0)
            assert [e.content for e in backend.envelopes] == [item[0] for i, item in enumerate(items) if i != 7]

    run(main())
