"""SMTPPool: many sends over a few connections, replaced when worn out or broken.

mailwire's server with a ``CountingBackend`` counts connections (one session
each: how many opened, how many open at once) and hands every message to a
``Sink`` that counts it. The recording server shows what a connection said
last (QUIT) and how often the pool knocked on a server that answers 421.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from mailwire import (
    AsyncSMTPClient, ConnectionClosed, DataRefused, LMTPPool, LocalProtocolError, SendResult, SMTPError, SMTPPool,
)
from mailwire.server import Envelope

from .support import Conn, CountingBackend, Recorder, Txn, mailwire_server, run, wait_until

pytestmark = pytest.mark.timeout(40)
CONTENT = b"Subject: pool\r\n\r\nhello from the pool\r\n"


def _pool(port: int, cls: type[SMTPPool] = SMTPPool, **options: object) -> SMTPPool:
    options.setdefault("tls", "none")
    options.setdefault("timeout", 5)
    return cls("127.0.0.1", port, **options)  # type: ignore[arg-type]


async def _burst(pool: SMTPPool, count: int) -> None:
    """``count`` messages handed to the pool at once, every one delivered."""
    results = await asyncio.gather(*(
        pool.send(CONTENT, f"s{i}@example.org", ["r@example.net"]) for i in range(count)
    ))
    assert all(r.ok for r in results)


def test_2000_sends_over_10_connections() -> None:
    backend = CountingBackend()
    count, size = 2000, 10

    async def main() -> None:
        async with mailwire_server(backend) as server:
            async with _pool(server.port, size=size) as pool:
                results = await asyncio.gather(*(
                    pool.send(CONTENT + f"{i}\r\n".encode(), f"s{i}@example.org", [f"r{i}@example.net"])
                    for i in range(count)
                ))
            assert all(isinstance(r, SendResult) and r.ok for r in results)
            assert await wait_until(lambda: backend.open == 0)

    run(main())
    assert backend.sink.messages == count
    assert backend.max_open <= size
    assert 1 <= len(backend.sessions) <= size  # no connection was replaced without cause
    assert sorted(e.mail_from for e in backend.envelopes) == sorted(f"s{i}@example.org" for i in range(count))
    assert all(e.content == CONTENT + e.mail_from[1:].split("@")[0].encode() + b"\r\n" for e in backend.envelopes)


def test_never_more_than_size_connections_under_slow_delivery() -> None:
    # A slow backend keeps every connection busy, so the pool would open more if it could.
    async def slow(envelope: object) -> None:
        await asyncio.sleep(0.01)

    backend = CountingBackend(on_data=slow)

    async def main() -> None:
        async with mailwire_server(backend) as server:
            async with _pool(server.port, size=4, batch=5) as pool:
                await _burst(pool, 200)

    run(main())
    assert backend.sink.messages == 200
    assert backend.max_open == 4  # all four were used, never a fifth
    assert len(backend.sessions) == 4


def test_a_burst_is_shared_out_over_every_connection() -> None:
    # Across a slow link each connection pays a round trip per message, so a
    # burst must go out over all of them, not in whole batches over the first.
    backend = CountingBackend()

    async def main() -> None:
        async with mailwire_server(backend) as server:
            async with _pool(server.port, size=4, batch=100) as pool:
                await _burst(pool, 40)

    run(main())
    assert sorted(session.messages for session in backend.sessions) == [10, 10, 10, 10]


def test_max_messages_replaces_connections() -> None:
    backend = CountingBackend()

    async def main() -> None:
        async with mailwire_server(backend) as server:
            async with _pool(server.port, size=2, max_messages=10) as pool:
                for i in range(3):  # a connection that has already sent some ...
                    await pool.send(CONTENT, f"early{i}@example.org", ["r@example.net"])
                await _burst(pool, 97)  # ... then a burst bigger than max_messages

    run(main())
    assert backend.sink.messages == 100
    per_connection = [s.messages for s in backend.sessions]
    assert max(per_connection) <= 10, per_connection
    assert sum(per_connection) == 100 and len(backend.sessions) >= 10


def test_max_age_replaces_connections() -> None:
    backend = CountingBackend()

    async def main() -> None:
        async with mailwire_server(backend) as server:
            async with _pool(server.port, size=1, max_age=0.2) as pool:
                await pool.send(CONTENT, "a@example.org", ["r@example.net"])
                await pool.send(CONTENT, "b@example.org", ["r@example.net"])
                assert len(backend.sessions) == 1  # young: reused
                await asyncio.sleep(0.3)
                await pool.send(CONTENT, "c@example.org", ["r@example.net"])
                assert len(backend.sessions) == 2  # old: replaced
                assert await wait_until(lambda: backend.sessions[0].closed)

    run(main())
    assert [s.messages for s in backend.sessions] == [2, 1]


def test_a_killed_connection_is_replaced() -> None:
    async def main() -> None:
        async with Recorder() as rec:
            async with _pool(rec.port, size=2) as pool:
                first = await asyncio.gather(*(pool.send(CONTENT, f"a{i}@example.org", ["r@example.net"])
                                               for i in range(20)))
                assert all(r.ok for r in first)
                opened = rec.attempts
                for conn in rec.conns:
                    conn.kill()  # the server drops every connection while idle
                assert await wait_until(lambda: rec.open == 0)
                await asyncio.sleep(0.05)  # let the client side see the reset
                later = await asyncio.gather(*(pool.send(CONTENT, f"b{i}@example.org", ["r@example.net"])
                                               for i in range(20)))
                assert all(r.ok for r in later)
                assert rec.attempts > opened
            assert len(rec.transactions) == 40

    run(main())


def test_a_connection_dying_mid_batch_fails_that_batch_only() -> None:
    crashed: list[bool] = []

    async def final(conn: Conn, txn: Txn) -> str:
        if txn.mail_from == "crash@example.org" and not crashed:
            crashed.append(True)
            conn.kill()
        return "250 2.0.0 ok"

    async def main() -> None:
        async with Recorder(final_reply=final) as rec:
            async with _pool(rec.port, size=1) as pool:
                with pytest.raises(ConnectionClosed):
                    await pool.send(CONTENT, "crash@example.org", ["r@example.net"])
                results = await asyncio.gather(*(pool.send(CONTENT, f"s{i}@example.org", ["r@example.net"])
                                                 for i in range(10)))
                assert all(r.ok for r in results)
            assert rec.attempts == 2

    run(main())


async def _hammer(address: tuple[str, int], period: float) -> int:
    """Connection attempts a plain retry loop without back-off makes in ``period``."""
    loop = asyncio.get_running_loop()
    end, attempts = loop.time() + period, 0
    while loop.time() < end:
        attempts += 1
        try:
            await AsyncSMTPClient(*address, tls="none", timeout=5).connect()
        except SMTPError:
            pass
    return attempts


def test_421_greeting_backs_off() -> None:
    period = 1.0

    async def main() -> None:
        async with Recorder(greeting="421 4.3.2 Too busy, try later") as rec:
            hammered = await _hammer(rec.address, 0.25) * 4  # per second, for comparison
            before = rec.attempts
            async with _pool(rec.port, size=10, min_backoff=0.1, max_backoff=5) as pool:
                errors: list[SMTPError] = []
                loop = asyncio.get_running_loop()
                end = loop.time() + period
                # A caller that retries as fast as the pool lets it.
                while loop.time() < end:
                    try:
                        await pool.send(CONTENT, "s@example.org", ["r@example.net"])
                    except SMTPError as err:
                        errors.append(err)
                attempts = rec.attempts - before
            assert errors and all(isinstance(e, SMTPError) and e.code == 421 for e in errors)
            assert str(errors[0].enhanced) == "4.3.2" and "Too busy" in str(errors[0])
            # Doubling from 0.1 s: attempts at 0, 0.1, 0.3, 0.7 (and 1.5) s.
            assert attempts <= 6, attempts
            assert hammered > 10 * attempts, (hammered, attempts)

    run(main())


def test_421_greeting_backoff_with_many_concurrent_senders() -> None:
    async def main() -> None:
        async with Recorder(greeting="421 4.3.2 Too busy") as rec:
            async with _pool(rec.port, size=10, min_backoff=0.1, max_backoff=5) as pool:
                loop = asyncio.get_running_loop()
                end = loop.time() + 1.0

                async def sender() -> int:
                    failures = 0
                    while loop.time() < end:
                        try:
                            await pool.send(CONTENT, "s@example.org", ["r@example.net"])
                        except SMTPError as err:
                            assert err.code == 421
                            failures += 1
                    return failures

                failures = await asyncio.gather(*(sender() for _ in range(20)))
                attempts = rec.attempts
            assert all(f > 0 for f in failures)
            # One attempt at a time for the whole pool, not one per worker.
            assert attempts <= 6, attempts

    run(main())


def test_workers_share_one_attempt_while_backing_off() -> None:
    async def main() -> None:
        async with Recorder(greeting="421 4.3.2 Too busy") as rec:
            async with _pool(rec.port, size=2, batch=1, min_backoff=0.1) as pool:
                counts, backoffs = [], []
                for _ in range(3):
                    before = rec.attempts
                    outcomes = await asyncio.gather(*(
                        pool.send(CONTENT, "s@example.org", ["r@example.net"]) for _ in range(2)
                    ), return_exceptions=True)
                    assert all(isinstance(o, SMTPError) and o.code == 421 for o in outcomes)
                    counts.append(rec.attempts - before)
                    backoffs.append(pool._backoff)
            # Two workers each holding a message: until a connection has
            # succeeded, and while backing off, one tries and the other shares its error.
            assert counts == [1, 1, 1]
            assert backoffs == [0.1, 0.2, 0.4]

    run(main())


def test_pool_recovers_when_the_server_does() -> None:
    async def main() -> None:
        async with Recorder(greeting="421 4.3.2 Too busy") as rec:
            async with _pool(rec.port, size=4, min_backoff=0.1, max_backoff=0.4) as pool:
                for _ in range(3):
                    with pytest.raises(SMTPError):
                        await pool.send(CONTENT, "s@example.org", ["r@example.net"])
                rec.greeting = "220 rec.test ESMTP back again"
                await _burst(pool, 40)
                assert pool._backoff == 0
            assert len(rec.transactions) == 40

    run(main())


def test_refused_connection_backs_off() -> None:
    # Nobody listens: connection refused, the same back-off.
    async def main() -> None:
        probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = probe.sockets[0].getsockname()[1]
        probe.close()
        await probe.wait_closed()
        async with _pool(port, size=2, min_backoff=0.2) as pool:
            started = time.monotonic()
            with pytest.raises(OSError):
                await pool.send(CONTENT, "s@example.org", ["r@example.net"])
            assert time.monotonic() - started < 1

    run(main())


def test_async_with_quits_every_connection() -> None:
    async def main() -> None:
        async with Recorder() as rec:
            async with _pool(rec.port, size=5, batch=2) as pool:
                gate = asyncio.Event()

                async def final(conn: Conn, txn: Txn) -> str:
                    await gate.wait()  # hold each connection busy until all five are open
                    return "250 2.0.0 ok"

                rec.final_reply = final
                sends = [asyncio.create_task(pool.send(CONTENT, f"s{i}@example.org", ["r@example.net"]))
                         for i in range(20)]
                assert await wait_until(lambda: rec.open == 5)
                gate.set()
                assert all(r.ok for r in await asyncio.gather(*sends))
            assert rec.attempts == 5
            assert all(conn.quit for conn in rec.conns)
            assert await wait_until(lambda: rec.open == 0)
            with pytest.raises(RuntimeError, match="closed"):
                await pool.send(CONTENT, "late@example.org", ["r@example.net"])
            assert len(rec.transactions) == 20

    run(main())


def test_close_lets_in_flight_batches_finish_and_fails_queued_ones() -> None:
    async def main() -> None:
        async with Recorder() as rec:
            gate = asyncio.Event()

            async def final(conn: Conn, txn: Txn) -> str:
                await gate.wait()
                return "250 2.0.0 ok"

            rec.final_reply = final
            pool = _pool(rec.port, size=1, batch=1)
            first = asyncio.create_task(pool.send(CONTENT, "first@example.org", ["r@example.net"]))
            assert await wait_until(lambda: len(rec.transactions) == 1)
            queued = asyncio.create_task(pool.send(CONTENT, "queued@example.org", ["r@example.net"]))
            await asyncio.sleep(0.01)
            closing = asyncio.create_task(pool.close())
            await asyncio.sleep(0.05)
            gate.set()
            await closing
            assert (await first).ok
            with pytest.raises(RuntimeError, match="closed before"):
                await queued
            assert rec.conns[0].quit
            assert [t.mail_from for t in rec.transactions] == ["first@example.org"]

    run(main())


def test_each_sender_gets_its_own_outcome_from_a_shared_batch() -> None:
    # Refusals inside one pipelined batch go to the caller whose message it was.
    async def refuse_some(envelope: Envelope) -> None:
        if envelope.mail_from.startswith("bad"):
            raise SMTPError(554, "5.6.0", f"refusing {envelope.mail_from}")

    backend = CountingBackend(on_data=refuse_some)

    async def main() -> None:
        async with mailwire_server(backend) as server:
            async with _pool(server.port, size=2) as pool:
                senders = [f"bad{i}@example.org" if i % 5 == 0 else f"s{i}@example.org" for i in range(100)]
                outcomes = await asyncio.gather(
                    *(pool.send(CONTENT, sender, ["r@example.net"]) for sender in senders), return_exceptions=True
                )
            for sender, outcome in zip(senders, outcomes):
                if sender.startswith("bad"):
                    assert isinstance(outcome, DataRefused) and outcome.code == 554
                    assert outcome.text == f"refusing {sender}"
                else:
                    assert isinstance(outcome, SendResult) and outcome.ok and outcome.mail_from == sender

    run(main())
    assert backend.sink.messages == 80


def test_bad_message_fails_alone() -> None:
    # A message refused while preparing (no recipients, CR in an address)
    # fails its own send; the rest of the batch goes out.
    backend = CountingBackend()

    async def main() -> None:
        async with mailwire_server(backend) as server:
            async with _pool(server.port, size=1) as pool:
                sends = [pool.send(CONTENT, f"s{i}@example.org", ["r@example.net"]) for i in range(10)]
                sends.insert(3, pool.send(CONTENT, "evil@example.org\r\nRSET", ["r@example.net"]))
                sends.insert(6, pool.send(CONTENT, "s@example.org", []))
                outcomes = await asyncio.gather(*sends, return_exceptions=True)
            assert isinstance(outcomes[3], LocalProtocolError)
            assert isinstance(outcomes[6], ValueError)
            assert sum(isinstance(o, SendResult) and o.ok for o in outcomes) == 10

    run(main())
    assert backend.sink.messages == 10 and len(backend.sessions) == 1


def test_close_timeout_cuts_in_flight_sends_which_then_fail() -> None:
    # A batch still in flight when close()'s grace ends is cut; its senders
    # must hear about it rather than wait forever.
    async def main() -> None:
        async with Recorder() as rec:
            gate = asyncio.Event()

            async def final(conn: Conn, txn: Txn) -> str:
                await gate.wait()
                return "250 2.0.0 ok"

            rec.final_reply = final
            pool = _pool(rec.port, size=2, batch=1)  # one message per connection
            sends = [asyncio.create_task(pool.send(CONTENT, f"s{i}@example.org", ["r@example.net"])) for i in range(2)]
            assert await wait_until(lambda: len(rec.transactions) == 2)
            await pool.close(timeout=0.2)
            done, pending = await asyncio.wait(sends, timeout=2)
            assert not pending, "a sender was left waiting after close()"
            for task in done:
                with pytest.raises(ConnectionClosed, match="closed"):
                    task.result()
            gate.set()
            assert await wait_until(lambda: rec.open == 0)  # the cut connections were closed ...
            assert not any(conn.quit for conn in rec.conns)  # ... at once, without a QUIT

    run(main())


def test_cancelled_queued_send_is_never_sent() -> None:
    async def main() -> None:
        async with Recorder() as rec:
            gate = asyncio.Event()

            async def final(conn: Conn, txn: Txn) -> str:
                await gate.wait()
                return "250 2.0.0 ok"

            rec.final_reply = final
            async with _pool(rec.port, size=1, batch=1) as pool:
                first = asyncio.create_task(pool.send(CONTENT, "first@example.org", ["r@example.net"]))
                assert await wait_until(lambda: len(rec.transactions) == 1)
                second = asyncio.create_task(pool.send(CONTENT, "second@example.org", ["r@example.net"]))
                third = asyncio.create_task(pool.send(CONTENT, "third@example.org", ["r@example.net"]))
                await asyncio.sleep(0.01)
                second.cancel()
                gate.set()
                assert (await first).ok and (await third).ok
                with pytest.raises(asyncio.CancelledError):
                    await second
            assert [t.mail_from for t in rec.transactions] == ["first@example.org", "third@example.org"]

    run(main())


def test_lmtp_pool_reports_each_recipient() -> None:
    """An LMTPPool's connections speak LMTP: one reply per recipient."""
    from mailwire.server import BaseSession, SessionInfo

    class Session(BaseSession):
        async def deliver(self, envelope: Envelope) -> list[SMTPError | None]:
            return [SMTPError(550, "5.1.1", "No such user") if r.startswith("x") else None
                    for r in envelope.rcpt_to]

    class Backend:
        async def new_session(self, info: SessionInfo) -> Session:
            return Session(info)

    async def main() -> list[SendResult]:
        async with mailwire_server(Backend(), lmtp=True) as server:
            async with _pool(server.port, LMTPPool, size=3) as pool:
                return await asyncio.gather(*(
                    pool.send(CONTENT, "a@example.com", ["b@example.com", "x@example.com"]) for _ in range(30)
                ))

    results = run(main())
    assert len(results) == 30
    for result in results:
        assert result.accepted == ["b@example.com"]
        assert result.refused["x@example.com"].code == 550
