"""SMTPPool shares a burst out evenly and opens no connection beyond ``size``.

A worker that becomes free early used to take the whole rest of the queue:
with 500 messages over 4 connections (batches of at most 100), one
connection carried 200. The share is now of all the work not yet answered
(queued, or unanswered in a batch being sent), divided among all the
workers, busy ones included, so the tail goes out over every connection as
they free up. mailwire's server with a ``CountingBackend`` counts the
connections (one session each) and each one's messages.

How even is honest: the pool balances dynamically (a slower connection
should carry less), so the bound is not exact equality. Each take is at most
ceil(unanswered / size), so connections of one speed each carry total/size
give or take what one connection answers while another takes its share
(measured: 122 to 128 of 500 over 4); the bound asked here, 100 to 150
(total/size - 20%, + 20%), leaves room for a loaded machine making one
connection a tail batch slower or faster, and still fails the old 200.
"""

from __future__ import annotations

import asyncio

import pytest

from mailwire import SMTPPool

from .support import CountingBackend, mailwire_server, run

pytestmark = pytest.mark.timeout(60)
CONTENT = b"Subject: pool\r\n\r\nshared out\r\n"


async def _burst(pool: SMTPPool, count: int) -> None:
    results = await asyncio.gather(*(pool.send(CONTENT, f"s{i}@example.org", ["r@example.net"]) for i in range(count)))
    assert all(r.ok for r in results)


@pytest.mark.parametrize("connect_first", [False, True], ids=["lazy", "connect-first"])
def test_500_messages_over_4_connections_are_shared_out_evenly(connect_first: bool) -> None:
    backend = CountingBackend()

    async def main() -> None:
        async with mailwire_server(backend) as server:
            async with SMTPPool("127.0.0.1", server.port, size=4, batch=100, tls="none", timeout=10) as pool:
                if connect_first:
                    await pool.connect()
                    assert len(backend.sessions) == 1
                await _burst(pool, 500)

    run(main())
    counts = sorted(session.messages for session in backend.sessions)
    assert len(counts) == 4, counts  # connect()'s connection is one of the four
    assert sum(counts) == 500
    assert all(100 <= n <= 150 for n in counts), counts


def test_connect_opens_the_connection_the_first_send_uses() -> None:
    backend = CountingBackend()

    async def main() -> None:
        async with mailwire_server(backend) as server:
            async with SMTPPool("127.0.0.1", server.port, size=3, tls="none", timeout=10) as pool:
                await pool.connect()
                await pool.send(CONTENT, "s@example.org", ["r@example.net"])
            assert len(backend.sessions) == 1 and backend.sessions[0].messages == 1

    run(main())


def test_a_connection_from_connect_that_is_never_used_is_closed_with_the_pool() -> None:
    backend = CountingBackend()

    async def main() -> None:
        async with mailwire_server(backend) as server:
            async with SMTPPool("127.0.0.1", server.port, size=3, tls="none", timeout=10) as pool:
                await pool.connect()
            assert len(backend.sessions) == 1
            for _ in range(200):
                if backend.open == 0:
                    break
                await asyncio.sleep(0.01)
            assert backend.open == 0 and backend.sessions[0].closed

    run(main())


def test_connect_raises_what_the_server_said() -> None:
    async def main() -> None:
        server = await asyncio.start_server(_refuse, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with SMTPPool("127.0.0.1", port, size=2, tls="none", timeout=5) as pool:
                with pytest.raises(Exception) as caught:
                    await pool.connect()
                assert getattr(caught.value, "code", None) == 421
                assert "421 4.3.2 Too busy" in str(caught.value)
        finally:
            server.close()
            await server.wait_closed()

    run(main())


async def _refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"421 4.3.2 Too busy\r\n")
    await writer.drain()
    writer.close()
