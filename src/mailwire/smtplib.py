"""A drop-in for CPython's ``smtplib`` (3.10 to 3.13), on mailwire's engine.

``import mailwire.smtplib as smtplib`` and a program keeps working: the same
names, the same signatures (the methods carry type comments instead of
annotations so that ``inspect.signature`` equals the stdlib's), the same
return values, exceptions, wire bytes and ``set_debuglevel`` output. The
exception classes *are* the stdlib's (re-exported), so a library that catches
``smtplib.SMTPException`` still catches what this module raises.

It is the running interpreter's smtplib that it stands in for. Where that
module changed between the versions we support, the drop-in changes with it:
from 3.12 ``starttls(*, context=None)`` and ``SMTP_SSL(host, port,
local_hostname, *, timeout, source_address, context)`` (no keyfile/certfile,
no such attributes); from 3.13 MAIL and RCPT go out as ``mail from:`` and
``rcpt to:`` (before: ``mail FROM:``, ``rcpt TO:``). Everything smtplib takes
from other modules (``email.utils.parseaddr`` in ``quoteaddr``, the email
generator) is the running interpreter's too. CPython's own ``test_smtplib``
of each of these versions passes against this module, unchanged.

Programs hook smtplib, and the hooks keep working: every byte goes out
through ``send()`` (commands as the ``str`` line, the message as bytes), every
command through ``putcmd()``, and each method calls ``putcmd``, ``docmd``,
``send`` and ``getreply`` as smtplib's does, so a subclass that overrides one
of them (Django's tests capture the wire through ``send``) sees the same calls
with the same arguments.

How it works. An ``SMTP`` object holds a ``SyncTransport``: the socket and
sans-I/O ``ClientConnection`` pair the native ``SMTPClient`` uses. The core
formats every command: typed events where it tracks state (EHLO/HELO/LHLO,
MAIL, RCPT, RSET, DATA, STARTTLS, AUTH and its answers), each spelled the way
smtplib spells it (``mail FROM:<a> size=10``) through
``ClientConnection.send(event, spelling=RawCommand(...))``, and a plain
``RawCommand`` for everything else (``putcmd``, ``docmd``, ``noop`` ...).
``putcmd()`` hands the line to the core, which checks and tracks it, then
passes it to ``send()``, which writes it: the bytes the core formats are the
very ones ``send()`` makes of smtplib's ``str``. A ``send()`` called by the
program itself is written as it is, untracked, as smtplib writes it. The
core dot-stuffs the message and parses every reply; this module only turns
replies into smtplib's ``(code, bytes)`` and applies smtplib's rules on top.
``sock`` stays the live socket: a program may read it or replace it (to wrap
it in TLS itself after ``docmd("STARTTLS")``), and the transport follows; the
core then drops what the server sent after its 220, as smtplib's
``file = None`` did.

smtplib lets a program put any line on the wire at any time; the core's state
table does not. Where they disagree (an AUTH or DATA exchange a program
abandoned half way, stale LMTP replies, a socket assigned by hand) the line
still goes out as smtplib would send it, formatted by the core but untracked;
and while the server waits for an answer to an AUTH challenge, whatever is
sent is tracked as that answer, which is what the server takes it for.

The one private stdlib name used is ``socket._GLOBAL_DEFAULT_TIMEOUT``: the
``timeout`` defaults must be that very object, for the signatures and for
``socket.create_connection``.

Behavioural differences from the native client (``mailwire.SMTPClient``),
all of them smtplib's behaviour, kept on purpose:

* TLS is what the program asks for: nothing unless it calls ``starttls()``
  or uses ``SMTP_SSL``, and without a ``context`` neither checks the
  certificate or the host name (the stdlib's unverified context, built with
  public ``ssl`` API). A refused STARTTLS raises ``SMTPResponseException``
  and the session may go on in plaintext. The native client requires
  STARTTLS, verifies, and never downgrades.
* AUTH crosses a plaintext connection if asked. ``login()`` tries CRAM-MD5,
  PLAIN and LOGIN in turn (every advertised one, until one succeeds);
  credentials must be ASCII (``UnicodeEncodeError``); an empty CRAM-MD5
  challenge is answered. The native client picks one mechanism, refuses
  plaintext AUTH, sends UTF-8 and refuses a replayable empty challenge.
* Addresses go out as ``quoteaddr`` makes them and MAIL/RCPT options as the
  strings given, unchecked; the native client refuses an address with ``<``,
  ``>`` or spaces outside a quoted local part and formats typed options.
* Commands are spelled as smtplib spells them (``ehlo``, ``mail FROM:``,
  from 3.13 ``mail from:``, ``data``, ``size=N``), one at a time, waiting
  for each reply: no PIPELINING, no CHUNKING/BDAT. The EHLO name comes from
  ``socket.getfqdn()`` (which may wait on DNS), not from the socket.
* The message is sent as given: no BODY=8BITMIME added, no 7-bit
  re-encoding for a server without 8BITMIME, no local SIZE check.
* Failures follow smtplib: ``sendmail`` returns the refused recipients and
  raises only when nothing can be delivered, the connection stays open after
  a refusal (with an RSET), a positive reply to DATA other than 354 is an
  ``SMTPDataError`` (not a protocol error), and a program may go on sending
  whatever it likes, even where the core's state table would refuse it.
* One socket timeout (``timeout``, by default the global socket default),
  not the RFC 5321 per-command timeouts; a reply line may be 8192 octets
  (smtplib's limit), not 2048. Reading a reply, though, it is a deadline for
  the whole reply, as in the native client, where smtplib's bounds each
  socket read (a server sending a byte every few seconds held it for ever):
  a reply not complete in time raises smtplib's
  ``SMTPServerDisconnected("Connection unexpectedly closed: timed out")``.
  No test of CPython's ``test_smtplib`` needs the per-read meaning, so none
  is kept. The connect, the TLS handshake and each ``send()`` are bounded as
  smtplib bounds them, and ``sock.gettimeout()`` stays ``timeout``.
* LMTP: ``data()`` returns the first per-recipient reply, as smtplib does
  (all of them are in ``lmtp_replies``).

Behavioural differences from CPython's smtplib (the same on every version):

* Message content goes through the core's dot-stuffer, which also turns a
  bare CR or LF in a *bytes* message into CRLF (smtplib does that for ``str``
  only and sends bytes as they are). A bare line ending can make a lax server
  see an end of data that the client never meant (SMTP smuggling). ``size=``
  still declares ``len(msg)``, as smtplib computes it.
* Replies are parsed by the core, strictly: lines end with CRLF (a server
  ending them with a bare LF is not understood), codes are 2xx-5xx and all
  lines of a reply share one. A reply that breaks these rules is handed out
  as smtplib reads it (its code, -1 if it has no three digits, and its text:
  a ``199`` greeting raises ``SMTPConnectError(199, ...)``), but it also
  closes the connection, as RFC 5321 4.2.1 has a client treat it as fatal;
  smtplib read on. A whole reply over 64 KiB or a connection closed in the
  middle of a reply closes the connection and raises
  ``SMTPServerDisconnected("Connection unexpectedly closed: <why>")``, where
  smtplib read on or accepted an unterminated last line. A line longer than
  ``_MAXLINE`` (8192) raises smtplib's ``SMTPResponseException(500, "Line too
  long.")``.
* Control characters other than CR and LF (NUL, TAB, ESC, DEL ...) in a
  command are refused with ``ValueError`` (``mailwire.LocalProtocolError``)
  before anything is sent.
* ``file`` stays ``None`` and is never read: replies are read by the core,
  not through ``sock.makefile()`` (a program that assigns ``file`` to feed
  canned replies gets no effect). ``getreply()`` without a connection raises
  ``SMTPServerDisconnected('please run connect() first')`` (smtplib: an
  ``AttributeError``).
* LMTP: ``data()`` (and so ``sendmail``) reads every per-recipient reply and
  keeps them in ``LMTP.lmtp_replies`` (recipient -> ``(code, msg)``, for the
  recipients the server accepted). It returns the first, as smtplib does, and
  later ``getreply()`` calls return the others in order, as smtplib would read
  them from the socket; the difference is that ``data()`` waits for them all.
  If the server leaves half way, the replies it sent are still handed out
  first, and the next command finds the connection closed (smtplib would
  find out on reading).
* ``starttls()``: a failed TLS handshake closes the connection (``sock`` is
  ``None``); smtplib left the plaintext socket open.
* ``send_message`` takes its envelope from ``mailwire.client.message``: with
  no From/Sender header and no ``from_addr`` it raises ``ValueError`` (smtplib
  sent ``MAIL FROM:<None>``); empty addresses (``undisclosed-recipients:;``)
  are not sent as ``RCPT TO:<>``; a ``compat32`` message with non-ASCII
  addresses is flattened with the SMTPUTF8 policy (smtplib raised
  ``TypeError``).
* Debug output is rebuilt from parsed replies: a last line without text is
  shown as ``b'250\\r\\n'`` whether the server sent ``250`` or ``250 ``, and
  the lines of a reply that broke the rules are not shown (its retcode line
  is).
"""

