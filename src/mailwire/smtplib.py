"""A drop-in for CPython's ``smtplib`` (3.10 to 3.13), on mailwire's engine.

``import mailwire.smtplib as smtplib`` and a program keeps working: the same
names and signatures (type comments, not annotations, so ``inspect.signature``
equals the stdlib's), return values, exceptions (the stdlib's own classes),
wire bytes and debug output, those of the running interpreter's smtplib.
CPython's own ``test_smtplib`` of each version passes against it, unchanged.
What it does differently, on purpose, is in ``docs/smtplib.md``.

It is an adapter. smtplib's contract is its call pattern as much as its
results: every byte goes out through ``send()``, every command through
``putcmd()``, and each method calls ``putcmd``, ``docmd``, ``send`` and
``getreply`` as smtplib's does, so a program that overrides one of them
(Django's tests capture the wire through ``send``) sees the calls it would
see with smtplib. So the methods that only follow that pattern are smtplib's
own (see ``SMTP``), and everything under them is mailwire's, shared with the
native client: the blocking transport (the socket, each reply's deadline,
TLS); the sans-I/O core's public API, which parses and bounds every reply,
checks every line, dot-stuffs the message and counts an LMTP end of data's
replies; ``mailwire.sasl``'s mechanisms; ``client.message``'s envelope and
flattening. smtplib lets a program put any line on the wire at any time, which
no state table can follow: every line goes through the core's one escape
hatch, ``ClientConnection.send_raw``, checked and paired with its reply, its
meaning left to the program. ``sock`` stays the live socket: a program may
replace it (to wrap it in TLS itself after ``docmd("STARTTLS")``), and the
transport follows. The private stdlib names used: ``socket._GLOBAL_DEFAULT_TIMEOUT``
(the ``timeout`` defaults must be it), and the helpers smtplib's borrowed
methods call by name (``_print_debug``, ``_rset``, the ``_auth_challenge_count``
that ``auth`` keeps), which are therefore smtplib's own too. It runs past
the project's ~500 lines a module because it is one surface, the stdlib's:
what is left is smtplib's contract itself (signatures that differ by
version, LMTP over a Unix socket through this module's ``socket``, which
CPython's tests patch, per-recipient LMTP replies, ``send_message``).
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import sys
from collections import deque
from collections.abc import Sequence
from email.message import Message
import smtplib as _stdlib
from smtplib import (  # quoteaddr is smtplib's own, as its methods below are
    SMTPAuthenticationError, SMTPConnectError, SMTPDataError, SMTPException, SMTPHeloError,
    SMTPNotSupportedError, SMTPRecipientsRefused, SMTPResponseException, SMTPSenderRefused,
    SMTPServerDisconnected, quoteaddr,
)
from typing import Any, Union

from .client.message import envelope_from_headers, flatten, needs_smtputf8
from .client.transport import SyncTransport
from .errors import ConnectionClosed, MalformedReply, RemoteProtocolError
from .limits import DEFAULT_LIMITS
from .protocol import DotStuffer, LineTooLong, RawCommand, end_of_data_replies
from .reply import Reply
from .sasl import cram_md5_response, plain_message

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
_have_ssl = True

OLDSTYLE_AUTH = re.compile(r"auth=(.*)", re.I)

# smtplib's own class, whose methods that hold no I/O this module uses as
# they are (see SMTP). Typed Any: they are called on this module's SMTP.
_STD: Any = _stdlib.SMTP

# The stdlib's "no timeout given" sentinel: create_connection() then leaves the
# socket at the global default. Signatures must carry this very object.
_DEFAULT_TIMEOUT: Any = getattr(socket, "_GLOBAL_DEFAULT_TIMEOUT")

_ReplyTuple = tuple[int, bytes]
_Read = Union[Reply, MalformedReply]  # a reply as read: parsed, or refused by the core


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


def _check_tls_args(context: Any, keyfile: Any, certfile: Any, stacklevel: int) -> None:
    """smtplib's checks of starttls()'s and SMTP_SSL's arguments before 3.12;
    ``stacklevel`` as from the caller of this function."""
    if context is not None and keyfile is not None:
        raise ValueError("context and keyfile arguments are mutually exclusive")
    if context is not None and certfile is not None:
        raise ValueError("context and certfile arguments are mutually exclusive")
    if keyfile is not None or certfile is not None:
        import warnings
        warnings.warn("keyfile and certfile are deprecated, use a "
                      "custom context instead", DeprecationWarning, stacklevel + 1)


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

    # -- the connection --------------------------------------------------

    def _get_socket(self, host: str, port: int, timeout: Any) -> socket.socket:
        if timeout is not None and not timeout:
            raise ValueError('Non-blocking socket (timeout=0) is not supported')
        if self.debuglevel > 0:
            self._print_debug('connect: to', (host, port), self.source_address)
        sock = socket.create_connection((host, port), timeout, self.source_address)
        self._attach()
        return sock

    def _attach(self) -> None:
        """A new connection: a new transport and core around it (see ``_live``)."""
        self._transport = None
        self._stash.clear()

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
            transport.adopt(sock)  # the program wrapped it after docmd("STARTTLS")
        return transport

    def close(self):
        # type: () -> None
        """Close the connection to the SMTP server."""
        self._attach()
        _STD.close(self)

    # -- writing and reading ---------------------------------------------

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
        """Send a command to the server (the core checks the line, then ``send`` writes it)."""
        s = cmd if args == "" else f'{cmd} {args}'
        if '\r' in s or '\n' in s:
            s = s.replace('\n', '\\n').replace('\r', '\\r')
            raise ValueError(f'command and arguments contain prohibited newline characters: {s}')
        line = f'{s}{CRLF}'
        transport = self._live()
        if transport is not None:
            try:
                line.encode(self.command_encoding)
            except UnicodeEncodeError:
                pass  # send() raises it, after its debug line, as smtplib's does
            else:
                # Refuses other control characters before a byte is written;
                # its bytes are those send() makes of ``line``.
                transport.core.send_raw(RawCommand(cmd, args))
        self.send(line)

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

    # -- smtplib's own methods -------------------------------------------
    #
    # Those that only call others (putcmd, docmd, getreply, send, mail ...)
    # in a set pattern, and add smtplib's rules on top, are the running
    # interpreter's smtplib's own, taken as they are: the pattern a hooking
    # program sees is smtplib's on every version by construction, and no copy
    # of smtplib's logic lives here to drift from it. Everything they call
    # that touches the wire is this class's.

    connect = _STD.connect
    set_debuglevel = _STD.set_debuglevel
    _print_debug = _STD._print_debug
    __enter__ = _STD.__enter__
    __exit__ = _STD.__exit__
    docmd = _STD.docmd
    helo = _STD.helo
    ehlo = _STD.ehlo
    has_extn = _STD.has_extn
    help = _STD.help
    rset = _STD.rset
    _rset = _STD._rset
    noop = _STD.noop
    verify = vrfy = _STD.verify
    expn = _STD.expn
    ehlo_or_helo_if_needed = _STD.ehlo_or_helo_if_needed
    auth = _STD.auth
    auth_login = _STD.auth_login
    login = _STD.login
    sendmail = _STD.sendmail
    quit = _STD.quit

    def mail(self, sender, options=()):
        # type: (str, Sequence[str]) -> tuple[int, bytes]
        """smtplib's 'mail' command; a new transaction has no recipient yet."""
        self._accepted = []
        return _STD.mail(self, sender, options)  # type: ignore[no-any-return]

    def rcpt(self, recip, options=()):
        # type: (str, Sequence[str]) -> tuple[int, bytes]
        """smtplib's 'rcpt' command; over LMTP, each recipient accepted gets
        a reply after the data."""
        reply = _STD.rcpt(self, recip, options)
        if 200 <= reply[0] < 400:
            self._accepted.append(recip)
        return reply  # type: ignore[no-any-return]

    def data(self, msg):
        # type: (str | bytes) -> tuple[int, bytes]
        """SMTP 'DATA' command: send the message, return the final reply.

        SMTPDataError unless the server answers DATA with 354. The core
        dot-stuffs the message and ends it; a ``str`` must be ASCII.
        """
        self.putcmd("data")
        (code, repl) = self.getreply()
        if self.debuglevel > 0:
            self._print_debug('data:', (code, repl))
        if code != 354:
            raise SMTPDataError(code, repl)
        if isinstance(msg, str):
            msg = _fix_eols(msg).encode('ascii')
        # smtplib ends the content with CRLF, so an empty message is one empty line.
        stuffer = DotStuffer()
        self.send(stuffer.feed(bytes(msg) or bCRLF) + stuffer.end())
        (code, repl) = self._data_reply()
        if self.debuglevel > 0:
            self._print_debug('data:', (code, repl))
        return (code, repl)

    def _data_reply(self) -> _ReplyTuple:
        return self.getreply()

    # -- AUTH: the answers of mailwire.sasl's mechanisms --------------------

    def auth_cram_md5(self, challenge=None):
        # type: (bytes | None) -> str | None
        """CRAM-MD5 answer from ``self.user`` and ``self.password``."""
        if challenge is None:
            return None  # no initial response
        return cram_md5_response(self.user, self.password.encode('ascii'), challenge)

    def auth_plain(self, challenge=None):
        # type: (bytes | None) -> str
        """PLAIN answer from ``self.user`` and ``self.password``."""
        return plain_message(self.user, self.password)

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
        (resp, reply) = self.docmd("STARTTLS")
        if resp != 220:
            # RFC 3207: 501 syntax error, 454 TLS not available for now.
            raise SMTPResponseException(resp, reply)
        _check_tls_args(context, keyfile, certfile, 3)
        if context is None:
            context = _unverified_context(certfile=certfile, keyfile=keyfile)
        transport = self._live()
        if transport is None:
            raise SMTPServerDisconnected('please run connect() first')
        try:
            transport.start_tls(context, self._host)  # the core drops what came before
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

    def send_message(self, msg, from_addr=None, to_addrs=None,
                     mail_options=(), rcpt_options=()):
        # type: (Message, str | None, str | Sequence[str] | None, Sequence[str], Sequence[str]) -> dict[str, tuple[int, bytes]]
        """Send an ``email.message.Message`` with ``sendmail``, its envelope
        from the headers unless given (``client.message``'s rules, as the
        native client's: see docs/smtplib.md)."""
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
        return self.sendmail(envelope.mail_from, recipients, flatmsg, mail_options, rcpt_options)  # type: ignore[no-any-return]


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
            _check_tls_args(context, keyfile, certfile, 2)
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
            return super().connect(host, port, source_address=source_address)  # type: ignore[no-any-return]
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
        self._attach()
        (code, msg) = self.getreply()
        if self.debuglevel > 0:
            self._print_debug('connect:', msg)
        return (code, msg)

    def _data_reply(self) -> _ReplyTuple:
        """Read every reply the server owes, hand out the first of this message's.

        Replies still owed to earlier lines (the core counts them) come
        first; then the end of data gets one per recipient accepted (RFC
        2033 4.2).
        """
        self.lmtp_replies = None
        transport = self._live()
        stale = transport.core.pending_replies if transport is not None else 0
        owed = stale + end_of_data_replies(len(self._accepted), lmtp=True) if transport is not None else 0
        read: list[_Read] = []
        try:
            while len(read) < owed:
                read.append(self._read())
                if isinstance(read[-1], MalformedReply):
                    break  # the connection is closed: nothing more to read
        except SMTPException:
            if not read:
                raise
            # The server left after some replies: those come first, the error next.
        self._stash.extend(read)
        self.lmtp_replies = dict(zip(self._accepted, map(_as_tuple, read[stale:])))
        return self.getreply()
