"""A drop-in for the standard library's ``smtpd`` (removed in Python 3.12), on asyncio.

A program written for ``smtpd`` runs after two edits: ``import smtpd``
becomes ``import mailwire.smtpd as smtpd`` and ``asyncore.loop()`` becomes
``smtpd.loop()`` (and ``import asyncore`` goes, since 3.12 has none). What it
subclasses and overrides stays: ``SMTPServer.process_message(peer, mailfrom,
rcpttos, data, **kwargs)`` gets the same arguments ``smtpd`` gave it, and its
return value is still the reply.

The strategy is an adapter, not a second server. Constructing an
``SMTPServer`` binds and listens at once, as ``smtpd`` did, and records the
server in a map (``asyncore.socket_map``'s stand-in). ``loop()`` then serves
every recorded server with mailwire's asyncio server (``testing.ServerThread``), whose
backend turns each complete ``Envelope`` into ``smtpd``'s arguments: ``data``
with LF line endings and without the final one, ``bytes`` (or ``str`` with
``decode_data=True``); the null sender as ``'<>'``; and, in bytes mode,
``mail_options``/``rcpt_options`` as lists of upper-case strings. The reply
string is parsed into a ``Reply``; one that is not ``DDD text`` (2xx, 4xx or
5xx) is logged and answered ``451 4.3.0``.

``process_message`` is the user's blocking code: it runs in one worker thread,
so calls never overlap (as under asyncore) and the event loop goes on serving
the other connections meanwhile.

Differences from ``smtpd``, on purpose or by necessity:

* ``SMTPChannel`` cannot be subclassed, nor ``SMTPServer.channel_class``
  set to another class, nor ``handle_accept``/``handle_accepted``
  overridden: the SMTP dialogue is mailwire's server, so no ``smtp_*``
  handler, ``push`` or channel attribute of a subclass would ever run, and
  an override silently ignored is worse than none. Each raises
  ``ChannelNotSupported`` (a ``TypeError``) at once: where the subclass is
  defined (at import), or ``channel_class`` set (in a class body; on the
  class later, at construction before anything binds; on an instance, at
  the assignment). Real programs subclassed the channel to add AUTH or
  STARTTLS to ``smtp_EHLO``, to refuse in ``smtp_MAIL`` or ``smtp_RCPT``,
  or to end the loop in ``smtp_QUIT``; the supported ways, which the error
  names: ``process_message`` (its return value is the reply to DATA),
  ``make_config`` (STARTTLS with a ``tls_context``, limits), and for
  refusing senders or recipients as they come, or AUTH, a session of
  ``mailwire.server.SMTPServer`` (``BaseSession.mail``/``rcpt`` raising
  ``SMTPError``, ``AuthSession.authenticate``). The other ``asyncore``
  hooks (``handle_error``, ``readable``, ...) are never called either.
* The command line, ``python -m mailwire.smtpd [options] [localhost:port
  [remotehost:port]]``, is smtpd's: its options, defaults, usage text and
  exit codes (``mailwire.cli.smtpd`` has it, ``usage``, ``parseargs`` and
  ``Options`` included, and says where it differs). ``MailmanProxy`` (gone
  from smtpd in 3.11) is not provided. ``loop``, ``run_in_thread`` and
  ``LoopThread`` are imported by name.
* EHLO offers SIZE only with a ``data_size_limit``, as smtpd did (mailwire
  on its own says ``SIZE 0`` for "no limit"), so clients that send SIZE
  only when offered (smtplib) hand ``process_message`` the same
  ``mail_options`` as under smtpd; a SIZE parameter is still accepted
  unoffered, as smtpd accepted it.
* The protocol is RFC 5321 as mailwire speaks it: PIPELINING, 8BITMIME and
  ENHANCEDSTATUSCODES are offered in every mode (so ``BODY=8BITMIME`` is
  accepted with ``decode_data=True`` too, where smtpd answered 555), and
  mailwire's own replies carry enhanced codes. Bare CR or LF in the data is
  accepted as ``smtpd`` did, but turned into a line ending (a bare CR
  arrives as ``\\n``, where ``smtpd`` passed ``\\r`` through).
* ``mail_options`` lists the parameters in a fixed order (SIZE, BODY,
  SMTPUTF8, ...) rather than the client's; ``rcpt_options`` is the last
  accepted recipient's. ``smtpd`` accepted no RCPT parameter, neither do we.
* An exception from ``process_message`` (``NotImplementedError`` from the
  base class included) is logged and answered ``451 4.3.0``; the connection
  goes on, where ``smtpd`` dropped it. Data that is not UTF-8 with
  ``decode_data=True`` is refused ``554 5.6.0`` rather than dropping it.
* A ``421`` reply closes the connection (RFC 5321 3.8).
* ``DEBUGSTREAM`` gets the connection, sender and recipient lines, not the
  raw protocol lines ``smtpd`` printed there.
* ``loop(timeout)`` runs for at most ``timeout`` seconds in total (None: until
  interrupted); ``asyncore.loop``'s timeout was a per-poll interval, and its
  ``use_poll`` and ``count`` are not taken. It serves the servers that exist
  when it starts. Ctrl-C stops it gracefully and it returns normally.
* For tests, ``run_in_thread()`` serves them from a background thread, as a
  context manager or with ``.stop()``.

One module, over 500 lines: it is the standard library's one ``smtpd``
module, name for name, so whatever a program reached as ``smtpd.X`` is
found here as it was there (the command line, the one part smtpd's users
never import, is ``mailwire.cli.smtpd``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import socket
import sys
import threading
import time
from collections.abc import Iterable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from types import TracebackType
from typing import Any

from .errors import MailwireError, RecipientsRefused, SMTPError
from .limits import DEFAULT_LIMITS
from .protocol import (
    BareLineEndings, MailOptions, RcptOptions, ServerExtensions, format_mail_options, format_rcpt_options,
)
from .reply import LOCAL_ERROR, Reply
from .server.config import ServerConfig
from .server.envelope import Envelope, SessionInfo
from .server.session import BaseSession, Session
from .testing import ServerThread

__all__ = ["SMTPChannel", "SMTPServer", "DebuggingServer", "PureProxy"]

log = logging.getLogger("mailwire.smtpd")

program = sys.argv[0] if sys.argv else ""
__version__ = "Python SMTP proxy version 0.3"


class Devnull:
    def write(self, msg: str) -> None:
        pass

    def flush(self) -> None:
        pass


# Assign a stream (``mailwire.smtpd.DEBUGSTREAM = sys.stderr``) to see what
# the servers do; read at each use, as in smtpd.
DEBUGSTREAM: Any = Devnull()
NEWLINE = "\n"
COMMASPACE = ", "
DATA_SIZE_DEFAULT = 33554432

# The stand-in for asyncore.socket_map: every server not given a map of its own.
socket_map: dict[int, SMTPServer] = {}

# How long stopping waits for messages being received (seconds).
STOP_GRACE = 5.0


def _debug(*args: object) -> None:
    print(*args, file=DEBUGSTREAM)


# -- the channel that is not there ------------------------------------------------


class ChannelNotSupported(TypeError):
    """A channel subclass or override that ``mailwire.smtpd`` would never run.

    Raised when it is defined or set, so a program learns at start-up what
    smtpd would have done differently, not from mail that went unchecked.
    """


_ALTERNATIVES = (
    "mailwire.smtpd speaks SMTP with mailwire's own server, not an asynchat channel. Instead: "
    "handle each message, and choose the reply to DATA, in SMTPServer.process_message; "
    "offer STARTTLS or change limits by overriding SMTPServer.make_config (a mailwire.server.ServerConfig); "
    "to refuse senders or recipients as they come, or to offer AUTH, write a session for "
    "mailwire.server.SMTPServer (BaseSession.mail/rcpt raising mailwire.SMTPError, AuthSession.authenticate)"
)


def _refusal(what: str) -> ChannelNotSupported:
    return ChannelNotSupported(f"{what}. {_ALTERNATIVES}.")


def _overrides(cls: type) -> str:
    names = sorted(name for name in vars(cls) if not (name.startswith("__") and name.endswith("__")))
    return f" (it defines {', '.join(names)})" if names else ""


class SMTPChannel:
    """The name ``smtpd.SMTPChannel``, so that code written for it fails with
    an explanation: a subclass raises ``ChannelNotSupported`` when defined,
    and making one (as ``handle_accept`` overrides did) raises it too."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        raise _refusal(
            f"{cls.__qualname__} subclasses SMTPChannel{_overrides(cls)}, which would never run")

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise _refusal("SMTPChannel cannot be made: connections are not channels here")


