"""The catcher backend on a real server on loopback: stored, indexed before the 250, never lost."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest

from mailwire import SMTPClient
from mailwire.inbox import Catcher, Inbox
from mailwire.sasl import Credentials
from mailwire.server import Envelope, SessionInfo
from mailwire.server.session import Session
from mailwire.testing import ServerThread

from .support import message


def test_a_message_is_in_the_inbox_when_the_client_returns(tmp_path: Path) -> None:
    with Inbox(tmp_path) as inbox, ServerThread(Catcher(inbox)) as server:
        with SMTPClient(*server.address, tls="none") as client:
            client.send(message("Welcome", to="new@example.org"), "app@example.com",
                        ["new@example.org", "audit@example.org"])
            # No wait: the 250 came after the index had it.
            (summary,) = inbox.list().messages
        assert summary.subject == "Welcome" and summary.return_path == "app@example.com"
        assert summary.recipients == ("new@example.org", "audit@example.org")
        assert [a.address for a in summary.bcc] == ["audit@example.org"]
        assert inbox.list(mailbox="audit@example.org").total == 1
        with inbox.raw(summary.id) as raw:
            stored = raw.read()
        assert stored.startswith(b"Return-Path: <app@example.com>\r\nX-Mailwire-Envelope: ")
        assert stored.endswith(message("Welcome", to="new@example.org")[-40:])


def test_a_large_streamed_message_and_the_auth_user(tmp_path: Path) -> None:
    payload = os.urandom(3 * 1024 * 1024)  # several write batches: the streamed path

    def accept(credentials: Credentials) -> None:
        return None

    with Inbox(tmp_path) as inbox, ServerThread(Catcher(inbox), authenticator=accept,
                                                allow_plaintext_auth=True) as server:
        with SMTPClient(*server.address, tls="none", auth=("app-user", "secret"), allow_plaintext_auth=True) as client:
            client.send(message("Big", attachments=(("blob.bin", payload),)), "app@example.com", ["x@example.org"])
        (summary,) = inbox.list(mailbox="app-user").messages
        assert summary.username == "app-user" and summary.attachments == 1
        part = inbox.part(summary.id, inbox.message(summary.id).attachments[0].part_id)
        assert b"".join(part.chunks) == payload


def test_whole_messages_are_indexed_too(tmp_path: Path) -> None:
    """``Session.data`` (a message held whole: code that drives a session
    itself) stores and indexes as the streamed form does."""
    with Inbox(tmp_path) as inbox:
        catcher = Catcher(inbox)

        async def deliver() -> None:
            session: Session = await catcher.new_session(SessionInfo(peer=None))
            await session.data(Envelope("a@example.com", rcpt_to=["b@example.org"], content=message("Whole")))

        asyncio.run(deliver())
        (summary,) = inbox.list().messages
        assert summary.subject == "Whole" and summary.recipients == ("b@example.org",)


def test_a_failure_to_index_loses_no_message(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    inbox = Inbox(tmp_path)

    def broken(items: object) -> None:
        raise OSError("the index is on fire")

    inbox.index.add_many = broken  # type: ignore[method-assign,assignment]
    with ServerThread(Catcher(inbox)) as server, caplog.at_level(logging.ERROR):
        with SMTPClient(*server.address, tls="none") as client:
            client.send(message("Survivor"), "a@example.com", ["b@example.org"])  # 250: it did not raise
    assert inbox.list().total == 0 and len(os.listdir(tmp_path / "new")) == 1  # (the list flushed the queue)
    assert "could not index 1 message" in caplog.text
    inbox.close()
    with Inbox(tmp_path) as again:  # the next open catches up
        assert [s.subject for s in again.list().messages] == ["Survivor"]


def test_a_plain_maildir_message_still_reads(tmp_path: Path) -> None:
    """A message stored by the plain Maildir backend (no envelope line):
    its mailboxes come from its headers."""
    from mailwire.server import Maildir

    with ServerThread(Maildir(tmp_path / "mail")) as server:
        with SMTPClient(*server.address, tls="none") as client:
            client.send(message("Plain", to="b@example.org", cc="c@example.org"), "a@example.com",
                        ["b@example.org"])
    with Inbox(tmp_path / "mail") as inbox:
        (summary,) = inbox.list().messages
        assert summary.recipients == () and summary.return_path == "a@example.com"
        assert inbox.list(mailbox="c@example.org").total == 1


def test_concurrent_clients(tmp_path: Path) -> None:
    import threading

    with Inbox(tmp_path) as inbox, ServerThread(Catcher(inbox)) as server:
        def client(n: int) -> None:
            with SMTPClient(*server.address, tls="none") as smtp:
                for i in range(20):
                    smtp.send(message(f"c{n}-{i}"), "a@example.com", [f"to{n}@example.org"])

        threads = [threading.Thread(target=client, args=(n,)) for n in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        subjects = [s.subject for s in inbox.list(limit=1000).messages]
        assert len(subjects) == 100 == len(set(subjects))
        assert inbox.list(mailbox="to3@example.org").total == 20 and inbox.sync() == (0, 0)
