"""The events both protocol roles speak in.

A client core is given commands (``Ehlo``, ``Mail`` ...) and turns them into
bytes; a server core turns bytes into the same command types. Replies travel
the other way as ``mailwire.reply.Reply``. Message content is ``MessageData``
chunks followed by ``EndOfData`` (after DATA) or framed by ``Bdat``.

A server core also hands its driver what it decided or found beyond commands:
``EndOfChunk`` and ``EndOfMessage`` (the end of a BDAT chunk that is not the
last, and the end of a whole message), ``ContentRefused`` (a message refused
part-way: what was handed out of it is void), ``AuthChallenge`` (a 334 the SASL
exchange asks for), ``Credentials`` (what the client proved, for the driver
to judge), ``Rejected`` (a refusal the core decided) and ``Closed``.

Every event is a frozen, slotted dataclass: cheap to make, safe to share,
comparable in tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Union

from ..reply import Reply
from ..sasl import Credentials
from .params import MailOptions, RcptOptions

__all__ = [
    "Ehlo", "Helo", "Lhlo", "Mail", "Rcpt", "Data", "Bdat", "MessageData", "EndOfData",
    "Rset", "Noop", "Quit", "Vrfy", "Expn", "Help", "StartTLS", "Auth", "AuthResponse",
    "RawCommand", "Rejected", "Closed", "NeedData", "NEED_DATA", "Command", "Event",
    "Reply", "EndOfChunk", "EndOfMessage", "AuthChallenge", "Credentials", "ContentRefused",
]


@dataclass(frozen=True, slots=True)
class Ehlo:
    name: str


@dataclass(frozen=True, slots=True)
class Helo:
    name: str


@dataclass(frozen=True, slots=True)
class Lhlo:
    """LMTP's greeting (RFC 2033 4.1)."""

    name: str


@dataclass(frozen=True, slots=True)
class Mail:
    """MAIL FROM; ``address`` is the path without brackets ("" is the null path)."""

    address: str
    options: MailOptions = field(default_factory=MailOptions)


@dataclass(frozen=True, slots=True)
class Rcpt:
    address: str
    options: RcptOptions = field(default_factory=RcptOptions)


@dataclass(frozen=True, slots=True)
class Data:
    pass


@dataclass(frozen=True, slots=True)
class Bdat:
    """BDAT (RFC 3030): ``size`` octets of raw content follow the command line."""

    size: int
    last: bool = False


@dataclass(frozen=True, slots=True)
class MessageData:
    """A piece of message content.

    Client side: plain message bytes (the core dot-stuffs them after DATA).
    Server side: the decoded content, dot-stuffing removed.
    """

    data: bytes


@dataclass(frozen=True, slots=True)
class EndOfData:
    """The end of a DATA body (client: send the terminator; server: it arrived)."""

    pass


@dataclass(frozen=True, slots=True)
class EndOfChunk:
    """Server side: the octets of a BDAT chunk that is not the LAST have all
    arrived; the driver answers it (250, RFC 3030 2). The message goes on."""

    pass


@dataclass(frozen=True, slots=True)
class EndOfMessage:
    """Server side: a message is whole (DATA's terminator, or the end of the
    ``BDAT ... LAST`` chunk); the driver delivers it and answers (LMTP: once
    per accepted recipient)."""

    pass


@dataclass(frozen=True, slots=True)
class ContentRefused:
    """Server side: the core refused a message part-way through its content
    (its size, a line too long, a bare CR or LF), so what was handed out of
    it is void and nothing of it may be stored. No reply is due yet: the
    core reads on to the end of the content's framing (DATA's terminator,
    RFC 5321 4.1.1.4; the rest of a BDAT chunk, RFC 3030 2), swallowing it,
    then hands out ``Rejected(reply)``. It comes only while more content is
    to come: a refusal found with the end in hand is that ``Rejected`` at once.
    """

    reply: Reply


@dataclass(frozen=True, slots=True)
class Rset:
    pass


@dataclass(frozen=True, slots=True)
class Noop:
    argument: str = ""


@dataclass(frozen=True, slots=True)
class Quit:
    pass


@dataclass(frozen=True, slots=True)
class Vrfy:
    argument: str


@dataclass(frozen=True, slots=True)
class Expn:
    argument: str


@dataclass(frozen=True, slots=True)
class Help:
    argument: str = ""


@dataclass(frozen=True, slots=True)
class StartTLS:
    pass


@dataclass(frozen=True, slots=True)
class Auth:
    """AUTH (RFC 4954). ``initial`` is the raw (not base64) initial response;
    ``None`` sends none, ``b""`` sends the empty response ``=``."""

    mechanism: str
    initial: bytes | None = None


@dataclass(frozen=True, slots=True)
class AuthResponse:
    """A line answering a 334 challenge; ``None`` cancels the exchange (``*``)."""

    data: bytes | None


@dataclass(frozen=True, slots=True)
class RawCommand:
    """Any other command, sent or received verbatim (``smtplib.docmd``)."""

    verb: str
    argument: str = ""


@dataclass(frozen=True, slots=True)
class Rejected:
    """Server side: the core refused something itself (syntax, sequence,
    length, a parameter or command the server does not offer, content over a
    limit).

    The driver sends ``reply`` and carries on; ``close`` says the connection
    should end after it (421).
    """

    reply: Reply
    close: bool = False


@dataclass(frozen=True, slots=True)
class AuthChallenge:
    """Server side: the SASL exchange the core runs asks the client for more;
    the driver sends ``reply`` (334, RFC 4954 4)."""

    reply: Reply


@dataclass(frozen=True, slots=True)
class Closed:
    """The peer closed its side of the connection."""

    pass


class NeedData:
    """``next_event()`` found no complete event in what it has received."""

    # A ClassVar, not an instance attribute: the compiled build (mypyc) would
    # otherwise give every instance a slot for it.
    _instance: ClassVar["NeedData | None"] = None

    def __new__(cls) -> "NeedData":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = NeedData()

Command = Union[
    Ehlo, Helo, Lhlo, Mail, Rcpt, Data, Bdat, Rset, Noop, Quit, Vrfy, Expn, Help,
    StartTLS, Auth, AuthResponse, RawCommand,
]
Event = Union[
    Command, MessageData, EndOfData, EndOfChunk, EndOfMessage, ContentRefused, AuthChallenge, Credentials, Reply,
    Rejected, Closed,
]