class _ChannelClass:
    """``SMTPServer.channel_class``: reads as ``SMTPChannel``; setting another
    class on a server raises (a class body setting it is refused by
    ``SMTPServer.__init_subclass__``)."""

    def __get__(self, obj: object, owner: type | None = None) -> type[SMTPChannel]:
        return SMTPChannel

    def __set__(self, obj: object, value: object) -> None:
        if value is not SMTPChannel:
            raise _refusal(f"{type(obj).__qualname__}.channel_class = {_name(value)} would never be used")


def _name(value: object) -> str:
    return str(getattr(value, "__qualname__", None) or repr(value))


def _check_server_class(cls: type) -> None:
    """ChannelNotSupported if ``cls`` sets a channel class or accepts connections itself."""
    channel = cls.channel_class  # type: ignore[attr-defined]
    if channel is not SMTPChannel:
        raise _refusal(f"{cls.__qualname__}.channel_class = {_name(channel)} would never be used")
    for hook in ("handle_accept", "handle_accepted"):
        if any(hook in vars(klass) for klass in cls.__mro__):
            raise _refusal(f"{cls.__qualname__}.{hook} would never be called: mailwire's server accepts the connections")


# -- the servers ------------------------------------------------------------------


class SMTPServer:
    """``smtpd.SMTPServer``: binds on construction; ``loop()`` serves it.

    Override ``process_message``. ``socket`` is the listening socket and
    ``address`` its bound address (``server.address[1]`` is the port when
    ``localaddr`` asked for port 0). ``close()`` (or leaving a ``with``
    block) releases the port and forgets the server. Override
    ``make_config`` to change what mailwire's server is told (TLS, limits).
    ``channel_class`` is always ``SMTPChannel`` (see ``ChannelNotSupported``).
    """

    channel_class = _ChannelClass()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _check_server_class(cls)

    def __init__(
        self,
        localaddr: tuple[Any, ...],
        remoteaddr: tuple[Any, ...] | None,
        data_size_limit: int | None = DATA_SIZE_DEFAULT,
        map: MutableMapping[int, Any] | None = None,
        enable_SMTPUTF8: bool = False,
        decode_data: bool = False,
    ) -> None:
        _check_server_class(type(self))  # a channel_class set on the class after its definition
        self._localaddr = localaddr
        self._remoteaddr = remoteaddr
        self.data_size_limit = data_size_limit
        self.enable_SMTPUTF8 = enable_SMTPUTF8
        self._decode_data = decode_data
        if enable_SMTPUTF8 and decode_data:
            raise ValueError("decode_data and enable_SMTPUTF8 cannot be set to True at the same time")
        self._map: MutableMapping[int, Any] = socket_map if map is None else map
        host, port = localaddr[0], localaddr[1]
        family, kind = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][:2]
        sock = socket.socket(family, kind)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(localaddr)
            sock.listen(100)
        except BaseException:
            sock.close()
            raise
        self.socket: socket.socket | None = sock
        self.addr = localaddr  # as asyncore.dispatcher.bind set it: what was asked for
        self._fileno = sock.fileno()
        self._map[self._fileno] = self
        _debug("%s started at %s\n\tLocal addr: %s\n\tRemote addr:%s" % (
            self.__class__.__name__, time.ctime(time.time()), localaddr, remoteaddr))

    @property
    def address(self) -> Any:
        """The bound address, ``(host, port)`` (IPv6: ``(host, port, flow, scope)``)."""
        if self.socket is None:
            raise OSError("the server is closed")
        return self.socket.getsockname()

    def close(self) -> None:
        """Stop listening and leave the map (a running ``loop`` keeps serving it)."""
        if self._map.get(self._fileno) is self:
            del self._map[self._fileno]
        if self.socket is not None:
            self.socket.close()
            self.socket = None

    def __enter__(self) -> SMTPServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def make_config(self) -> ServerConfig:
        """The settings of the mailwire server behind this one: smtpd's
        greeting, SIZE and SMTPUTF8; no DSN, no CHUNKING, and no limit on
        the length of a message's lines (smtpd had none). SIZE is offered
        only with a limit, as smtpd offered it."""
        return _SmtpdConfig(
            greeting=__version__,
            limits=DEFAULT_LIMITS.with_(message_size=self.data_size_limit or 0, text_line=0),
            smtputf8=self.enable_SMTPUTF8,
            chunking=False,
            dsn=False,
            bare_line_endings=BareLineEndings.NORMALIZE,
        )

    # API for "doing something useful with the message"
    def process_message(
        self, peer: Any, mailfrom: str, rcpttos: list[str], data: bytes | str, **kwargs: Any
    ) -> str | None:
        """Override this to handle each message; return None for ``250`` or a
        reply such as ``"550 No such user"``.

        ``peer`` is the client's ``(ipaddr, port)``; ``mailfrom`` the sender
        (``'<>'`` for the null sender); ``rcpttos`` the recipients; ``data``
        the message with LF line endings and dot-stuffing undone, ``bytes``,
        or ``str`` with ``decode_data=True``. Without ``decode_data``,
        ``kwargs`` has ``mail_options`` and ``rcpt_options``: lists of
        upper-case parameters, e.g. ``['SIZE=1234', 'BODY=8BITMIME']``.
        """
        raise NotImplementedError


