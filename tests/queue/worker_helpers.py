"""What the worker tests share: entries to publish, a worker run until a condition holds,
and the Maildir files read back (queue id from the name, headers from the content)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING
from email.message import EmailMessage
from pathlib import Path

from mailwire.protocol.params import MailOptions, RcptOptions
from mailwire.queue import QueueEntry
from mailwire.queue.worker import Worker
from mailwire.server.envelope import Envelope, SessionInfo

if TYPE_CHECKING:
    from helpers.redis_server import RedisServer
    from mailwire.queue.redis_broker import RedisBroker

GROUP = "mailwire"


def with_broker(server: RedisServer, test: Callable[[RedisBroker], Awaitable[None]]) -> None:
    """Run ``test`` with a broker on ``server`` (closed after), in a new event loop."""
    from mailwire.queue.redis_broker import RedisBroker  # redis is an extra: the tests skip without it

    async def main() -> None:
        broker = RedisBroker.from_url(server.url, timeout=2.0)
        try:
            await test(broker)
        finally:
            await broker.close()

    asyncio.run(main())


def make_entry(n: int = 0, rcpts: tuple[str, ...] = ("b@example.com",), mail_from: str = "a@example.com",
               mail_options: MailOptions | None = None, rcpt_options: list[RcptOptions] | None = None,
               ) -> QueueEntry:
    envelope = Envelope(mail_from, rcpt_to=list(rcpts), mail_options=mail_options or MailOptions(),
                        rcpt_options=rcpt_options or [RcptOptions() for _ in rcpts],
                        session=SessionInfo(peer=("192.0.2.7", 4000 + n), helo_name="client.example"))
    body = f"From: {mail_from or 'MAILER-DAEMON'}\r\nSubject: message {n}\r\n\r\nbody {n}\r\n".encode()
    return QueueEntry.inline(envelope, body)


async def run_until(worker: Worker, done: Callable[[], bool | Awaitable[bool]], timeout: float = 20.0) -> None:
    """Run ``worker`` until ``done()`` holds (bounded), then stop it and wait for it."""
    task = asyncio.get_running_loop().create_task(worker.run())
    try:
        async with asyncio.timeout(timeout) if hasattr(asyncio, "timeout") else _NoTimeout():
            while True:
                result = done()
                if not isinstance(result, bool):
                    result = await result
                if result:
                    break
                if task.done():
                    task.result()
                    raise AssertionError("the worker stopped by itself")
                await asyncio.sleep(0.02)
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)


class _NoTimeout:  # Python 3.10: the test's own timeout bounds it
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


def maildir_files(path: Path) -> dict[str, list[bytes]]:
    """Queue id (from the file name) -> the files stored under it, in new/ and cur/."""
    found: dict[str, list[bytes]] = {}
    for sub in ("new", "cur"):
        if not (path / sub).is_dir():  # not made yet (a worker process starting)
            continue
        for name in os.listdir(path / sub):
            found.setdefault(name.split(".")[0], []).append((path / sub / name).read_bytes())
    return found


def maildir_messages(path: Path) -> dict[str, list[EmailMessage]]:
    """``maildir_files``, each parsed."""
    found: dict[str, list[EmailMessage]] = {}
    for queue_id, files in maildir_files(path).items():
        for raw in files:
            message = email.message_from_bytes(raw, policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            found.setdefault(queue_id, []).append(message)
    return found