from __future__ import annotations

import base64
import datetime
import email.utils
import hmac
import os
import re
import socket
import ssl
import sys
from collections import deque
from email.base64mime import body_encode as encode_base64
from email.message import Message
from smtplib import (
    SMTPAuthenticationError, SMTPConnectError, SMTPDataError, SMTPException, SMTPHeloError,
    SMTPNotSupportedError, SMTPRecipientsRefused, SMTPResponseException, SMTPSenderRefused,
    SMTPServerDisconnected,
)
from collections.abc import Callable, Sequence
from typing import Any, Union

from .client.message import envelope_from_headers, flatten, needs_smtputf8
from .client.transport import SyncTransport
from .errors import ConnectionClosed, MalformedReply, RemoteProtocolError
from .limits import DEFAULT_LIMITS
from .protocol.buffer import LineTooLong
from .protocol.capabilities import Capabilities
from .protocol.commands import format_command
from .protocol.data import DotStuffer, stuff
from .protocol.events import (
    Auth, AuthResponse, Command, Data, Ehlo, EndOfData, Helo, Lhlo, Mail, MessageData,
    RawCommand, Rcpt, Rset, StartTLS,
)
from .protocol.state import CLIENT_SEND, ClientState
from .reply import Reply

__all__ = ["SMTPException", "SMTPNotSupportedError", "SMTPServerDisconnected", "SMTPResponseException",
           "SMTPSenderRefused", "SMTPRecipientsRefused", "SMTPDataError",
           "SMTPConnectError", "SMTPHeloError", "SMTPAuthenticationError",
           "quoteaddr", "quotedata", "SMTP", "SMTP_SSL"]

SMTP_PORT = 25
SMTP_SSL_PORT = 465
LMTP_PORT = 2003
CRLF = "\r\n"
bCRLF = b"\r\n"
_MAXLINE = 8192  # smtplib's reply line limit, CRLF included; read when a connection starts
_MAXCHALLENGE = 5  # AUTH challenges answered before giving up
_have_ssl = True

OLDSTYLE_AUTH = re.compile(r"auth=(.*)", re.I)