class _SmtpdConfig(ServerConfig):
    """smtpd's EHLO: SIZE offered only when there is a limit.

    mailwire offers ``SIZE 0`` for "no limit" (RFC 1870), and smtplib then
    sends ``SIZE=n``, which ``process_message`` would see in
    ``mail_options`` where smtpd's (without ``-s``) saw none. A SIZE
    parameter is still accepted unoffered, as smtpd accepted it.
    """

    def extensions(self, *, auth: bool) -> ServerExtensions:
        return replace(super().extensions(auth=auth), size_without_limit=False)


class DebuggingServer(SMTPServer):
    """Prints each message to ``sys.stdout`` exactly as ``smtpd.DebuggingServer`` did."""

    def _print_message_content(self, peer: Any, data: bytes | str) -> None:
        inheaders = 1
        for line in data.splitlines():
            # headers first
            if inheaders and not line:
                peerheader = "X-Peer: " + peer[0]
                if not isinstance(data, str):
                    # decode_data=False; make the header match the other binary output
                    peerheader = repr(peerheader.encode("utf-8"))
                print(peerheader)
                inheaders = 0
            if not isinstance(data, str):
                # Avoid spurious 'str on bytes instance' warning.
                line = repr(line)
            print(line)

    def process_message(
        self, peer: Any, mailfrom: str, rcpttos: list[str], data: bytes | str, **kwargs: Any
    ) -> str | None:
        print("---------- MESSAGE FOLLOWS ----------")
        if kwargs:
            if kwargs.get("mail_options"):
                print("mail options: %s" % kwargs["mail_options"])
            if kwargs.get("rcpt_options"):
                print("rcpt options: %s\n" % kwargs["rcpt_options"])
        self._print_message_content(peer, data)
        print("------------ END MESSAGE ------------")
        return None


