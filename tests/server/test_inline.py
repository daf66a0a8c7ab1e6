"""Commands answered in data_received, and backends that still run in a task.

The server answers on the spot what needs no backend call (or only a
session's BaseSession no-ops, or a session that declares ``runs_inline``);
everything else goes to the connection's task. These tests pin both halves:
the fast path delivers exactly, and a backend that needs a running task
(``asyncio.timeout``, ``asyncio.current_task``) gets one.
"""

from __future__ import annotations

import asyncio
import smtplib

from mailwire import SMTPError
from mailwire.server import BaseSession, Envelope, SessionInfo, SMTPServer, Sink
from mailwire.protocol.params import RcptOptions


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


def test_which_steps_a_session_leaves_to_base_session() -> None:
    from mailwire.server.session import inherited_steps

    class Checks(BaseSession):
        async def rcpt(self, address: str, options: RcptOptions) -> None:
            raise SMTPError(550, "5.1.1", "No such user")

    class ChecksToo(Checks):
        async def data(self, envelope: Envelope) -> None:
            return None

    info = SessionInfo(peer=("127.0.0.1", 1))
    assert inherited_steps(BaseSession(info)) == {"mail", "rcpt", "reset"}
    assert inherited_steps(Checks(info)) == {"mail", "reset"}
    assert inherited_steps(ChecksToo(info)) == {"mail", "reset"}  # inherited from a subclass: not BaseSession's
    assert inherited_steps(object()) == frozenset()  # not a BaseSession at all
