"""The client in an event loop someone else runs: asyncio's own and uvloop's.

Nothing in the client calls ``asyncio.run``; it works in whatever loop is
running — a test that is itself a coroutine, a loop made by hand, uvloop.
The uvloop smoke test runs STARTTLS, a pipelined batch, a small pool and the
one-shot send inside uvloop (skipped when uvloop is absent).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

import pytest

import mailwire
from mailwire import AsyncSMTPClient, SMTPPool

from helpers.aiosmtpd_server import Running
from helpers.smtp_sink import free_port

from .support import CountingBackend, Recorder, mailwire_server, run

pytestmark = pytest.mark.timeout(30)
CONTENT = b"Subject: loops\r\n\r\nhello\r\n"


async def _exercise(server_tls: ssl.SSLContext, client_tls: ssl.SSLContext) -> CountingBackend:
    """STARTTLS, send, send_many, a pool and the one-shot send, in the running loop."""
    backend = CountingBackend()
    async with mailwire_server(backend, tls_context=server_tls) as server:
        port = server.port
        async with AsyncSMTPClient("127.0.0.1", port, ssl_context=client_tls, timeout=5) as client:
            assert client.is_tls
            assert (await client.send(CONTENT, "a@example.org", ["b@example.net"])).ok
            outcomes = await client.send_many([(CONTENT, f"s{i}@example.org", ["b@example.net"]) for i in range(20)])
            assert all(not isinstance(o, Exception) and o.ok for o in outcomes)
        async with SMTPPool("127.0.0.1", port, size=3, ssl_context=client_tls, timeout=5) as pool:
            results = await asyncio.gather(*(
                pool.send(CONTENT, f"p{i}@example.org", ["b@example.net"]) for i in range(60)
            ))
            assert all(r.ok for r in results)
        one = await mailwire.send(CONTENT, "o@example.org", "b@example.net", host="127.0.0.1", port=port,
                                  ssl_context=client_tls, timeout=5)
        assert one.ok
    assert backend.sink.messages == 1 + 20 + 60 + 1
    return backend


def test_inside_a_running_loop(server_tls: ssl.SSLContext, client_tls: ssl.SSLContext) -> None:
    async def main() -> None:
        assert asyncio.get_running_loop().is_running()
        await _exercise(server_tls, client_tls)

    run(main())


def test_in_a_loop_made_by_hand(server_tls: ssl.SSLContext, client_tls: ssl.SSLContext) -> None:
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(_exercise(server_tls, client_tls), 20))
    finally:
        loop.close()


def test_client_made_outside_any_loop_is_used_inside_one() -> None:
    # Construction needs no running loop (a program may build clients at import time).
    port = free_port()
    client = AsyncSMTPClient("127.0.0.1", port, tls="none", timeout=5)
    backend = CountingBackend()

    async def main() -> None:
        async with mailwire_server(backend, port=port):
            async with client:
                await asyncio.gather(*(client.send(CONTENT, "a@example.org", ["b@example.net"]) for _ in range(5)))

    run(main())
    assert backend.sink.messages == 5


def test_uvloop_smoke(
    aiosmtpd_factory: Callable[..., Running], server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    # The client runs in uvloop; its peers are aiosmtpd (own thread, STARTTLS)
    # and the in-loop Recorder (asyncio streams, which uvloop runs too).
    uvloop = pytest.importorskip("uvloop", reason="uvloop is not installed (pip install uvloop)")
    aiosmtpd = aiosmtpd_factory(starttls=server_tls, require_starttls=True)

    async def main() -> None:
        assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")
        async with AsyncSMTPClient(*aiosmtpd.address, ssl_context=client_tls, timeout=5) as client:
            assert client.is_tls
            assert (await client.send(CONTENT, "a@example.org", ["b@example.net"])).ok
            outcomes = await client.send_many([(CONTENT, f"s{i}@example.org", ["b@example.net"]) for i in range(20)])
            assert all(not isinstance(o, Exception) and o.ok for o in outcomes)
        async with Recorder() as rec:
            async with SMTPPool(*rec.address, size=3, tls="none", timeout=5) as pool:
                results = await asyncio.gather(*(
                    pool.send(CONTENT, f"p{i}@example.org", ["b@example.net"]) for i in range(60)
                ))
            assert all(r.ok for r in results)
            assert len(rec.transactions) == 60 and rec.max_open <= 3
            assert all(conn.quit for conn in rec.conns)
            one = await mailwire.send(CONTENT, "o@example.org", "b@example.net", host=rec.host, port=rec.port,
                                      tls="none", timeout=5)
            assert one.ok

    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(main(), 20))
    finally:
        loop.close()
    assert len(aiosmtpd.handler.envelopes) == 21