Refused = dict[str, tuple[int, Any]]


class PureProxy(SMTPServer):
    """Forwards each message to ``remoteaddr`` with mailwire's client, as ``smtpd.PureProxy`` did.

    An ``X-Peer`` header naming the client goes before the blank line that
    ends the headers, and line endings become CRLF (as smtplib's
    ``sendmail`` made them of smtpd's ``str``). The upstream is spoken to without TLS (``tls="none"``,
    as smtpd's plain ``smtplib.SMTP``), within ``timeout`` seconds a reply.
    ``_deliver`` returns what ``smtpd`` returned: the refused recipients,
    ``{rcpt: (code, message)}`` (every recipient, with ``(-1, 'ignore')``
    when the failure carried no reply); as in ``smtpd`` they are only
    printed to ``DEBUGSTREAM`` and the client hears ``250`` regardless.
    (``mailwire.server.Relay`` reports refusals to the client.)
    Unlike ``smtpd``'s, it works with ``decode_data`` False too.
    """

    timeout: float | None = 60.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("enable_SMTPUTF8"):
            raise ValueError("PureProxy does not support SMTPUTF8.")
        super().__init__(*args, **kwargs)

    def process_message(
        self, peer: Any, mailfrom: str, rcpttos: list[str], data: bytes | str, **kwargs: Any
    ) -> str | None:
        refused = self._deliver(mailfrom, rcpttos, _with_peer_header(data, str(peer[0])))
        # TBD (as in smtpd): what to do with refused addresses?
        _debug("we got some refusals:", refused)
        return None

    def _deliver(self, mailfrom: str, rcpttos: list[str], data: bytes | str) -> Refused:
        from .client.sync import SMTPClient  # the blocking driver: only when forwarding

        if self._remoteaddr is None:
            raise ValueError("PureProxy needs a remoteaddr")
        host, port = self._remoteaddr[0], self._remoteaddr[1]
        content = _crlf(data.encode("utf-8") if isinstance(data, str) else data)
        sender = "" if mailfrom == "<>" else mailfrom
        refused: Refused = {}
        try:
            client = SMTPClient(host, port, tls="none", timeout=self.timeout, connect=False)
            try:
                client.connect()
                result = client.send(content, sender, rcpttos)
            finally:
                client.quit()
            refused = {rcpt: (reply.code, reply.message) for rcpt, reply in result.refused.items()}
        except RecipientsRefused as err:
            _debug("got SMTPRecipientsRefused")
            refused = {rcpt: (reply.code, reply.message) for rcpt, reply in err.result.recipients.items()}
        except (OSError, MailwireError) as err:
            _debug("got", err.__class__)
            # Everything refused; the reply's code and text if there was one.
            failure: tuple[int, Any] = (
                (err.code, err.reply.message) if isinstance(err, SMTPError) else (-1, "ignore")
            )
            for rcpt in rcpttos:
                refused[rcpt] = failure
        return refused