# Where CPython's smtplib changed between the versions we support, the drop-in
# does what the running interpreter's does: 3.12 dropped starttls()'s and
# SMTP_SSL's keyfile/certfile (and made SMTP_SSL's later arguments
# keyword-only); 3.13 spells MAIL and RCPT "mail from:" and "rcpt to:".
_MAIL_FROM, _RCPT_TO = ("from:", "to:") if sys.version_info >= (3, 13) else ("FROM:", "TO:")

# The stdlib's "no timeout given" sentinel: create_connection() then leaves the
# socket at the global default. Signatures must carry this very object.
_DEFAULT_TIMEOUT: Any = getattr(socket, "_GLOBAL_DEFAULT_TIMEOUT")

_ReplyTuple = tuple[int, bytes]
_Read = Union[Reply, MalformedReply]  # a reply as read: parsed, or refused by the core
_AuthObject = Callable[..., Union[str, None]]


def quoteaddr(addrstring):
    # type: (str) -> str
    """Quote a subset of the email addresses defined by RFC 821."""
    displayname, addr = email.utils.parseaddr(addrstring)
    if (displayname, addr) == ('', ''):
        # parseaddr couldn't parse it, use it as is and hope for the best.
        if addrstring.strip().startswith('<'):
            return addrstring
        return "<%s>" % addrstring
    return "<%s>" % addr


def _addr_only(addrstring: str) -> str:
    displayname, addr = email.utils.parseaddr(addrstring)
    if (displayname, addr) == ('', ''):
        return addrstring
    return addr


def quotedata(data):
    # type: (str) -> str
    """Quote data for email: double leading '.', and turn '\\n' or '\\r' into CRLF."""
    return DotStuffer().feed(data.encode("utf-8", "surrogatepass")).decode("utf-8", "surrogatepass")


def _fix_eols(data: str) -> str:
    """smtplib's conversion of a ``str`` message: lone CR and LF become CRLF."""
    return re.sub(r'(?:\r\n|\n|\r(?!\n))', CRLF, data)


