"""Exception types.

Two families. ``ProtocolError`` is about the conversation itself and is split
by whose fault it is: ``LocalProtocolError`` means this program misused the
API (a CR in an address, a command in the wrong state) and nothing was sent;
``RemoteProtocolError`` means the peer broke the protocol (a garbage reply, an
overlong line) and carries the reply a server should answer with. ``SMTPError``
is a refusal: a reply with a 4xx/5xx code, raised by backends to refuse and by
clients when the server refused. Both derive from ``MailwireError``.

The stdlib adapter has its own hierarchy (``smtplib.SMTPException`` and
friends) and translates; these types are the native API's.
"""

from __future__ import annotations

from .reply import EnhancedStatus, Reply
from .result import SendResult

__all__ = [
    "MailwireError",
    "ProtocolError",
    "LocalProtocolError",
    "RemoteProtocolError",
    "MalformedReply",
    "SMTPError",
    "SenderRefused",
    "RecipientsRefused",
    "DataRefused",
    "ConnectionClosed",
    "TLSRequiredError",
    "AuthenticationError",
    "NotSupportedError",
    "PoolClosed",
]


class MailwireError(Exception):
    """Base of every exception mailwire raises on purpose."""


class ProtocolError(MailwireError):
    """The SMTP conversation cannot go on as asked."""


class LocalProtocolError(ProtocolError, ValueError):
    """We were asked to do something the protocol forbids; nothing was sent."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol.

    ``reply`` is what a server answers (500/501/421 ...); a client simply
    reports the error and closes.
    """

    def __init__(self, message: str, reply: Reply | None = None) -> None:
        super().__init__(message)
        self.reply = reply if reply is not None else Reply.of(500, "5.5.2", message)


class MalformedReply(RemoteProtocolError):
    """A server's reply broke the grammar of RFC 5321 4.2: a code outside
    2xx-5xx (``199``, ``600``, ``2x0``), lines that disagree on the code, a
    separator other than a space or a hyphen.

    RFC 5321 4.2.1 has a client treat an out-of-range code as fatal, so the
    connection is over either way. What could be read is kept, for a caller
    that reports it rather than the error (the ``smtplib`` drop-in, because
    smtplib hands such a reply to its caller: ``SMTP("host")`` greeted with
    ``199`` raises ``SMTPConnectError(199, ...)``): ``code`` is the offending
    line's three leading digits (None unless it starts with three ASCII
    digits), ``lines`` the text after the code of every line of the reply up
    to and including that one.
    """

    def __init__(self, message: str, code: int | None, lines: tuple[str, ...]) -> None:
        super().__init__(message)
        self.code = code
        self.lines = lines


class ConnectionClosed(MailwireError, ConnectionError):
    """The peer closed the connection (or we did) before the exchange ended."""


class SMTPError(MailwireError):
    """A refusal, carried as a reply.

    Backends raise ``SMTPError(550, "5.1.1", "No such user")``; clients raise
    subclasses of it when the server refuses.
    """

    def __init__(
        self,
        code: int | Reply,
        enhanced: str | EnhancedStatus | None = None,
        text: str = "",
    ) -> None:
        self.reply = code if isinstance(code, Reply) else Reply.of(code, enhanced, text)
        super().__init__(str(self.reply))

    @property
    def code(self) -> int:
        return self.reply.code

    @property
    def enhanced(self) -> EnhancedStatus | None:
        return self.reply.enhanced

    @property
    def text(self) -> str:
        return self.reply.text


class SenderRefused(SMTPError):
    """MAIL FROM was refused; nothing was delivered."""

    def __init__(self, reply: Reply, sender: str) -> None:
        super().__init__(reply)
        self.sender = sender


class RecipientsRefused(SMTPError):
    """Every recipient was refused; nothing was delivered.

    ``result`` holds each recipient's reply.
    """

    def __init__(self, result: SendResult) -> None:
        first = next(iter(result.recipients.values()))
        super().__init__(first)
        self.result = result

    def __str__(self) -> str:
        return "all recipients refused: " + "; ".join(
            f"{rcpt}: {reply}" for rcpt, reply in self.result.recipients.items()
        )


class DataRefused(SMTPError):
    """The message content was refused after the recipients were accepted."""

    def __init__(self, reply: Reply, result: SendResult | None = None) -> None:
        super().__init__(reply)
        self.result = result


class TLSRequiredError(MailwireError):
    """TLS was required (or AUTH over plaintext refused) and is not available."""


class AuthenticationError(SMTPError):
    """The server refused our credentials, or no common mechanism exists."""


class NotSupportedError(MailwireError):
    """The message needs an extension the server did not advertise
    (SMTPUTF8 for non-ASCII addresses, DSN, BINARYMIME, REQUIRETLS ...)."""


class PoolClosed(MailwireError, RuntimeError):
    """The pool was closed before this message was handed to a connection:
    it was not sent. (A ``RuntimeError`` too, as it was first.)"""
