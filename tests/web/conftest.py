"""An SMTP server storing through the catcher and the web inbox on one loop, in a thread.

``catcher`` is what ``mailwire serve`` runs (``Catcher`` over an ``Inbox``,
``WebInbox`` on the SMTP server's loop), in-process on loopback; tests
send real mail with ``smtplib`` and ask the API with ``urllib``.
"""

from __future__ import annotations

import asyncio
import json
import smtplib
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import IO, Any

import pytest
from aiohttp.typedefs import Middleware

from mailwire.inbox import Catcher, Inbox
from mailwire.inbox.release import ReleaseRelay
from mailwire.testing import ServerThread
from mailwire.web.serve import WebInbox

TIMEOUT = 30.0


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Catching:
    smtp: ServerThread
    web: WebInbox
    inbox: Inbox
    sent: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.web.urls[0].rstrip("/")

    def send(self, message: EmailMessage | bytes, sender: str = "alice@example.com",
             to: tuple[str, ...] = ("bob@example.org",)) -> None:
        with smtplib.SMTP(*self.smtp.address, timeout=TIMEOUT) as client:
            if isinstance(message, bytes):
                client.sendmail(sender, list(to), message)
            else:
                client.send_message(message, sender, list(to))

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
                raw: bytes | None = None) -> Reply:
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                return Reply(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as err:
            with err:
                return Reply(err.code, dict(err.headers), err.read())

    def get(self, path: str, **kwargs: Any) -> Reply:
        return self.request("GET", path, **kwargs)


def mail(subject: str = "Hello", *, sender: str = "Alice <alice@example.com>", to: str = "Bob <bob@example.org>",
         text: str = "Hi Bob", html: str | None = None, cc: str | None = None,
         attachments: tuple[tuple[str, bytes, str], ...] = (), headers: dict[str, str] | None = None) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    if cc:
        message["Cc"] = cc
    message["Subject"] = subject
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    for filename, data, ctype in attachments:
        maintype, subtype = ctype.split("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return message


def first_event(stream: IO[bytes], send: Callable[[int], None]) -> dict[str, str]:
    """The fields of the first event on an open event stream, while a thread
    calls ``send(n)`` for n = 0, 1, ... (at most 50) until it comes: the
    stream watches from its start, so a message sent before is not one."""
    done = threading.Event()

    def sending() -> None:
        for n in range(50):
            send(n)
            if done.wait(0.2):
                return

    sender = threading.Thread(target=sending)
    sender.start()
    try:
        fields = {}
        while (line := stream.readline().decode().rstrip("\n")) != "":
            name, _, value = line.partition(": ")
            fields[name] = value
        return fields
    finally:
        done.set()
        sender.join(TIMEOUT)


def start_catching(path: Path, auth: tuple[str, str] | None = None, relay: ReleaseRelay | None = None,
                   middlewares: tuple[Middleware, ...] = (), **config: Any) -> Catching:
    """``middlewares`` go first on the web app (a test may change what it answers)."""
    inbox = Inbox(path)
    catcher = Catcher(inbox)
    smtp = ServerThread(catcher, record=False, **config)
    smtp.start()
    web = WebInbox(inbox, "127.0.0.1", 0, auth=auth, relay=relay, catcher=catcher, chaos=config.get("chaos"))
    web.app.middlewares[:0] = middlewares
    assert smtp.loop is not None
    asyncio.run_coroutine_threadsafe(web.start(), smtp.loop).result(TIMEOUT)
    return Catching(smtp, web, inbox)


def stop_catching(catching: Catching) -> None:
    assert catching.smtp.loop is not None
    try:
        asyncio.run_coroutine_threadsafe(catching.web.stop(), catching.smtp.loop).result(TIMEOUT)
    finally:
        catching.smtp.stop()


@pytest.fixture
def catcher(tmp_path: Path) -> Iterator[Catching]:
    catching = start_catching(tmp_path / "mail")
    try:
        yield catching
    finally:
        stop_catching(catching)