def _wire(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _as_tuple(reply: _Read) -> _ReplyTuple:
    """smtplib's shape: each line's text stripped, joined by LF; for a reply
    the core refused, what smtplib reads in it (-1 for a code it cannot read)."""
    code = reply.code if reply.code is not None else -1
    return code, b"\n".join(_wire(line).strip(b" \t\r\n") for line in reply.lines)


def _features(ehlo_resp: bytes) -> dict[str, str]:
    """``esmtp_features`` from an EHLO reply, parsed by the core as smtplib would."""
    lines = tuple(ehlo_resp.decode("latin-1").split("\n"))
    return dict(Capabilities.from_reply(Reply(250, lines)).features)


def _hello(verb: str, name: str) -> Ehlo | Helo | Lhlo:
    """The typed greeting for ``ehlo_msg`` (LMTP's is ``lhlo``)."""
    verb = verb.lower()
    return Lhlo(name) if verb == "lhlo" else Helo(name) if verb == "helo" else Ehlo(name)


def _unverified_context(certfile: Any = None, keyfile: Any = None) -> ssl.SSLContext:
    """What smtplib's ``ssl._create_stdlib_context()`` builds, with public API."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if keyfile and not certfile:
        raise ValueError("certfile must be specified")
    if certfile or keyfile:
        context.load_cert_chain(certfile, keyfile)
    keylog = os.environ.get("SSLKEYLOGFILE")
    if keylog and not sys.flags.ignore_environment:
        context.keylog_filename = keylog
    return context


def _check_tls_args(context: Any, keyfile: Any, certfile: Any) -> None:
    if context is not None and keyfile is not None:
        raise ValueError("context and keyfile arguments are mutually exclusive")
    if context is not None and certfile is not None:
        raise ValueError("context and certfile arguments are mutually exclusive")


class SMTP:
    """A connection to an SMTP or ESMTP server, with smtplib's API.

    ``helo_resp``/``ehlo_resp`` hold the last HELO/EHLO reply text,
    ``does_esmtp`` is true after a successful EHLO, ``esmtp_features`` maps
    each advertised extension (lower case) to its parameters.
    """

    debuglevel = 0

    sock: socket.socket | None = None
    file: Any = None
    helo_resp: bytes | None = None
    ehlo_msg = "ehlo"
    ehlo_resp: bytes | None = None
    does_esmtp = False
    default_port = SMTP_PORT

    _lmtp = False
    _transport: SyncTransport | None = None
    # What the next putcmd(cmd, args) is to the core: (event, cmd, args).
    _intent: tuple[Command, str, str] | None = None
    user: str
    password: str
    local_hostname: str

    def __init__(self, host='', port=0, local_hostname=None,
                 timeout=_DEFAULT_TIMEOUT,
                 source_address=None):
        # type: (str, int, str | None, float | None, tuple[str, int] | None) -> None
        """Connect to ``host`` if given (SMTPConnectError unless it greets with 220)."""
        self._host = host
        self.timeout = timeout
        self.esmtp_features: dict[str, str] = {}
        self.command_encoding = 'ascii'
        self.source_address = source_address
        self._auth_challenge_count = 0
        self._stash: deque[_Read] = deque()  # replies read but not yet handed out (LMTP)
        self._accepted: list[str] = []  # recipients accepted in this transaction

        if host:
            (code, msg) = self.connect(host, port)
            if code != 220:
                self.close()
                raise SMTPConnectError(code, msg)
        if local_hostname is not None:
            self.local_hostname = local_hostname
        else:
            # RFC 2821: the FQDN, else a domain literal such as [A.B.C.D].
            fqdn = socket.getfqdn()
            if '.' in fqdn:
                self.local_hostname = fqdn
            else:
                addr = '127.0.0.1'
                try:
                    addr = socket.gethostbyname(socket.gethostname())
                except socket.gaierror:
                    pass
                self.local_hostname = '[%s]' % addr

    def __enter__(self):
        # type: () -> SMTP
        return self

    def __exit__(self, *args):
        # type: (*object) -> None
        try:
            code, message = self.docmd("QUIT")
            if code != 221:
                raise SMTPResponseException(code, message)
        except SMTPServerDisconnected:
            pass
        finally:
            self.close()

    def set_debuglevel(self, debuglevel):
        # type: (int) -> None
        """1 prints the dialog on stderr; 2 also timestamps each line."""
        self.debuglevel = debuglevel

    def _print_debug(self, *args: object) -> None:
        if self.debuglevel > 1:
            print(datetime.datetime.now().time(), *args, file=sys.stderr)
        else:
            print(*args, file=sys.stderr)

    # -- the connection --------------------------------------------------

    def _get_socket(self, host: str, port: int, timeout: Any) -> socket.socket:
        if timeout is not None and not timeout:
            raise ValueError('Non-blocking socket (timeout=0) is not supported')
        if self.debuglevel > 0:
            self._print_debug('connect: to', (host, port), self.source_address)
        return socket.create_connection((host, port), timeout, self.source_address)

    def connect(self, host='localhost', port=0, source_address=None):
        # type: (str, int, tuple[str, int] | None) -> tuple[int, bytes]
        """Connect to ``host`` (``"host:port"`` works too) and read the greeting."""
        if source_address:
            self.source_address = source_address
        if not port and (host.find(':') == host.rfind(':')):
            i = host.rfind(':')
            if i >= 0:
                host, port_text = host[:i], host[i + 1:]
                try:
                    port = int(port_text)
                except ValueError:
                    raise OSError("nonnumeric port")
        if not port:
            port = self.default_port
        sys.audit("smtplib.connect", self, host, port)
        self._attach(self._get_socket(host, port, self.timeout))
        (code, msg) = self.getreply()
        if self.debuglevel > 0:
            self._print_debug('connect:', repr(msg))
        return (code, msg)

    def _attach(self, sock: socket.socket) -> None:
        """Start a session on ``sock``: a fresh transport and core."""
        self.sock = sock
        self.file = None
        self._transport = None
        self._stash.clear()
        self._live()

    def _live(self) -> SyncTransport | None:
        """The transport around ``self.sock``, following a socket the program swapped in."""
        sock = self.sock
        if not sock:
            return None
        transport = self._transport
        if transport is None:
            limits = DEFAULT_LIMITS.with_(reply_line=_MAXLINE)
            transport = SyncTransport(sock, lmtp=self._lmtp, limits=limits, timeout=sock.gettimeout())
            self._transport = transport
        elif transport.sock is not sock:
            transport.sock = sock
            if transport.core.state is ClientState.TLS_HANDSHAKE:
                transport.core.tls_established()  # the program wrapped it after docmd("STARTTLS")
        return transport

    def close(self):
        # type: () -> None
        """Close the connection to the SMTP server."""
        try:
            file = self.file
            self.file = None
            if file:
                file.close()
        finally:
            sock = self.sock
            self.sock = None
            self._transport = None
            self._stash.clear()
            if sock:
                sock.close()

    # -- writing ---------------------------------------------------------
    #
    # Every byte goes out through send(), from the same callers as in smtplib
    # (putcmd, and data() for the content), and every command through putcmd()
    # or docmd() where smtplib's method uses them: a program that overrides one
    # of them on a subclass (Django's tests capture the wire through send) sees
    # what it would see with smtplib. The core checks and tracks each command
    # line in putcmd(), before send() writes it.

    def send(self, s):
        # type: (str | bytes) -> None
        """Send ``s`` to the server as it is (a ``str`` in ``command_encoding``)."""
        if self.debuglevel > 0:
            self._print_debug('send:', repr(s))
        transport = self._live()
        if transport is None:
            raise SMTPServerDisconnected('please run connect() first')
        if isinstance(s, str):
            s = s.encode(self.command_encoding)
        data = bytes(s)
        sys.audit("smtplib.send", self, data)
        try:
            transport.write_raw(data)
        except OSError:
            self.close()
            raise SMTPServerDisconnected('Server not connected')

    def putcmd(self, cmd, args=""):
        # type: (str, str) -> None
        """Send a command to the server."""
        s = cmd if args == "" else f'{cmd} {args}'
        if '\r' in s or '\n' in s:
            s = s.replace('\n', '\\n').replace('\r', '\\r')
            raise ValueError(f'command and arguments contain prohibited newline characters: {s}')
        line = f'{s}{CRLF}'
        intent, self._intent = self._intent, None
        event = intent[0] if intent is not None and intent[1:] == (cmd, args) else None
        if event is None and isinstance(cmd, str) and cmd.upper() == "STARTTLS" and args == "":
            # A program doing STARTTLS by hand: the core then drops whatever the
            # server sent after its 220, once the program swaps in the TLS socket.
            event = StartTLS()
        transport = self._live()
        if transport is not None:
            try:
                line.encode(self.command_encoding)
            except UnicodeEncodeError:
                pass  # send() raises it, after its debug line, as smtplib's does
            else:
                self._track(transport, event, cmd, args)
        self.send(line)

    def _expect(self, event: Command, cmd: str, args: str = "") -> None:
        """Have the core track the next ``putcmd(cmd, args)`` as ``event``.

        putcmd() keeps smtplib's signature, so the typed event travels beside
        it. The next putcmd() takes it only for that very line: when a
        program's override changes the line or sends another first, the
        event is dropped and its lines are tracked as plain commands.
        """
        self._intent = (event, cmd, args)

    def _track(self, transport: SyncTransport, event: Command | None, cmd: str, args: str) -> None:
        """Tell the core that smtplib's line ``cmd args`` goes out, as ``event``.

        The core formats the line, refusing control characters before any
        byte is written, and tracks it; its bytes are the very ones send()
        makes of the ``str`` smtplib hands it, so send() writes those.
        """

        def on_wire(text: str) -> str:  # the core writes UTF-8: carry other codecs' bytes through
            return text.encode(self.command_encoding).decode("utf-8", "surrogateescape")

        spelling = RawCommand(on_wire(f"{cmd}"), on_wire(f"{args}") if args != "" else "")
        core = transport.core
        if core.state is ClientState.AUTH_CHALLENGE and not isinstance(event, AuthResponse):
            event = AuthResponse(None)  # the server takes any line now as the answer
        tracked = event if event is not None else spelling
        if type(tracked) in CLIENT_SEND[core.state]:
            core.send(tracked, spelling=spelling)
        else:
            format_command(spelling)  # out of step (see the module docstring): checked, untracked

    # -- reading ---------------------------------------------------------

    def getreply(self):
        # type: () -> tuple[int, bytes]
        """The next reply as ``(code, text)``, multi-line text joined by LF."""
        reply = self._stash.popleft() if self._stash else self._read()
        if self.debuglevel > 0 and isinstance(reply, Reply):
            last = len(reply.lines) - 1
            for i, line in enumerate(reply.lines):
                sep = b"-" if i < last else (b" " if line else b"")
                self._print_debug('reply:', repr(b"%d%s%s\r\n" % (reply.code, sep, _wire(line))))
        errcode, errmsg = _as_tuple(reply)
        if self.debuglevel > 0:
            self._print_debug('reply: retcode (%s); Msg: %a' % (errcode, errmsg))
        return errcode, errmsg

    def _read(self) -> _Read:
        transport = self._live()
        if transport is None:
            raise SMTPServerDisconnected('please run connect() first')
        try:
            return transport.read_reply()
        except MalformedReply as err:
            # RFC 5321 4.2.1: fatal, so the connection ends; but smtplib hands
            # such a reply to its caller (a "199" greeting is SMTPConnectError).
            self.close()
            return err
        except RemoteProtocolError as err:
            self.close()
            if isinstance(err.__cause__, LineTooLong):
                raise SMTPResponseException(500, "Line too long.")
            raise SMTPServerDisconnected("Connection unexpectedly closed: " + str(err))
        except ConnectionClosed:
            self.close()
            raise SMTPServerDisconnected("Connection unexpectedly closed")
        except OSError as err:
            self.close()
            raise SMTPServerDisconnected("Connection unexpectedly closed: " + str(err))

    def docmd(self, cmd, args=""):
        # type: (str, str) -> tuple[int, bytes]
        """Send a command, and return its response code."""
        self.putcmd(cmd, args)
        return self.getreply()

    def _docmd(self, event: Command, cmd: str, args: str = "") -> _ReplyTuple:
        """smtplib's ``docmd(cmd, args)``, tracked by the core as ``event``."""
        self._expect(event, cmd, args)
        return self.docmd(cmd, args)

    def _putcmd(self, event: Command, cmd: str, args: str = "") -> _ReplyTuple:
        """smtplib's ``putcmd(cmd, args)`` then ``getreply()``, tracked as ``event``."""
        self._expect(event, cmd, args)
        self.putcmd(cmd, args)
        return self.getreply()

    # -- standard commands -----------------------------------------------

    def helo(self, name=''):
        # type: (str) -> tuple[int, bytes]
        """SMTP 'helo' command, with the local host name by default."""
        name = name or self.local_hostname
        self._accepted = []
        (code, msg) = self._putcmd(Helo(name), "helo", name)
        self.helo_resp = msg
        return (code, msg)

    def ehlo(self, name=''):
        # type: (str) -> tuple[int, bytes]
        """SMTP 'ehlo' command (LMTP: 'lhlo'); fills ``esmtp_features``."""
        self.esmtp_features = {}
        name = name or self.local_hostname
        self._accepted = []
        (code, msg) = self._putcmd(_hello(self.ehlo_msg, name), self.ehlo_msg, name)
        # RFC 1869: some badly written MTAs disconnect on EHLO.
        if code == -1 and len(msg) == 0:
            self.close()
            raise SMTPServerDisconnected("Server not connected")
        self.ehlo_resp = msg
        if code != 250:
            return (code, msg)
        self.does_esmtp = True
        self.esmtp_features.update(_features(msg))
        return (code, msg)

    def has_extn(self, opt):
        # type: (str) -> bool
        """Does the server support a given SMTP service extension?"""
        return opt.lower() in self.esmtp_features

    def help(self, args=''):
        # type: (str) -> bytes
        """SMTP 'help' command: the server's help text."""
        self.putcmd("help", args)
        return self.getreply()[1]

    def rset(self):
        # type: () -> tuple[int, bytes]
        """SMTP 'rset' command -- resets session."""
        self.command_encoding = 'ascii'
        self._accepted = []
        return self._docmd(Rset(), "rset")

    def _rset(self) -> None:
        """RSET, ignoring a disconnect: that shows up on the next command."""
        try:
            self.rset()
        except SMTPServerDisconnected:
            pass

    def noop(self):
        # type: () -> tuple[int, bytes]
        """SMTP 'noop' command -- doesn't do anything :>"""
        return self.docmd("noop")

    def mail(self, sender, options=()):
        # type: (str, Sequence[str]) -> tuple[int, bytes]
        """SMTP 'mail' command; SMTPUTF8 among ``options`` needs the extension."""
        optionlist = ''
        if options and self.does_esmtp:
            if any(x.lower() == 'smtputf8' for x in options):
                if self.has_extn('smtputf8'):
                    self.command_encoding = 'utf-8'
                else:
                    raise SMTPNotSupportedError('SMTPUTF8 not supported by server')
            optionlist = ' ' + ' '.join(options)
        self._accepted = []
        args = "%s%s%s" % (_MAIL_FROM, quoteaddr(sender), optionlist)
        return self._putcmd(Mail(_addr_only(sender)), "mail", args)

    def rcpt(self, recip, options=()):
        # type: (str, Sequence[str]) -> tuple[int, bytes]
        """SMTP 'rcpt' command -- indicates 1 recipient for this mail."""
        optionlist = ''
        if options and self.does_esmtp:
            optionlist = ' ' + ' '.join(options)
        args = "%s%s%s" % (_RCPT_TO, quoteaddr(recip), optionlist)
        reply = self._putcmd(Rcpt(_addr_only(recip)), "rcpt", args)
        if 200 <= reply[0] < 400:
            self._accepted.append(recip)
        return reply

    def data(self, msg):
        # type: (str | bytes) -> tuple[int, bytes]
        """SMTP 'DATA' command: send the message, return the final reply.

        SMTPDataError unless the server answers DATA with 354. The core
        dot-stuffs the message and ends it; a ``str`` must be ASCII.
        """
        (code, repl) = self._putcmd(Data(), "data")
        if self.debuglevel > 0:
            self._print_debug('data:', (code, repl))
        if code != 354:
            raise SMTPDataError(code, repl)
        if isinstance(msg, str):
            msg = _fix_eols(msg).encode('ascii')
        self.send(self._content(bytes(msg)))
        (code, repl) = self._data_reply()
        if self.debuglevel > 0:
            self._print_debug('data:', (code, repl))
        return (code, repl)

    def _content(self, msg: bytes) -> bytes:
        """The message on the wire, dot-stuffed and ended by the core."""
        transport = self._live()
        # smtplib ends the content with CRLF, so an empty message is one empty line.
        body = msg or bCRLF
        if transport is not None and transport.core.state is ClientState.CONTENT:
            core = transport.core
            return core.send(MessageData(body)) + core.send(EndOfData())
        return stuff(body)  # out of step (see the module docstring), or not connected

    def _data_reply(self) -> _ReplyTuple:
        return self.getreply()

    def verify(self, address):
        # type: (str) -> tuple[int, bytes]
        """SMTP 'verify' command -- checks for address validity."""
        self.putcmd("vrfy", _addr_only(address))
        return self.getreply()

    vrfy = verify

    def expn(self, address):
        # type: (str) -> tuple[int, bytes]
        """SMTP 'expn' command -- expands a mailing list."""
        self.putcmd("expn", _addr_only(address))
        return self.getreply()

    def ehlo_or_helo_if_needed(self):
        # type: () -> None
        """EHLO, then HELO if that fails, unless one was done; SMTPHeloError if both fail."""
        if self.helo_resp is None and self.ehlo_resp is None:
            if not (200 <= self.ehlo()[0] <= 299):
                (code, resp) = self.helo()
                if not (200 <= code <= 299):
                    raise SMTPHeloError(code, resp)

    # -- AUTH ------------------------------------------------------------

    def auth(self, mechanism, authobject, *, initial_response_ok=True):
        # type: (str, _AuthObject, bool) -> tuple[int, bytes]
        """Run one AUTH exchange; ``authobject(challenge)`` returns each answer.

        235 and 503 are returned; anything else raises SMTPAuthenticationError.
        """
        mechanism = mechanism.upper()
        initial_response: Any = (authobject() if initial_response_ok else None)
        if initial_response is not None:
            raw = initial_response.encode('ascii')
            response = encode_base64(raw, eol='')
            (code, resp) = self._docmd(Auth(mechanism, raw), "AUTH", mechanism + " " + response)
            self._auth_challenge_count = 1
        else:
            (code, resp) = self._docmd(Auth(mechanism), "AUTH", mechanism)
            self._auth_challenge_count = 0
        while code == 334:
            self._auth_challenge_count += 1
            challenge = base64.decodebytes(resp)
            answer: Any = authobject(challenge)
            raw = answer.encode('ascii')
            (code, resp) = self._docmd(AuthResponse(raw), encode_base64(raw, eol=''))
            if self._auth_challenge_count > _MAXCHALLENGE:
                raise SMTPException(
                    "Server AUTH mechanism infinite loop. Last response: " + repr((code, resp))
                )
        if code in (235, 503):
            return (code, resp)
        raise SMTPAuthenticationError(code, resp)

    def auth_cram_md5(self, challenge=None):
        # type: (bytes | None) -> str | None
        """CRAM-MD5 answer from ``self.user`` and ``self.password``."""
        if challenge is None:
            return None  # no initial response
        return self.user + " " + hmac.HMAC(self.password.encode('ascii'), challenge, 'md5').hexdigest()

    def auth_plain(self, challenge=None):
        # type: (bytes | None) -> str
        """PLAIN answer from ``self.user`` and ``self.password``."""
        return "\0%s\0%s" % (self.user, self.password)

    def auth_login(self, challenge=None):
        # type: (bytes | None) -> str
        """LOGIN answers: the user name first, then the password."""
        if challenge is None or self._auth_challenge_count < 2:
            return self.user
        return self.password

    def login(self, user, password, *, initial_response_ok=True):
        # type: (str, str, bool) -> tuple[int, bytes]
        """Log in, trying CRAM-MD5, PLAIN and LOGIN (in that order) as advertised.

        Raises SMTPNotSupportedError without AUTH, SMTPException without a
        common mechanism, and the last SMTPAuthenticationError if all fail.
        """
        self.ehlo_or_helo_if_needed()
        if not self.has_extn("auth"):
            raise SMTPNotSupportedError("SMTP AUTH extension not supported by server.")
        advertised_authlist = self.esmtp_features["auth"].split()
        preferred_auths = ['CRAM-MD5', 'PLAIN', 'LOGIN']
        authlist = [auth for auth in preferred_auths if auth in advertised_authlist]
        if not authlist:
            raise SMTPException("No suitable authentication method found.")
        # Some servers advertise mechanisms they do not support: try them all.
        self.user, self.password = user, password
        last_exception: SMTPAuthenticationError | None = None
        for authmethod in authlist:
            method_name = 'auth_' + authmethod.lower().replace('-', '_')
            try:
                (code, resp) = self.auth(
                    authmethod, getattr(self, method_name), initial_response_ok=initial_response_ok
                )
                if code in (235, 503):
                    return (code, resp)
            except SMTPAuthenticationError as e:
                last_exception = e
        assert last_exception is not None
        raise last_exception

    # -- STARTTLS --------------------------------------------------------

    if sys.version_info >= (3, 12):
        def starttls(self, *, context=None):
            # type: (ssl.SSLContext | None) -> tuple[int, bytes]
            """Switch to TLS. Without ``context``, certificates are NOT verified (as in smtplib)."""
            return self._starttls(None, None, context)
    else:
        def starttls(self, keyfile=None, certfile=None, context=None):
            # type: (str | None, str | None, ssl.SSLContext | None) -> tuple[int, bytes]
            """Switch to TLS. Without ``context``, certificates are NOT verified (as in smtplib)."""
            return self._starttls(keyfile, certfile, context)

    def _starttls(self, keyfile: Any, certfile: Any, context: ssl.SSLContext | None) -> _ReplyTuple:
        self.ehlo_or_helo_if_needed()
        if not self.has_extn("starttls"):
            raise SMTPNotSupportedError("STARTTLS extension not supported by server.")
        (resp, reply) = self._docmd(StartTLS(), "STARTTLS")
        if resp != 220:
            # RFC 3207: 501 syntax error, 454 TLS not available for now.
            raise SMTPResponseException(resp, reply)
        _check_tls_args(context, keyfile, certfile)
        if keyfile is not None or certfile is not None:
            import warnings
            warnings.warn("keyfile and certfile are deprecated, use a "
                          "custom context instead", DeprecationWarning, 3)
        if context is None:
            context = _unverified_context(certfile=certfile, keyfile=keyfile)
        transport = self._live()
        if transport is None:
            raise SMTPServerDisconnected('please run connect() first')
        try:
            if transport.core.state is ClientState.TLS_HANDSHAKE:
                transport.start_tls(context, self._host)
            else:  # out of step: the 220 was a stale reply
                transport.sock = context.wrap_socket(transport.sock, server_hostname=self._host)
        except BaseException:
            self.close()
            raise
        self.sock = transport.sock
        self.file = None
        # RFC 3207: forget everything learnt before TLS.
        self.helo_resp = None
        self.ehlo_resp = None
        self.esmtp_features = {}
        self.does_esmtp = False
        return (resp, reply)

    # -- whole transactions ----------------------------------------------

    def sendmail(self, from_addr, to_addrs, msg, mail_options=(),
                 rcpt_options=()):
        # type: (str, str | Sequence[str], str | bytes, Sequence[str], Sequence[str]) -> dict[str, tuple[int, bytes]]
        """One mail transaction; returns the refused recipients as ``{addr: (code, msg)}``.

        Raises SMTPHeloError, SMTPSenderRefused, SMTPRecipientsRefused (all
        refused), SMTPDataError or SMTPNotSupportedError as smtplib does,
        with an RSET after a refusal (or a close after a 421).
        """
        self.ehlo_or_helo_if_needed()
        esmtp_opts = []
        if isinstance(msg, str):
            msg = _fix_eols(msg).encode('ascii')
        if self.does_esmtp:
            if self.has_extn('size'):
                esmtp_opts.append("size=%d" % len(msg))
            for option in mail_options:
                esmtp_opts.append(option)
        (code, resp) = self.mail(from_addr, esmtp_opts)
        if code != 250:
            if code == 421:
                self.close()
            else:
                self._rset()
            raise SMTPSenderRefused(code, resp, from_addr)
        senderrs = {}
        if isinstance(to_addrs, str):
            to_addrs = [to_addrs]
        for each in to_addrs:
            (code, resp) = self.rcpt(each, rcpt_options)
            if (code != 250) and (code != 251):
                senderrs[each] = (code, resp)
            if code == 421:
                self.close()
                raise SMTPRecipientsRefused(senderrs)
        if len(senderrs) == len(to_addrs):
            self._rset()
            raise SMTPRecipientsRefused(senderrs)
        (code, resp) = self.data(msg)
        if code != 250:
            if code == 421:
                self.close()
            else:
                self._rset()
            raise SMTPDataError(code, resp)
        return senderrs

    def send_message(self, msg, from_addr=None, to_addrs=None,
                     mail_options=(), rcpt_options=()):
        # type: (Message, str | None, str | Sequence[str] | None, Sequence[str], Sequence[str]) -> dict[str, tuple[int, bytes]]
        """Send an ``email.message.Message`` with ``sendmail``.

        The envelope comes from the headers unless given: Sender (else From),
        To, Cc and Bcc, or the Resent- fields of a resent message (more than
        one Resent- block raises ValueError). Bcc and Resent-Bcc are never
        transmitted. Non-ASCII addresses need SMTPUTF8 (SMTPNotSupportedError
        otherwise) and send the message as UTF-8 with SMTPUTF8 and
        BODY=8BITMIME.
        """
        self.ehlo_or_helo_if_needed()
        given = [to_addrs] if isinstance(to_addrs, str) else to_addrs
        envelope = envelope_from_headers(msg, from_addr, given)
        international = needs_smtputf8(envelope)
        if international:
            if not self.has_extn('smtputf8'):
                raise SMTPNotSupportedError(
                    "One or more source or delivery addresses require"
                    " internationalized email support, but the server"
                    " does not advertise the required SMTPUTF8 capability")
            mail_options = (*mail_options, 'SMTPUTF8', 'BODY=8BITMIME')
        # smtplib's generator mangles From_ lines unless it flattens as UTF-8.
        flatmsg = flatten(msg, utf8=international, mangle_from=None if international else True)
        recipients = to_addrs if to_addrs is not None else list(envelope.rcpt_to)
        return self.sendmail(envelope.mail_from, recipients, flatmsg, mail_options, rcpt_options)

    def quit(self):
        # type: () -> tuple[int, bytes]
        """Terminate the SMTP session."""
        res = self.docmd("quit")
        # A new EHLO is required after reconnecting with connect().
        self.ehlo_resp = self.helo_resp = None
        self.esmtp_features = {}
        self.does_esmtp = False
        self.close()
        return res


class SMTP_SSL(SMTP):
    """SMTP over an implicitly TLS-wrapped socket (port 465 by default).

    Without ``context`` the certificate is NOT verified, as in smtplib;
    ``keyfile``/``certfile`` (deprecated; gone from 3.12, as in smtplib) load
    a client certificate.
    """

    default_port = SMTP_SSL_PORT

    if sys.version_info >= (3, 12):
        def __init__(self, host='', port=0, local_hostname=None,
                     *, timeout=_DEFAULT_TIMEOUT,
                     source_address=None, context=None):
            # type: (str, int, str | None, float | None, tuple[str, int] | None, ssl.SSLContext | None) -> None
            if context is None:
                context = _unverified_context()
            self.context = context
            SMTP.__init__(self, host, port, local_hostname, timeout, source_address)
    else:
        def __init__(self, host='', port=0, local_hostname=None,
                     keyfile=None, certfile=None,
                     timeout=_DEFAULT_TIMEOUT,
                     source_address=None, context=None):
            # type: (str, int, str | None, str | None, str | None, float | None, tuple[str, int] | None, ssl.SSLContext | None) -> None
            _check_tls_args(context, keyfile, certfile)
            if keyfile is not None or certfile is not None:
                import warnings
                warnings.warn("keyfile and certfile are deprecated, use a "
                              "custom context instead", DeprecationWarning, 2)
            self.keyfile = keyfile
            self.certfile = certfile
            if context is None:
                context = _unverified_context(certfile=certfile, keyfile=keyfile)
            self.context = context
            SMTP.__init__(self, host, port, local_hostname, timeout, source_address)

    def _get_socket(self, host: str, port: int, timeout: Any) -> socket.socket:
        if self.debuglevel > 0:
            self._print_debug('connect:', (host, port))
        new_socket = super()._get_socket(host, port, timeout)
        return self.context.wrap_socket(new_socket, server_hostname=self._host)


class LMTP(SMTP):
    """LMTP (RFC 2033): LHLO, and a host starting with ``/`` is a Unix socket.

    ``sendmail``/``data`` return the reply for the first accepted recipient,
    as smtplib does; ``lmtp_replies`` then maps every accepted recipient to
    its own ``(code, msg)``, and the next ``getreply()`` calls return the
    replies after the first, in order.
    """

    ehlo_msg = "lhlo"
    _lmtp = True
    lmtp_replies: dict[str, tuple[int, bytes]] | None = None

    def __init__(self, host='', port=LMTP_PORT, local_hostname=None,
                 source_address=None, timeout=_DEFAULT_TIMEOUT):
        # type: (str, int, str | None, tuple[str, int] | None, float | None) -> None
        """Initialize a new instance."""
        super().__init__(host, port, local_hostname=local_hostname,
                         source_address=source_address, timeout=timeout)

    def connect(self, host='localhost', port=0, source_address=None):
        # type: (str, int, tuple[str, int] | None) -> tuple[int, bytes]
        """Connect to the LMTP daemon, on either a Unix or a TCP socket."""
        if host[0] != '/':
            return super().connect(host, port, source_address=source_address)
        if self.timeout is not None and not self.timeout:
            raise ValueError('Non-blocking socket (timeout=0) is not supported')
        # The module's ``socket``, as in smtplib, so that tests patching
        # ``smtplib.socket`` reach it.
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock = sock
        self.file = None
        try:
            if self.timeout is not _DEFAULT_TIMEOUT:
                sock.settimeout(self.timeout)
            sock.connect(host)
        except OSError:
            if self.debuglevel > 0:
                self._print_debug('connect fail:', host)
            sock.close()
            self.sock = None
            raise
        self._attach(sock)
        (code, msg) = self.getreply()
        if self.debuglevel > 0:
            self._print_debug('connect:', msg)
        return (code, msg)

    def _data_reply(self) -> _ReplyTuple:
        """Read every reply the server owes (the core counts them), hand out the first."""
        self.lmtp_replies = None
        transport = self._live()
        core = transport.core if transport is not None else None
        read: list[_Read] = []
        ours: list[_Read] = []
        try:
            while core is not None and core.pending_replies:
                mine = core.pending_replies == 1  # only the end of data is left
                read.append(self._read())
                if mine:
                    ours.append(read[-1])
                if isinstance(read[-1], MalformedReply):
                    break  # the connection is closed: nothing more to read
        except SMTPException:
            if not read:
                raise
            # The server left after some replies: those come first, the error next.
        self._stash.extend(read)
        self.lmtp_replies = dict(zip(self._accepted, map(_as_tuple, ours)))
        return self.getreply()
