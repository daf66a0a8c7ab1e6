"""Which message a test waits for: by recipient, sender, subject or Mailpit's query.

``Criteria`` is one question asked two ways. In-process (``ServerMail``)
it is answered here, against each ``CaughtMessage``; over the API
(``InboxClient``) it is written as one query in Mailpit's search syntax
(``to:"..." from:"..." subject:"..." QUERY``) so the server answers it,
from its index. Both read ``to``, ``sender`` and ``subject`` as
case-insensitive substrings, as Mailpit's filters do; over the API ``to``
is the server's ``to:`` (the To header; Mailpit lists a recipient that is
not in To or Cc as Bcc), in-process a recipient of the envelope or an
address in To or Cc.

A ``query`` in-process is read by mailwire's own parser
(``mailwire.inbox.query``) and each word answered against the message:
the address and subject filters, free text (subject, addresses and
bodies), ``has:attachment``/``has:inline``, ``larger:``/``smaller:``, each
negatable. What only a store knows (``is:read``, ``tag:``, ``before:``,
``after:``: a message in a test server has no read flag, tags or arrival
time in the index) is refused with a ValueError up front, not silently
ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .message import CaughtMessage
from .reading import read_html

if TYPE_CHECKING:
    from ..inbox.query import Term

__all__ = ["Criteria"]

_STORE_ONLY = {"is", "tag", "before", "after"}
_ADDRESS_FIELDS = {"from": ("from",), "to": ("to",), "cc": ("cc",), "bcc": ("bcc",), "reply-to": ("reply-to",),
                   "addressed": ("from", "to", "cc", "bcc", "reply-to")}


def _quoted(value: str) -> str:
    if '"' in value:
        raise ValueError(f"a double quote cannot be searched for in Mailpit's syntax: {value!r}")
    return f'"{value}"'


def _fields(message: CaughtMessage, names: tuple[str, ...]) -> str:
    text = " ".join(value for name in names for value in message.headers.get_all(name))
    if "bcc" in names:  # the envelope's recipients, as a store lists them (Bcc)
        text += " " + " ".join(message.recipients)
    if "from" in names:
        text += " " + message.mail_from
    return text.lower()


def _parts(message: CaughtMessage, disposition: str) -> int:
    try:
        return sum(1 for part in message.email.walk()
                   if part.get_content_disposition() == disposition
                   and (disposition == "attachment" or part.get_filename() or part.get("content-id")))
    except Exception:  # a structure too broken to walk has none to count
        return 0


def _holds(term: Term, message: CaughtMessage) -> bool:
    """Whether ``term`` (not negated) holds for ``message``."""
    field, value = term.field, term.value
    if field in _ADDRESS_FIELDS:
        return str(value).lower() in _fields(message, _ADDRESS_FIELDS[field])
    if field == "subject":
        return str(value).lower() in message.subject.lower()
    if field == "message-id":
        return str(value).lower() in message.headers.get("message-id", "").lower()
    if field == "has":
        return _parts(message, "attachment" if str(value).startswith("attachment") else "inline") > 0
    if field in ("larger", "smaller"):
        size = len(message.raw)
        return size > float(value) if field == "larger" else size < float(value)
    if field == "text":
        everything = " ".join((_fields(message, _ADDRESS_FIELDS["addressed"]), message.subject, message.text,
                               read_html(message.html).text()))
        return str(value).lower() in everything.lower()
    raise ValueError(f"{field}: is answered by a catcher's store, not by an in-process server")


@dataclass(frozen=True)
class Criteria:
    """What ``wait_for`` waits for; every part given must match, none: any message."""

    to: str | None = None
    sender: str | None = None
    subject: str | None = None
    query: str | None = None

    def local_query(self) -> tuple[Term, ...]:
        """``query`` parsed for answering here, its terms; ValueError (a
        ``QueryError``) if it does not parse or asks what only a store knows."""
        if not self.query:
            return ()
        from ..inbox.query import parse  # only here: the store's import costs a run without queries

        terms = parse(self.query).terms
        refused = sorted({t.field for t in terms if t.field in _STORE_ONLY})
        if refused:
            names = ", ".join(f"{name}:" for name in refused)
            raise ValueError(f"{names} in {self.query!r} is answered by a catcher's store (InboxClient), "
                             "not by an in-process server")
        return terms

    def matches(self, message: CaughtMessage, terms: tuple[Term, ...]) -> bool:
        """Whether ``message`` is the one (``terms``: ``local_query()``)."""
        if self.to is not None:
            wanted = self.to.lower()
            if not any(wanted in r.lower() for r in message.to) and wanted not in _fields(message, ("to", "cc")):
                return False
        if self.sender is not None and self.sender.lower() not in _fields(message, ("from",)):
            return False
        if self.subject is not None and self.subject.lower() not in message.subject.lower():
            return False
        return all(_holds(term, message) != term.negate for term in terms)

    def as_query(self) -> str:
        """The criteria as one query in Mailpit's syntax, for a server."""
        words = [f"{name}:{_quoted(value)}" for name, value in
                 (("to", self.to), ("from", self.sender), ("subject", self.subject)) if value is not None]
        if self.query and self.query.strip():
            words.append(self.query.strip())
        return " ".join(words)

    def __str__(self) -> str:
        given = [f"{name}={value!r}" for name, value in
                 (("to", self.to), ("sender", self.sender), ("subject", self.subject), ("query", self.query))
                 if value is not None]
        return " ".join(given) if given else "(any message)"
