"""What the Django backend tests share: settings per mode, servers, parsing.

Each test runs in one or both configuration modes: ``settings`` (Django's
EMAIL_* settings and EMAIL_BACKEND, the only way on Django 5.2 and still
honoured by 6.1) and, on Django 6.1, ``mailers`` (a MAILERS entry whose
OPTIONS carry the same values). ``mail_settings`` applies either with
``override_settings``; ``backend()`` gets the configured backend the way
that mode's code would.
"""

from __future__ import annotations

import email
import email.policy
import queue
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage as ParsedMessage
from pathlib import Path
from typing import Any

import django
import pytest
from django.core import mail
from django.test.utils import override_settings

from helpers.scripted import Peer

TIMEOUT = 10.0  # every wait in these tests
HAS_MAILERS = django.VERSION >= (6, 1)
MODES = ["settings", "mailers"] if HAS_MAILERS else ["settings"]  # MAILERS is Django 6.1's
# Django 6.1 deprecates the EMAIL_* settings, get_connection() and fail_silently
# (RemovedInDjango2028Warning, a PendingDeprecationWarning); these tests use
# them on purpose, since Django 5.2 has nothing else.
QUIET = pytest.mark.filterwarnings("ignore:.*(deprecated|Django 2028).*:PendingDeprecationWarning")
BACKEND = "mailwire.django.EmailBackend"
DJANGO_BACKEND = "django.core.mail.backends.smtp.EmailBackend"


@contextmanager
def mail_settings(
    mode: str, host: str, port: int, *, use_tls: bool = False, use_ssl: bool = False, username: str = "",
    password: str = "", timeout: float = TIMEOUT, ssl_certfile: str | None = None, ssl_keyfile: str | None = None,
    backend: str = BACKEND, **options: Any,
) -> Iterator[None]:
    """Django configured to send through ``backend`` at ``host:port``;
    ``options`` are mailwire's (MAILWIRE_EMAIL_OPTIONS, or in OPTIONS)."""
    if mode == "settings":
        overrides: dict[str, Any] = dict(
            EMAIL_BACKEND=backend, EMAIL_HOST=host, EMAIL_PORT=port, EMAIL_USE_TLS=use_tls,
            EMAIL_USE_SSL=use_ssl, EMAIL_HOST_USER=username, EMAIL_HOST_PASSWORD=password,
            EMAIL_TIMEOUT=timeout, EMAIL_SSL_CERTFILE=ssl_certfile, EMAIL_SSL_KEYFILE=ssl_keyfile,
            MAILWIRE_EMAIL_OPTIONS=options,
        )
    else:
        overrides = dict(MAILERS={"default": {"BACKEND": backend, "OPTIONS": {
            "host": host, "port": port, "use_tls": use_tls, "use_ssl": use_ssl, "username": username,
            "password": password, "timeout": timeout, "ssl_certfile": ssl_certfile, "ssl_keyfile": ssl_keyfile,
            **options,
        }}})
    with override_settings(**overrides):
        yield


def backend(mode: str, **kwargs: Any) -> Any:
    """The configured default backend, as each mode's code gets it."""
    if mode == "mailers" and not kwargs:
        return mail.mailers["default"]
    return mail.get_connection(**kwargs)


@contextmanager
def unused_port() -> Iterator[int]:
    """A loopback port bound but not listening: a connection there is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        yield probe.getsockname()[1]


def admins(*addresses: str) -> list[Any]:
    """ADMINS as this Django wants it: (name, address) pairs on 5.2, addresses on 6.1."""
    if HAS_MAILERS:
        return list(addresses)
    return [(address.split("@")[0], address) for address in addresses]


def parse(content: bytes) -> ParsedMessage:
    # Parsed as a mail reader would, line endings as Python writes them.
    message = email.message_from_bytes(content.replace(b"\r\n", b"\n"), policy=email.policy.default)
    assert isinstance(message, ParsedMessage)
    return message


# -- a pipelining server that drops the connection ------------------------------------


def dropping_script(accept: int) -> Any:
    """A PIPELINING server that takes ``accept`` messages, then closes the
    connection instead of answering the next one's end of data."""

    def script(peer: Peer) -> None:
        peer.reply("220 scripted ESMTP")
        peer.recv_line()
        peer.reply("250-scripted", "250-PIPELINING", "250 8BITMIME")
        taken = 0
        while line := peer.recv_line():
            verb = line[:4].upper()
            if verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                peer.reply("250 2.0.0 OK")
            elif verb == b"DATA":
                peer.reply("354 go ahead")
                peer.recv_until(b"\r\n.\r\n")
                if taken == accept:
                    return  # gone, the end of data unanswered
                taken += 1
                peer.reply(f"250 2.0.0 queued as {taken}")
            elif verb == b"QUIT":
                peer.reply("221 2.0.0 bye")
                return
            else:
                peer.reply("500 5.5.2 what?")

    return script


# -- mailwire serve, as a user runs it ------------------------------------------------


class Serve:
    """``python -m mailwire serve ARGS --port 0``; the port from its banner
    (without the web inbox: these test Django's sending, and its URL would
    be a second address in the banner)."""

    BANNER = re.compile(r"listening on .*127\.0\.0\.1:(\d+)")

    def __init__(self, *args: str, cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mailwire", "serve", "--port", "0", "-q", "--no-web", *args], cwd=cwd,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        lines: queue.Queue[str] = queue.Queue()
        assert self.proc.stdout is not None
        stdout = self.proc.stdout
        threading.Thread(target=lambda: [lines.put(line) for line in stdout], daemon=True).start()
        try:
            banner = lines.get(timeout=TIMEOUT)
        except queue.Empty:
            self.stop()
            raise AssertionError("mailwire serve printed no banner") from None
        match = self.BANNER.search(banner)
        assert match, banner
        self.port = int(match[1])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(TIMEOUT)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@contextmanager
def serve(*args: str, cwd: Path) -> Iterator[Serve]:
    server = Serve(*args, cwd=cwd)
    try:
        yield server
    finally:
        server.stop()


def maildir_messages(path: Path) -> list[bytes]:
    """Every message stored in the Maildir ``path`` (its new/), Return-Path line removed."""
    found = []
    for file in sorted((path / "new").iterdir()):
        data = file.read_bytes()
        assert data.startswith(b"Return-Path: ")
        found.append(data.split(b"\r\n", 1)[1])
    return found


# -- a mailwire server that refuses on cue --------------------------------------------

from mailwire import SMTPError  # noqa: E402
from mailwire.protocol.params import MailOptions, RcptOptions  # noqa: E402
from mailwire.server import BaseSession, Envelope, SessionInfo  # noqa: E402


class Refusing(BaseSession):
    """Refuses the sender banned@..., recipients nobody*@..., and content
    containing REFUSE-ME, each with the reply a real server would give."""

    async def mail(self, address: str, options: MailOptions) -> None:
        if address.startswith("banned@"):
            raise SMTPError(553, "5.7.1", "Sender not allowed")

    async def rcpt(self, address: str, options: RcptOptions) -> None:
        if address.startswith("nobody"):
            raise SMTPError(550, "5.1.1", "No such user")

    async def data(self, envelope: Envelope) -> None:
        if b"REFUSE-ME" in envelope.content:
            raise SMTPError(554, "5.6.0", "Content refused")


class RefusingBackend:
    async def new_session(self, info: SessionInfo) -> Refusing:
        return Refusing(info)
