"""``asend_messages``: the backend's answer for async code, on ``SMTPPool``.

Django 6.1 has no asynchronous mail API; the backend adds ``aopen``,
``aclose``, ``asend_messages`` and ``async with``, run on the caller's event
loop (no thread), with the same answers as ``send_messages``. Each test runs
its coroutine with ``asyncio.run`` and a bound.
"""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import pytest
from django.core import mail

from mailwire import SMTPError
from mailwire.server import BaseSession, Envelope, SessionInfo
from mailwire.testing import ServerThread, run_server

from helpers.scripted import ScriptedServer

from .support import (
    MODES, QUIET, TIMEOUT, RefusingBackend, backend, dropping_script, mail_settings, parse, unused_port,
)

pytestmark = [QUIET, pytest.mark.parametrize("mode", MODES)]


def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coroutine, TIMEOUT)

    return asyncio.run(bounded())


def messages(count: int, to: str = "r{}@example.com") -> list[mail.EmailMessage]:
    return [mail.EmailMessage(f"m{i}", "body", "a@example.com", [to.format(i)]) for i in range(count)]


@pytest.fixture
def server() -> ServerThread:
    with run_server(RefusingBackend()) as running:
        yield running


def test_asend_messages_without_aopen(mode: str, server: ServerThread) -> None:
    with mail_settings(mode, *server.address):
        connection = backend(mode)
        assert run(connection.asend_messages(messages(30))) == 30
        assert run(connection.asend_messages([])) == 0
    assert sorted(parse(e.content)["Subject"] for e in server.wait_for(30)) == sorted(f"m{i}" for i in range(30))


def test_async_with_shares_one_pool_between_tasks(mode: str, server: ServerThread) -> None:
    async def main(connection: Any) -> list[int]:
        async with connection:
            return list(await asyncio.gather(*(connection.asend_messages(messages(10)) for _ in range(5))))

    with mail_settings(mode, *server.address, pool_size=2):
        assert run(main(backend(mode))) == [10] * 5
    envelopes = server.wait_for(50)
    assert 1 <= len({e.session.peer for e in envelopes if e.session}) <= 2


def test_async_refusals_are_the_same_as_blocking_ones(mode: str, server: ServerThread) -> None:
    refused = messages(3, "nobody{}@example.com")
    with mail_settings(mode, *server.address):
        with pytest.raises(smtplib.SMTPRecipientsRefused) as caught:
            run(backend(mode).asend_messages(refused[:1]))
        assert caught.value.recipients == {"nobody0@example.com": (550, b"5.1.1 No such user")}
        mixed = [*messages(2), *refused]
        assert run(backend(mode, fail_silently=True).asend_messages(mixed)) == 2


def test_the_pool_counts_what_was_answered_before_a_drop(
    mode: str, scripted: Callable[..., ScriptedServer]
) -> None:
    server = scripted(dropping_script(accept=2))
    with mail_settings(mode, *server.address):
        assert run(backend(mode, fail_silently=True).asend_messages(messages(5))) == 2
    server = scripted(dropping_script(accept=2))
    with mail_settings(mode, *server.address):
        with pytest.raises(smtplib.SMTPServerDisconnected):
            run(backend(mode).asend_messages(messages(5)))


def test_nobody_listening_fails_silently_or_not(mode: str) -> None:
    with unused_port() as port, mail_settings(mode, "127.0.0.1", port):
        with pytest.raises(ConnectionRefusedError):
            run(backend(mode).asend_messages(messages(1)))
        assert run(backend(mode, fail_silently=True).asend_messages(messages(1))) == 0
        connection = backend(mode, fail_silently=True)
        assert run(connection.aopen()) is None


def test_a_pool_size_above_one_refuses_to_block_a_running_loop(mode: str, server: ServerThread) -> None:
    async def blocking_call_in_async_code(connection: Any) -> int:
        return int(connection.send_messages(messages(1)))

    with mail_settings(mode, *server.address, pool_size=2):
        with pytest.raises(RuntimeError, match="asend_messages"):
            run(blocking_call_in_async_code(backend(mode)))
    with mail_settings(mode, *server.address):  # one connection: blocking, as Django's backend
        assert run(blocking_call_in_async_code(backend(mode))) == 1


class FullMailbox(BaseSession):
    """LMTP: each recipient's own outcome after the data; full*@ are refused there."""

    async def deliver(self, envelope: Envelope) -> Sequence[SMTPError | None]:
        return [SMTPError(452, "4.2.2", "Mailbox full") if rcpt.startswith("full") else None
                for rcpt in envelope.rcpt_to]


class FullMailboxBackend:
    async def new_session(self, info: SessionInfo) -> FullMailbox:
        return FullMailbox(info)


@pytest.mark.parametrize("asynchronous", [False, True])
def test_lmtp_reports_each_recipient(mode: str, asynchronous: bool, caplog: pytest.LogCaptureFixture) -> None:
    some_full = mail.EmailMessage("S", "B", "a@example.com", ["ok@example.com", "full@example.com"])
    all_full = mail.EmailMessage("S", "B", "a@example.com", ["full@example.com", "full2@example.com"])
    with run_server(FullMailboxBackend(), lmtp=True) as server:
        with mail_settings(mode, *server.address, lmtp=True):
            connection = backend(mode)
            send = (lambda m: run(connection.asend_messages(m))) if asynchronous else connection.send_messages
            assert send([some_full]) == 1
            assert "full@example.com: 452 4.2.2 Mailbox full" in caplog.text
            with pytest.raises(smtplib.SMTPRecipientsRefused) as caught:
                send([all_full])
        [delivered] = server.wait_for(1)
    assert delivered.rcpt_to == ["ok@example.com", "full@example.com"]
    assert caught.value.recipients == {
        "full@example.com": (452, b"4.2.2 Mailbox full"), "full2@example.com": (452, b"4.2.2 Mailbox full"),
    }
