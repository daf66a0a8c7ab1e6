"""``CaughtMessage``: a caught message as a test reads it.

A test of a sign-up or a password reset wants four things of the mail its
application sent: who it went to, its subject, the link to follow and the
code to type. ``CaughtMessage`` parses the message as received (the
standard library's ``email``, ``policy.default``) and gives those, plus
its text and HTML bodies and its headers, whatever it holds: a header the
parser cannot read is taken as written (encoded words decoded), a body in
an unknown charset or a broken transfer encoding is decoded with
replacement characters. Nothing a message may contain makes reading it
raise; a question with no single answer (``link``, ``code``) fails with an
AssertionError that shows what there was, so the test says why it failed.

The same class serves the in-process server (``from_envelope``: the
envelope's sender and recipients are known) and a running catcher over
its API (``InboxClient`` builds one from the raw source and the
recipients the server reports), so a test reads mail the same way
wherever it was caught.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import re
from collections.abc import Iterator, Mapping, Sequence
from email.message import EmailMessage, Message
from functools import cached_property

from ..server.envelope import Envelope
from .codes import find_code
from .reading import bare_urls, read_html, unique_links

__all__ = ["CaughtMessage", "Headers"]


class Headers(Mapping[str, str]):
    """A message's header fields, by name in any case: ``headers["subject"]``
    is the first field's value (encoded words decoded, folding undone);
    ``get_all(name)`` every one's, in order; iterating gives each name
    once, as first written."""

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        self.pairs = tuple(pairs)
        self._first: dict[str, tuple[str, str]] = {}  # by lower-case name: (name as written, value)
        for name, value in self.pairs:
            self._first.setdefault(name.lower(), (name, value))

    def __getitem__(self, name: str) -> str:
        return self._first[name.lower()][1]

    def __iter__(self) -> Iterator[str]:
        return (written for written, _ in self._first.values())

    def __len__(self) -> int:
        return len(self._first)

    def get_all(self, name: str) -> list[str]:
        return [value for key, value in self.pairs if key.lower() == name.lower()]

    def __repr__(self) -> str:
        return f"Headers({list(self.pairs)!r})"


def _pairs(parsed: EmailMessage, raw: bytes) -> list[tuple[str, str]]:
    try:
        return [(name, " ".join(str(value).split())) for name, value in parsed.items()]
    except Exception:  # a field policy.default cannot parse: take every one as written
        from ..inbox.mime import header_text  # only here: the store's import costs a plain test run

        plain = email.message_from_bytes(raw, policy=email.policy.compat32)
        return [(name, " ".join(header_text(value).split())) for name, value in plain.items()]


def _decoded(part: Message) -> str:
    """A text part's content: ``get_content`` where it can, else the
    payload decoded leniently, in its charset or UTF-8, with replacement."""
    try:
        content = part.get_content() if isinstance(part, EmailMessage) else None
        if isinstance(content, str):
            return content.replace("\r\n", "\n")
    except Exception:  # an unknown charset, a defect the content manager refuses
        pass
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        payload = None
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, "replace").replace("\r\n", "\n")
    except (LookupError, ValueError):
        return payload.decode("utf-8", "replace").replace("\r\n", "\n")


def _body(parsed: EmailMessage, subtype: str) -> str:
    try:
        part = parsed.get_body(preferencelist=(subtype,))
    except Exception:  # a structure get_body cannot walk
        part = None
    return "" if part is None else _decoded(part)


class CaughtMessage:
    """A message a catcher received.

    ``raw`` (the octets received), ``email`` (them parsed, an
    ``EmailMessage``), ``headers``, ``subject``, ``sender`` (the From
    address, else the envelope's sender), ``to`` (the envelope's
    recipients where known, else the To and Cc addresses), ``text`` (the
    text/plain body, else the text of the HTML one), ``html``, ``links``,
    ``link(containing=...)``, ``code()``; ``id`` is the catcher's ID for
    it, where it has one (the API's), else "".
    """

    def __init__(self, raw: bytes, *, mail_from: str = "", recipients: Sequence[str] = (), id: str = "") -> None:
        self.raw = raw
        self.mail_from = mail_from
        self.recipients = list(recipients)
        self.id = id

    @classmethod
    def from_envelope(cls, envelope: Envelope) -> CaughtMessage:
        return cls(envelope.content, mail_from=envelope.mail_from, recipients=envelope.rcpt_to)

    @cached_property
    def email(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)  # what policy.default makes
        return parsed

    @cached_property
    def headers(self) -> Headers:
        return Headers(_pairs(self.email, self.raw))

    def _addresses(self, *names: str) -> list[str]:
        values = [value for name in names for value in self.headers.get_all(name)]
        return [address for _, address in email.utils.getaddresses(values) if address]

    @property
    def subject(self) -> str:
        return self.headers.get("subject", "")

    @property
    def sender(self) -> str:
        found = self._addresses("from")
        return found[0] if found else self.mail_from

    @property
    def to(self) -> list[str]:
        return list(self.recipients) or self._addresses("to", "cc")

    @cached_property
    def html(self) -> str:
        return _body(self.email, "html")

    @cached_property
    def text(self) -> str:
        return _body(self.email, "plain") or read_html(self.html).text()

    @cached_property
    def links(self) -> list[str]:
        """The http(s) links: the HTML body's hrefs, then the URLs written
        in its text and in the text body, in order, each once."""
        reading = read_html(self.html)
        return unique_links(reading.links, bare_urls(reading.text()), bare_urls(_body(self.email, "plain")))

    def link(self, containing: str | None = None) -> str:
        """The one link that contains ``containing`` (any link, when None);
        AssertionError, listing the links, if there is none or more than one."""
        found = [link for link in self.links if containing is None or containing in link]
        if len(found) == 1:
            return found[0]
        which = "" if containing is None else f" containing {containing!r}"
        problem = f"no link{which}" if not found else f"{len(found)} links{which}, not one,"
        listed = "\n".join(f"  {link}" for link in self.links) or "  (none)"
        raise AssertionError(f"{problem} in the message {self.describe()}; its links:\n{listed}")

    def code(self, pattern: str | re.Pattern[str] | None = None, digits: tuple[int, int] = (4, 8)) -> str:
        """The one-time code in the subject or text (see ``mailwire._testing.codes``):
        a standalone number of ``digits`` digits, or what ``pattern`` matches
        (its first group, if it has one); AssertionError if none or ambiguous."""
        return find_code(f"{self.subject}\n{self.text}", pattern, digits)

    def describe(self) -> str:
        """One line: sender, recipients, subject (what a failure lists)."""
        return f"from {self.sender or '<>'} to {', '.join(self.to) or '(nobody)'}: {self.subject!r}"

    def __repr__(self) -> str:
        return f"<CaughtMessage {self.describe()}>"