def _with_peer_header(data: bytes | str, host: str) -> bytes | str:
    """``X-Peer: host`` inserted before the first empty line (at the end if none)."""
    if isinstance(data, str):
        lines = data.split("\n")
        lines.insert(_header_end(lines), "X-Peer: " + host)
        return NEWLINE.join(lines)
    blines = data.split(b"\n")
    blines.insert(_header_end(blines), b"X-Peer: " + host.encode("utf-8"))
    return b"\n".join(blines)


def _crlf(data: bytes) -> bytes:
    """CRLF line endings throughout and at the end, as smtplib's sendmail
    made them (the client sends content as given when the upstream takes BDAT)."""
    data = re.sub(rb"\r\n|\n|\r", b"\r\n", data)
    return data if data.endswith(b"\r\n") else data + b"\r\n"


def _header_end(lines: list[str] | list[bytes]) -> int:
    for i, line in enumerate(lines):
        if not line:
            return i
    return len(lines)


# -- process_message's arguments and reply ----------------------------------------



def parse_status(status: object) -> Reply | None:
    """``process_message``'s return value as a Reply; None for a plain 250.

    ``"550 No such user"`` and ``"550 5.1.1 No such user"`` are one-line
    replies (the enhanced code, when its class matches, is the Reply's);
    lines joined by CRLF make a multi-line reply. Raises ValueError for
    anything else: not a string, a code that is not 2xx/4xx/5xx, lines with
    different codes.
    """
    if status is None or status == "":
        return None
    if not isinstance(status, str):
        raise ValueError(f"process_message must return a str or None, not {type(status).__name__}")
    return Reply.parse(status)


