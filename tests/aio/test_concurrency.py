"""Many tasks sharing one AsyncSMTPClient: transactions never interleave.

The recording server (``support.Recorder``) notes every command line in the
order it arrived and every message's content. Each task sends a message whose
sender, recipient and body carry the task's number, so an interleaving — one
task's MAIL arriving inside another's transaction — would show as a 503
"nested MAIL", a transaction with someone else's recipients, or a body
holding another task's commands.
"""

from __future__ import annotations

import asyncio
import re

import pytest

from mailwire import AsyncSMTPClient, SendResult

from .support import Recorder, run

TASKS = 50
pytestmark = pytest.mark.timeout(30)


def _content(i: int) -> bytes:
    # Several lines, a leading dot to be stuffed, and enough bytes that a
    # transaction's writes could be split if they were not kept together.
    return (f"Subject: task {i}\r\n\r\n".encode() + f"line of task {i}\r\n".encode() * 200
            + f".dot of task {i}\r\nend {i}\r\n".encode())


def _check_contiguous(lines: list[str], transactions_seen: int) -> None:
    """EHLO, then MAIL, RCPT(s), DATA per transaction, back to back."""
    body = [line for line in lines if line.split(" ")[0] not in ("EHLO", "QUIT", "NOOP")]
    assert len(body) == 3 * transactions_seen, body[:12]
    for k in range(0, len(body), 3):
        mail, rcpt, data = body[k:k + 3]
        sender = re.fullmatch(r"MAIL FROM:<s(\d+)@example\.org>.*", mail)
        assert sender is not None, mail
        assert rcpt.startswith(f"RCPT TO:<r{sender[1]}@example.net>"), (mail, rcpt)
        assert data == "DATA"


@pytest.mark.parametrize("pipelining", [True, False])
def test_gathered_sends_never_interleave(pipelining: bool) -> None:
    extensions = ("PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES") if pipelining else ("8BITMIME",)

    async def main() -> None:
        async with Recorder(extensions=extensions) as rec:
            async with AsyncSMTPClient(*rec.address, tls="none", timeout=5) as client:

                async def one(i: int) -> SendResult:
                    await asyncio.sleep(0.001 * (i % 7))  # stagger the starts a little
                    return await client.send(_content(i), f"s{i}@example.org", [f"r{i}@example.net"])

                results = await asyncio.gather(*(one(i) for i in range(TASKS)))
                assert client.messages_sent == TASKS
            assert all(r.ok and r.accepted == [f"r{i}@example.net"] for i, r in enumerate(results))
            assert rec.attempts == 1 and rec.refused_replies == 0
            [conn] = rec.conns
            _check_contiguous(conn.lines, TASKS)
            assert conn.quit
            by_sender = {t.mail_from: t for t in conn.transactions}
            assert len(by_sender) == TASKS
            for i in range(TASKS):
                txn = by_sender[f"s{i}@example.org"]
                assert txn.rcpt_to == [f"r{i}@example.net"]
                assert txn.content == _content(i)

    run(main())


def test_gathered_sends_on_an_unconnected_client_connect_once() -> None:
    async def main() -> None:
        async with Recorder() as rec:
            client = AsyncSMTPClient(*rec.address, tls="none", timeout=5)
            results = await asyncio.gather(*(
                client.send(_content(i), f"s{i}@example.org", [f"r{i}@example.net"]) for i in range(TASKS)
            ))
            await client.quit()
            assert all(r.ok for r in results)
            assert rec.attempts == 1 and rec.refused_replies == 0
            _check_contiguous(rec.conns[0].lines, TASKS)
            assert sorted(t.content for t in rec.transactions) == sorted(_content(i) for i in range(TASKS))

    run(main())


def test_mixed_dialogs_from_many_tasks() -> None:
    # send, send_many, NOOP and RSET from different tasks: each dialog alone.
    async def main() -> None:
        async with Recorder() as rec:
            async with AsyncSMTPClient(*rec.address, tls="none", timeout=5) as client:
                jobs: list[object] = []
                for i in range(20):
                    jobs.append(client.send(_content(i), f"s{i}@example.org", [f"r{i}@example.net"]))
                    jobs.append(client.noop())
                    jobs.append(client.send_many([
                        (_content(100 + i), f"s{100 + i}@example.org", [f"r{100 + i}@example.net"]),
                        (_content(200 + i), f"s{200 + i}@example.org", [f"r{200 + i}@example.net"]),
                    ]))
                    jobs.append(client.rset())
                outcomes = await asyncio.gather(*jobs)  # type: ignore[call-overload]
            assert rec.refused_replies == 0
            for k in range(0, len(outcomes), 4):
                sent, noop, many, rset = outcomes[k:k + 4]
                assert sent.ok and noop.code == 250 and rset.code == 250
                assert all(r.ok for r in many)
            assert len(rec.transactions) == 60
            assert all(t.content == _content(int(t.mail_from[1:].split("@")[0])) for t in rec.transactions)

    run(main())
