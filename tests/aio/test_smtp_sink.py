"""AsyncSMTPClient against Postfix's smtp-sink: pipelining counted in round trips.

``client.round_trips`` counts the times the client waited for the server. A
pipelined ``send`` waits twice per message (MAIL, RCPTs and DATA in one
write; the content and its end in another); ``send_many`` writes each
message's end together with the next envelope, so it waits once per message
(plus one for the first 354). smtp-sink's ``-D`` dump shows what arrived.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from mailwire import AsyncLMTPClient, AsyncSMTPClient, SendResult

from helpers.smtp_sink import Sink

from .support import run

SinkFactory = Callable[..., Sink]
MESSAGES = 100
CONTENT = b"From: a@example.org\r\nTo: b@example.net\r\nSubject: sink\r\n\r\nhello\r\n.dot line\r\n"
pytestmark = pytest.mark.timeout(30)


def _all_250(result: SendResult | Exception) -> bool:
    if not isinstance(result, SendResult):
        return False
    replies = [result.mail_reply, *result.rcpt_replies.values(), *result.recipients.values()]
    return result.data_reply is not None and all(r.code == 250 for r in [*replies, result.data_reply])


def test_capabilities(sink: Sink) -> None:
    async def main() -> None:
        async with AsyncSMTPClient(*sink.address, tls="none", timeout=5) as client:
            caps = client.capabilities
            assert client.greeting is not None and client.greeting.code == 220
            assert client.round_trips == 2  # greeting, EHLO
        assert caps.pipelining and caps.eightbitmime and caps.dsn and not caps.chunking

    run(main())


def test_send_costs_two_round_trips_per_message(sink: Sink) -> None:
    async def main() -> None:
        async with AsyncSMTPClient(*sink.address, tls="none", timeout=5) as client:
            start = client.round_trips
            results = [
                await client.send(CONTENT, "a@example.org", ["b@example.net", "c@example.net", "d@example.net"])
                for _ in range(MESSAGES)
            ]
            assert (client.round_trips - start) / MESSAGES == 2
            assert client.messages_sent == MESSAGES
        assert all(_all_250(r) for r in results)

    run(main())


def test_send_many_costs_about_one_round_trip_per_message(sink: Sink) -> None:
    items = [(CONTENT, "a@example.org", ["b@example.net", "c@example.net"]) for _ in range(MESSAGES)]

    async def main() -> None:
        async with AsyncSMTPClient(*sink.address, tls="none", timeout=5) as client:
            start = client.round_trips
            outcomes = await client.send_many(items)
            assert client.round_trips - start == MESSAGES + 1
        assert len(outcomes) == MESSAGES and all(_all_250(o) for o in outcomes)

    run(main())


def test_gathered_sends_arrive_whole(sink_factory: SinkFactory) -> None:
    sink = sink_factory(dump=True)

    async def main() -> None:
        async with AsyncSMTPClient(*sink.address, tls="none", timeout=5) as client:
            results = await asyncio.gather(*(
                client.send(CONTENT, f"s{i}@example.org", [f"r{i}@example.net"]) for i in range(20)
            ))
        assert all(_all_250(r) for r in results)

    run(main())
    deadline = time.monotonic() + 5
    while sink.dumped().count("X-Mail-Args:") < 20 and time.monotonic() < deadline:
        time.sleep(0.02)
    dump = sink.dumped()
    assert dump.count("X-Mail-Args:") == 20
    for i in range(20):
        assert f"s{i}@example.org" in dump and f"r{i}@example.net" in dump


def test_lmtp_against_smtp_sink(sink_factory: SinkFactory) -> None:
    sink = sink_factory(("-L",))

    async def main() -> None:
        async with AsyncLMTPClient(*sink.address, timeout=5) as client:
            result = await client.send(CONTENT, "a@example.org", ["b@example.net", "c@example.net"])
        assert result.ok and result.data_reply is None
        assert sorted(result.recipients) == ["b@example.net", "c@example.net"]

    run(main())