def smtpd_data(content: bytes, decode_data: bool) -> bytes | str:
    """Message content as smtpd gave it: without the last line ending, LF
    for CRLF, decoded as UTF-8 (strictly) with ``decode_data``."""
    if content.endswith(b"\r\n"):
        content = content[:-2]
    data = content.replace(b"\r\n", b"\n")
    return data.decode("utf-8") if decode_data else data


def _option_words(words: list[str]) -> list[str]:
    return [word.upper() for word in words]  # smtpd: params.upper().split()


def smtpd_kwargs(envelope: Envelope) -> dict[str, list[str]]:
    """``mail_options`` and ``rcpt_options`` as smtpd passed them without decode_data."""
    last = envelope.rcpt_options[-1] if envelope.rcpt_options else RcptOptions()
    return {
        "mail_options": _option_words(format_mail_options(envelope.mail_options)),
        "rcpt_options": _option_words(format_rcpt_options(last)),
    }


class _Session(BaseSession):
    def __init__(self, info: SessionInfo, server: SMTPServer, executor: ThreadPoolExecutor) -> None:
        super().__init__(info)
        self._server = server
        self._executor = executor
        self._rcpttos: list[str] = []

    def mail(self, address: str, options: MailOptions) -> None:
        self._rcpttos = []
        _debug("sender:", address or "<>")

    def rcpt(self, address: str, options: RcptOptions) -> None:
        self._rcpttos.append(address)
        _debug("recips:", self._rcpttos)

    def reset(self) -> None:
        self._rcpttos = []

    async def data(self, envelope: Envelope) -> None:
        server = self._server
        info = envelope.session or self.info
        try:
            data = smtpd_data(envelope.content, server._decode_data)
        except UnicodeDecodeError:
            raise SMTPError(554, "5.6.0", "Message is not valid UTF-8") from None
        kwargs = {} if server._decode_data else smtpd_kwargs(envelope)
        call = functools.partial(
            server.process_message, info.peer, envelope.mail_from or "<>", list(envelope.rcpt_to), data, **kwargs
        )
        try:
            status = await asyncio.get_running_loop().run_in_executor(self._executor, call)
        except Exception:
            log.exception("%s.process_message failed", type(server).__name__)
            raise SMTPError(LOCAL_ERROR) from None
        try:
            reply = parse_status(status)
        except ValueError as err:
            log.error("%s.process_message returned a malformed reply (%s); answering 451 4.3.0",
                      type(server).__name__, err)
            raise SMTPError(LOCAL_ERROR) from None
        if reply is not None:
            raise SMTPError(reply)  # 2xx too: the connection sends it as the answer


class _Backend:
    def __init__(self, server: SMTPServer, executor: ThreadPoolExecutor) -> None:
        self._server = server
        self._executor = executor

    async def new_session(self, info: SessionInfo) -> Session:
        _debug("Incoming connection from %s" % repr(info.peer))
        _debug("Peer:", repr(info.peer))
        return _Session(info, self._server, self._executor)


