"""A load of unique messages that records what the sender was told about each.

``Load`` runs ``sessions`` threads, each an ``smtplib`` client bound to one of
the client addresses (127.0.0.3, 127.0.0.4: the addresses every delivered
``Received:`` line must name), sending its share of messages one
transaction at a time over one connection, a new one after any failure.
Every message's body is unique (its number and a random token) and its
SHA-256 is kept, so a delivered copy is matched to what was sent whatever
the queue did. The outcome of each message is what the sender would act on:

- ``queued``: ``250`` with ``queued as <id>`` (the id is kept): the front end
  promised delivery;
- ``refused``: any other reply (a ``4xx`` or ``5xx``) to MAIL, RCPT or the end
  of data: the sender knows it must try again;
- ``broken``: the connection failed before the reply to the end of data: the
  sender does not know (SMTP's usual case: it sends again later, and a
  duplicate is the accepted risk, RFC 5321 6.1).

No message is retried: each is sent once, so "delivered twice" can only be
the queue's doing. ``stop()`` ends the load (bounded), ``run_for`` sends until
told to stop, ``send_count`` a fixed number.
"""

from __future__ import annotations

import hashlib
import os
import re
import smtplib
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["Load", "Outcome", "CLIENTS", "message"]

CLIENTS = ("127.0.0.3", "127.0.0.4")
_QUEUED = re.compile(rb"queued as (\S+)")


@dataclass
class Outcome:
    number: int
    client: str
    sha256: str
    status: str = "unsent"  # queued | refused | broken (anything else is a defect)
    queue_id: str | None = None
    reply: str = ""


def message(number: int, token: str, size: int = 0) -> tuple[bytes, bytes]:
    """A unique message and its body; ``size`` pads the body (to pass the inline threshold)."""
    body = f"message {number} {token}\r\n".encode()
    if size > len(body):
        line = b"x" * 76 + b"\r\n"
        body += line * ((size - len(body)) // len(line) + 1)
    head = (f"From: load@example.org\r\nTo: sink@example.net\r\nSubject: load {number}\r\n"
            f"Message-ID: <{number}.{token}@example.org>\r\n\r\n").encode()
    return head + body, body


@dataclass
class Load:
    address: tuple[str, int]
    sessions: int = 4
    large_every: int = 5  # every Nth message is large (a blob); 0: none
    large_size: int = 8192
    clients: Sequence[str] = CLIENTS
    timeout: float = 15.0
    pause: float = 0.05
    outcomes: list[Outcome] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._token = os.urandom(8).hex()
        self._lock = threading.Lock()
        self._next = 0
        self._limit: int | None = None
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def _take(self) -> int | None:
        with self._lock:
            if self._stopping.is_set() or (self._limit is not None and self._next >= self._limit):
                return None
            self._next += 1
            return self._next - 1

    def start(self, count: int | None = None) -> None:
        """Send ``count`` messages (None: until ``stop``) in the background."""
        self._limit = count
        for session in range(self.sessions):
            thread = threading.Thread(target=self._session, args=(self.clients[session % len(self.clients)],),
                                      daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 60.0) -> None:
        self._stopping.set()
        self.join(timeout)

    def join(self, timeout: float = 120.0) -> None:
        for thread in self._threads:
            thread.join(timeout)
            assert not thread.is_alive(), "a load session did not end"

    def send_count(self, count: int) -> None:
        self.start(count)
        self.join()

    @property
    def queued(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "queued"]

    def _session(self, client: str) -> None:
        smtp: smtplib.SMTP | None = None
        while (number := self._take()) is not None:
            data, body = message(number, self._token, self.large_size if self.large_every and
                                 number % self.large_every == 0 else 0)
            outcome = Outcome(number, client, hashlib.sha256(body).hexdigest())
            with self._lock:
                self.outcomes.append(outcome)
            try:
                if smtp is None:
                    smtp = smtplib.SMTP(*self.address, source_address=(client, 0), timeout=self.timeout)
                    smtp.ehlo(f"load-{client}")
                self._send(smtp, data, outcome)
            except smtplib.SMTPResponseException as err:  # a reply, not a 250 (to the greeting or DATA)
                outcome.status, outcome.reply = "refused", f"{err.smtp_code} {err.smtp_error!r}"
            except (OSError, smtplib.SMTPException) as err:
                outcome.status, outcome.reply = "broken", repr(err)
            if outcome.status != "queued":  # a front end that refuses may be going away: a fresh connection
                _close(smtp)
                smtp = None
                self._stopping.wait(self.pause)
        _close(smtp)

    @staticmethod
    def _send(smtp: smtplib.SMTP, data: bytes, outcome: Outcome) -> None:
        code, text = smtp.mail("load@example.org")
        if code == 250:
            code, text = smtp.rcpt("sink@example.net")
        if code != 250:
            outcome.status, outcome.reply = "refused", f"{code} {text.decode(errors='replace')}"
            return
        code, text = smtp.data(data)
        outcome.reply = f"{code} {text.decode(errors='replace')}"
        found = _QUEUED.search(text)
        if code == 250 and found:
            outcome.status, outcome.queue_id = "queued", found[1].decode()
        elif code == 250:
            outcome.status = "250 without a queue id"  # a test asserts there is none
        else:
            outcome.status = "refused"


def _close(smtp: smtplib.SMTP | None) -> None:
    if smtp is not None:
        try:
            smtp.close()
        except OSError:
            pass
    return None
