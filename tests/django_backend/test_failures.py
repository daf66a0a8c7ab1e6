"""A server that drops the connection mid-list, or never answers.

The scripted server (``support.dropping_script``) offers PIPELINING, takes
two messages and closes the connection instead of answering the third's end
of data: what Django's backend would meet as ``SMTPServerDisconnected`` at
that message. Every wait is bounded by ``EMAIL_TIMEOUT``.
"""

from __future__ import annotations

import smtplib
import socket
import threading
from collections.abc import Callable

import pytest
from django.core import mail

from helpers.scripted import Peer, ScriptedServer

from .support import MODES, QUIET, backend, dropping_script, mail_settings

pytestmark = [QUIET, pytest.mark.parametrize("mode", MODES)]
Scripted = Callable[..., ScriptedServer]


def five() -> list[mail.EmailMessage]:
    return [mail.EmailMessage(f"m{i}", "body", "a@example.com", [f"r{i}@example.com"]) for i in range(5)]


def test_a_drop_mid_list_raises_server_disconnected(mode: str, scripted: Scripted) -> None:
    server = scripted(dropping_script(accept=2))
    with mail_settings(mode, *server.address):
        with pytest.raises(smtplib.SMTPServerDisconnected):
            backend(mode).send_messages(five())
    server.close()
    assert server.received.count(b"\r\n.\r\n") >= 3  # pipelined: the third was sent whole


def test_a_drop_mid_list_with_fail_silently_raises_nothing(mode: str, scripted: Scripted) -> None:
    server = scripted(dropping_script(accept=2))
    with mail_settings(mode, *server.address):
        sent = backend(mode, fail_silently=True).send_messages(five())
    # Two were answered 250 before the drop. SMTPClient.send_many raises for
    # the whole run when its connection fails, so the single-connection path
    # cannot tell which; it counts none rather than guess (the pool path,
    # which keeps each message's outcome, counts 2: see test_async).
    assert sent in (0, 1, 2)


def test_the_next_send_reconnects_after_a_drop(mode: str, scripted: Scripted) -> None:
    server = scripted(dropping_script(accept=2), connections=2)
    with mail_settings(mode, *server.address):
        connection = backend(mode)
        with connection:
            with pytest.raises(smtplib.SMTPServerDisconnected):
                connection.send_messages(five())
            # Django's backend would keep its dead connection and fail again;
            # this one opens a new one for the next list.
            assert connection.send_messages(five()[:2]) == 2
    assert len(server.peers) == 2


def test_a_server_that_never_answers_is_bounded_by_email_timeout(mode: str, scripted: Scripted) -> None:
    def mute(peer: Peer) -> None:
        peer.reply("220 scripted ESMTP")
        peer.recv_line()  # EHLO, never answered
        peer.wait_closed()

    server = scripted(mute, strict=False)
    with mail_settings(mode, *server.address, timeout=0.5):
        with pytest.raises(OSError):
            mail.send_mail("S", "B", "a@example.com", ["b@example.com"])
        assert mail.send_mail("S", "B", "a@example.com", ["b@example.com"], fail_silently=True) == 0


def test_a_greeting_that_refuses_is_smtplibs_connect_error(mode: str, scripted: Scripted) -> None:
    def refuse(peer: Peer) -> None:
        peer.reply("554 5.3.2 not taking mail")
        if peer.recv_line().upper().startswith(b"QUIT"):  # RFC 5321 3.1: the client still says QUIT
            peer.reply("221 2.0.0 bye")

    server = scripted(refuse, strict=False)
    with mail_settings(mode, *server.address):
        with pytest.raises(smtplib.SMTPConnectError) as caught:
            mail.send_mail("S", "B", "a@example.com", ["b@example.com"])
    assert caught.value.smtp_code == 554


def test_a_server_gone_before_the_greeting(mode: str) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        with mail_settings(mode, *listener.getsockname()[:2], timeout=5):
            connection = backend(mode)

            def accept_and_close() -> None:
                conn, _ = listener.accept()
                conn.close()

            thread = threading.Thread(target=accept_and_close)
            thread.start()
            try:
                with pytest.raises(smtplib.SMTPServerDisconnected):
                    connection.open()
            finally:
                thread.join(5)