# -- running them: the replacement for asyncore.loop() ------------------------------


def _servers(map: MutableMapping[int, Any] | None) -> list[SMTPServer]:
    source = socket_map if map is None else map
    return [s for s in list(source.values()) if isinstance(s, SMTPServer) and s.socket is not None]


class LoopThread:
    """The servers served from background threads (a ``testing.ServerThread``
    each), all handing their messages to one worker thread, so that
    ``process_message`` calls never overlap, as under asyncore. ``stop()``
    ends them and joins the threads; the servers stay bound for later."""

    def __init__(self, servers: Iterable[SMTPServer], *, grace: float = 1.0, start_timeout: float = 10.0) -> None:
        self.servers = list(servers)
        self.grace = grace
        self.start_timeout = start_timeout
        self._executor: ThreadPoolExecutor | None = None
        self._threads: list[ServerThread] = []

    def start(self) -> LoopThread:
        if self._executor is not None:
            raise RuntimeError("already started")
        self._executor = executor = ThreadPoolExecutor(1, thread_name_prefix="mailwire-smtpd")
        try:
            for server in self.servers:
                if server.socket is None:
                    raise OSError(f"{server!r} is closed")
                # A duplicate of the listening socket: asyncio closes it when
                # it stops, the server's own stays bound for another loop().
                thread = ServerThread(
                    _Backend(server, executor), config=server.make_config(), host=None,
                    sock=server.socket.dup(), grace=self.grace, start_timeout=self.start_timeout,
                    record=False, name="mailwire-smtpd-loop",
                )
                self._threads.append(thread)
                thread.start()
        except BaseException:
            self.stop()
            raise
        return self

    def is_alive(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop serving and wait for the threads (at most ``timeout`` s each)."""
        threads, self._threads = self._threads, []
        try:
            for thread in threads:
                thread.stop(timeout)
        finally:
            executor, self._executor = self._executor, None
            if executor is not None:
                executor.shutdown(wait=True)

    def __enter__(self) -> LoopThread:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def loop(
    timeout: float | None = None, *, map: MutableMapping[int, Any] | None = None, grace: float = STOP_GRACE
) -> None:
    """Serve every server created so far (those in ``map``, if given) until
    interrupted (Ctrl-C ends it quietly) or for ``timeout`` seconds.

    Returns at once when there is no server, as ``asyncore.loop`` did. On
    the way out, connections in the middle of a message get ``grace`` seconds
    to finish it; the others hear ``421``. (The servers run in background
    threads; this one waits, so Ctrl-C reaches it; a second Ctrl-C stops
    waiting for the grace.)
    """
    servers = _servers(map)
    if not servers:
        return
    running = LoopThread(servers, grace=grace)
    try:
        running.start()
        threading.Event().wait(timeout)
    except KeyboardInterrupt:
        pass
    finally:
        try:
            running.stop()
        except KeyboardInterrupt:
            pass


def run_in_thread(
    *servers: SMTPServer,
    map: MutableMapping[int, Any] | None = None,
    grace: float = 1.0,
    start_timeout: float = 10.0,
) -> LoopThread:
    """Serve ``servers`` (default: every server created so far, or those in
    ``map``) in the background; returns once they are being served.

    ``with smtpd.run_in_thread(): ...`` stops and joins the threads on exit;
    so does ``.stop()``. The servers stay bound for a later ``loop()``.
    """
    chosen = list(servers) if servers else _servers(map)
    if not chosen:
        raise ValueError("no server to run: create an SMTPServer first")
    return LoopThread(chosen, grace=grace, start_timeout=start_timeout).start()


if __name__ == "__main__":
    # ``python -m mailwire.smtpd`` runs this file as __main__, a second copy of
    # the module; the command line works with the real mailwire.smtpd (the one
    # a user's ``-c module.Class`` subclasses), so it lives in a module of its own.
    from mailwire.cli.smtpd import main

    sys.exit(main())
