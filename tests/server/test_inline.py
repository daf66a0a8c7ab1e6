"""Commands answered in data_received, and backends that still run in a task.

The server answers on the spot what needs no backend call, or only steps
that are plain functions (a session declares a step that never waits by
writing it as ``def``); an ``async def`` step runs in the connection's task.
These tests pin both halves: the fast path delivers exactly, and a backend
that needs a running task (``asyncio.timeout``, ``asyncio.current_task``)
gets one.
"""

from __future__ import annotations

import asyncio
import smtplib

from mailwire import SMTPError
from mailwire.server import BaseSession, Envelope, SessionInfo, SMTPServer, Sink
from mailwire.protocol.params import MailOptions, RcptOptions


def _send_many(port: int, count: int) -> list[dict[str, tuple[int, bytes]]]:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        return [
            client.sendmail("a@example.com", ["b@example.com"], f"Subject: {i}\r\n\r\nbody {i}\r\n")
            for i in range(count)
        ]


def test_a_runs_inline_sink_gets_every_message() -> None:
    sink = Sink()

    async def main() -> None:
        server = SMTPServer(sink, hostname="mx.test")
        await server.start("127.0.0.1", 0)
        try:
            refused = await asyncio.to_thread(_send_many, server.port, 200)
        finally:
            await server.stop(grace=1.0)
        assert refused == [{}] * 200

    asyncio.run(main())
    assert sink.messages == 200


class _TaskBoundSession(BaseSession):
    """Uses what needs a running task: current_task, and wait_for (built on
    asyncio.timeout from 3.12 on)."""

    def __init__(self, info: SessionInfo, seen: list[str]) -> None:
        super().__init__(info)
        self.seen = seen

    async def rcpt(self, address: str, options: RcptOptions) -> None:
        assert asyncio.current_task() is not None
        await asyncio.wait_for(asyncio.sleep(0), 5)
        if address.startswith("nobody"):
            raise SMTPError(550, "5.1.1", "No such user")

    async def data(self, envelope: Envelope) -> None:
        assert asyncio.current_task() is not None
        self.seen.append(envelope.content.decode())


def test_backends_that_need_a_task_get_one() -> None:
    seen: list[str] = []

    class Backend:
        async def new_session(self, info: SessionInfo) -> BaseSession:
            return _TaskBoundSession(info, seen)

    async def main() -> dict[str, tuple[int, bytes]]:
        server = SMTPServer(Backend(), hostname="mx.test")
        await server.start("127.0.0.1", 0)

        def client() -> dict[str, tuple[int, bytes]]:
            with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as smtp:
                return smtp.sendmail("a@example.com", ["b@example.com", "nobody@example.com"], "hi\r\n")

        try:
            return await asyncio.to_thread(client)
        finally:
            await server.stop(grace=1.0)

    refused = asyncio.run(main())
    assert refused == {"nobody@example.com": (550, b"5.1.1 No such user")}
    assert seen == ["hi\r\n"]


class _MixedSession(BaseSession):
    """Plain steps (answered on the spot) beside an async one, each refusing
    as the contract says: SMTPError for a refusal, anything else a 451."""

    def __init__(self, info: SessionInfo, seen: list[str]) -> None:
        super().__init__(info)
        self.seen = seen

    def mail(self, address: str, options: MailOptions) -> None:
        if address.startswith("crash"):
            raise RuntimeError("a bug in a plain step")

    def rcpt(self, address: str, options: RcptOptions) -> None:
        if address.startswith("nobody"):
            raise SMTPError(550, "5.1.1", "No such user")

    async def data(self, envelope: Envelope) -> None:
        assert asyncio.current_task() is not None
        await asyncio.sleep(0)
        self.seen.append(envelope.content.decode())


def test_plain_and_async_steps_in_one_session() -> None:
    seen: list[str] = []

    class Backend:
        async def new_session(self, info: SessionInfo) -> BaseSession:
            return _MixedSession(info, seen)

    async def main() -> tuple[dict[str, tuple[int, bytes]], tuple[int, bytes], tuple[int, bytes]]:
        server = SMTPServer(Backend(), hostname="mx.test")
        await server.start("127.0.0.1", 0)

        def client() -> tuple[dict[str, tuple[int, bytes]], tuple[int, bytes], tuple[int, bytes]]:
            with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as smtp:
                refused = smtp.sendmail("a@example.com", ["b@example.com", "nobody@example.com"], "hi\r\n")
                crashed = smtp.mail("crash@example.com")
                smtp.rset()
                return refused, crashed, smtp.noop()

        try:
            return await asyncio.to_thread(client)
        finally:
            await server.stop(grace=1.0)

    refused, crashed, noop = asyncio.run(main())
    assert refused == {"nobody@example.com": (550, b"5.1.1 No such user")}
    assert crashed == (451, b"4.3.0 Error processing the message, try again later")
    assert noop[0] == 250  # the session goes on
    assert seen == ["hi\r\n"]
