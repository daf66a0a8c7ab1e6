"""Building stored messages for the inbox tests: files as the catcher writes them."""

from __future__ import annotations

import itertools
import os
import time
from email.message import EmailMessage

from mailwire.inbox.summary import envelope_trace

_counter = itertools.count()


def message(subject: str = "Hello", *, sender: str = "Alice <alice@example.com>", to: str = "bob@example.org",
            body: str = "Hi Bob", cc: str | None = None, html: str | None = None,
            attachments: tuple[tuple[str, bytes], ...] = (), headers: dict[str, str] | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    if cc:
        msg["Cc"] = cc
    msg["Subject"] = subject
    # Unique, and without digits: a search for a number (test_query's "42")
    # must not find it in the Message-ID of whichever message came 42nd.
    msg["Message-ID"] = f"<m{''.join('abcdefghij'[int(d)] for d in str(next(_counter)))}@example.com>"
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    for filename, data in attachments:
        msg.add_attachment(data, maintype="application", subtype="octet-stream", filename=filename)
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def store(maildir: str, content: bytes, *, mail_from: str = "alice@example.com",
          rcpt: tuple[str, ...] | None = ("bob@example.org",), user: str | None = None,
          sub: str = "new", when: float | None = None) -> str:
    """Write a message into ``maildir`` the way the catcher does (without
    the catcher: as another deliverer would); its file name."""
    for folder in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(maildir, folder), exist_ok=True)
    name = f"{int(time.time())}.M{next(_counter)}P{os.getpid()}.test"
    if sub == "cur":
        name += ":2,"
    head = f"Return-Path: <{mail_from}>\r\n".encode()
    if rcpt is not None:
        head += envelope_trace(rcpt, user, b"\r\n")
    tmp = os.path.join(maildir, "tmp", name)
    with open(tmp, "wb") as file:  # in tmp/, then renamed: a reader never sees it half-written
        file.write(head + content)
    if when is not None:
        os.utime(tmp, (when, when))
    os.rename(tmp, os.path.join(maildir, sub, name))
    return name
