"""The backends mailwire ships: Sink, Printer, Maildir, Mbox and Relay.

Each is a ``Backend`` whose sessions follow the ``Session`` contract: they are
told of the complete message in ``data()`` and refuse by raising
``SMTPError``. None of them keeps per-transaction state, so one backend object
serves any number of concurrent connections.

The rule that shapes the storing and relaying backends: the event loop never
waits on a disk or a remote server. File writes (``Maildir``, ``Mbox``) and
upstream SMTP conversations (``Relay``) run in worker threads through
``asyncio.to_thread``; the coroutine only awaits them. What those threads
share is guarded: ``mailbox.Maildir.add`` needs nothing but a retry on a name
clash, an ``mbox`` file is written under a thread lock plus the file locks of
``mailbox`` (``lock()``/``flush()``/``unlock()``), and each relayed message has
its own client connection.

A storing backend promises that a message is either stored whole or not at
all; a relaying one promises that an upstream refusal comes back to the
sender as a refusal rather than vanishing. The limits of both promises are
written down on each class. One limit is common to all: a worker thread
cannot be cancelled, so if the connection is dropped while a message is
being stored or relayed, the thread finishes the job although the sender
never hears 250; the sender retries and the message arrives twice
(at-least-once delivery, as with any MTA).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import mailbox
import os
import ssl
import stat
import sys
import threading
import time
from collections.abc import Awaitable, Sequence
from typing import Any, ClassVar, TextIO

from ..client.aio import AsyncSMTPClient
from ..client.message import has_8bit
from ..client.result import SendResult
from ..client.sync import SMTPClient, TLSMode
from ..errors import (
    AuthenticationError, DataRefused, LocalProtocolError, MailwireError, NotSupportedError,
    RecipientsRefused, SMTPError, TLSRequiredError,
)
from ..protocol.capabilities import Capabilities
from ..protocol.params import MailOptions, RcptOptions
from ..reply import Reply
from ..sasl import ClientMechanism
from .envelope import Envelope, SessionInfo
from .session import BaseSession, Session

__all__ = ["Sink", "Printer", "Maildir", "Mbox", "Relay", "debugging_text"]

log = logging.getLogger(__name__)

# errno values that mean "the disk (or the quota) is full": RFC 5321 452,
# RFC 3463 4.3.1 "mail system full".
_FULL = frozenset(e for e in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if e is not None)


# -- Sink ---------------------------------------------------------------------


class _SinkSession(BaseSession):
    """Shared by every connection (so it keeps no SessionInfo). Every step
    is a plain function (MAIL, RCPT and RSET BaseSession's no-ops, ``data``
    only counts), so the server answers the whole transaction without
    waking the connection's task."""

    def __init__(self, sink: Sink) -> None:  # no super().__init__: no one session's info
        self._sink = sink

    def data(self, envelope: Envelope) -> None:
        sink = self._sink
        sink.messages += 1
        sink.bytes += len(envelope.content)


class Sink:
    """Accepts every message and drops it, counting ``messages`` and ``bytes``.

    Made for benchmarks: every connection shares one stateless session
    object, so a connection costs no allocation here. The counters are plain
    integers updated on the event loop; they are exact when one loop runs the
    server (as the asyncio server does).
    """

    def __init__(self) -> None:
        self.messages = 0
        self.bytes = 0
        self._session = _SinkSession(self)

    async def new_session(self, info: SessionInfo) -> Session:
        return self._session


# -- Printer ------------------------------------------------------------------


def _peer_host(info: SessionInfo | None) -> str:
    peer = info.peer if info is not None else None
    if isinstance(peer, tuple):
        return str(peer[0])
    return peer if peer else "unknown"


def debugging_text(content: bytes, peer: str) -> str:
    """A message as ``smtpd.DebuggingServer`` printed it with ``decode_data=True``.

    The banner, each line of the message (``str.splitlines``, as smtpd did)
    with ``X-Peer: <peer>`` inserted before the blank line that ends the
    headers (never, if there is none), and the closing banner.
    """
    out = ["---------- MESSAGE FOLLOWS ----------"]
    in_headers = True
    for line in content.decode("utf-8", "replace").splitlines():
        if in_headers and not line:
            out.append("X-Peer: " + peer)
            in_headers = False
        out.append(line)
    out.append("------------ END MESSAGE ------------")
    return "\n".join(out) + "\n"


class _PrinterSession(BaseSession):
    def __init__(self, info: SessionInfo, printer: Printer) -> None:
        super().__init__(info)
        self._printer = printer

    async def data(self, envelope: Envelope) -> None:
        self._printer.print_message(envelope, self.info)


class Printer:
    """Prints each message to ``stream`` the way ``smtpd.DebuggingServer`` did.

    The output is that of DebuggingServer in its ``decode_data=True`` mode:
    human-readable lines, not the ``b'...'`` reprs its default bytes mode
    printed, and (as in that mode) no ``mail options:``/``rcpt options:``
    lines. Content is decoded as UTF-8 with ``errors="replace"``. ``X-Peer``
    names the client's IP address (the PROXY protocol's source when that is
    on; the socket path for a Unix socket).

    ``stream`` defaults to whatever ``sys.stdout`` is when a message arrives,
    so ``contextlib.redirect_stdout`` and test capture work. Each message is
    one ``write`` under a lock, so concurrent sessions never interleave lines.
    The write is synchronous, as DebuggingServer's was: give a slow stream
    (a pipe nobody reads) and the event loop waits on it.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self._lock = threading.Lock()

    async def new_session(self, info: SessionInfo) -> Session:
        return _PrinterSession(info, self)

    def print_message(self, envelope: Envelope, info: SessionInfo | None = None) -> None:
        text = debugging_text(envelope.content, _peer_host(info or envelope.session))
        stream = self.stream if self.stream is not None else sys.stdout
        with self._lock:
            stream.write(text)
            stream.flush()


# -- storing backends -----------------------------------------------------------


# The Maildir convention (cr.yp.to/proto/maildir.html): a file in tmp/ not
# accessed for 36 hours is left over from a failed delivery.
STALE_TMP_AGE = 36 * 3600.0


def _fsync_directory(path: str) -> None:
    """fsync a directory, so that entries made in it (a link, a new file)
    are on disk. Where directories cannot be opened (Windows), nothing."""
    if os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _return_path(envelope: Envelope, eol: bytes) -> bytes:
    """``Return-Path: <sender>`` (RFC 5321 4.4), ``<>`` for the null sender."""
    sender = envelope.mail_from.replace("\r", "").replace("\n", "")
    return b"Return-Path: <" + sender.encode("utf-8", "surrogateescape") + b">" + eol


class _StoreSession(BaseSession):
    """Hands the message to a blocking ``store`` function in a worker thread."""

    def __init__(self, info: SessionInfo, store: _Store) -> None:
        super().__init__(info)
        self._store = store

    async def data(self, envelope: Envelope) -> None:
        try:
            await asyncio.to_thread(self._store.store, envelope)
        except OSError as err:
            if err.errno in _FULL:
                log.error("cannot store a message from <%s>: %s", envelope.mail_from, err)
                raise SMTPError(452, "4.3.1", "Insufficient system storage") from err
            raise  # the server answers 451 4.3.0 and the session goes on


class _Store:
    def store(self, envelope: Envelope) -> None:
        raise NotImplementedError

    async def new_session(self, info: SessionInfo) -> Session:
        return _StoreSession(info, self)


class Maildir(_Store):
    """Stores each message in a Maildir with the standard library's ``mailbox.Maildir``.

    The stored file is ``Return-Path: <mail_from>`` followed by the message
    content exactly as received (CRLF line endings included; the Return-Path
    line ends the way the message's first line does). No other header is
    added (no ``Delivered-To``, no ``X-Original-To``, no ``Received``).

    Atomicity: ``mailbox.Maildir.add`` writes the message to ``tmp/``, fsyncs
    it, and only then links (or renames) it into ``new/``; if anything fails
    while writing, it removes the file from ``tmp/`` and re-raises. So a
    message is in ``new/`` whole or not at all. Durability: ``new/`` itself
    is then fsynced, before ``data()`` returns and the sender hears 250, so
    the new entry survives a power cut as the file's content does (a file
    system need not write a directory entry to disk when the file is). A
    full disk or quota is refused with ``452 4.3.1``; other failures reach
    the server, which answers ``451 4.3.0``.

    Clean-up: a process killed while writing leaves its file in ``tmp/``.
    As the Maildir convention has it, files there that nobody has touched
    for ``tmp_max_age`` seconds (36 hours; None: never) are removed when
    the backend is made; younger ones may be another deliverer's, being
    written, and are left alone.

    Writes run in worker threads; two threads that pick the same unique
    name (``mailbox`` names files by time, pid and a counter that is not
    thread-safe) get ``ExternalClashError`` and are retried with a new name.

    ``mailbox_class`` is the ``mailbox.Maildir`` (sub)class used.
    """

    mailbox_class: ClassVar[type[mailbox.Maildir]] = mailbox.Maildir
    name_retries = 5

    def __init__(
        self, path: str | os.PathLike[str], create: bool = True, *, tmp_max_age: float | None = STALE_TMP_AGE
    ) -> None:
        self.path = os.fspath(path)
        self.mailbox = self.mailbox_class(self.path, create=create)
        if tmp_max_age is not None:
            self.remove_stale_tmp(tmp_max_age)

    def remove_stale_tmp(self, max_age: float = STALE_TMP_AGE) -> int:
        """Remove the files in ``tmp/`` neither read nor written for
        ``max_age`` seconds (the Maildir convention's 36 hours by default);
        how many were removed. A younger file may be a delivery in progress,
        ours or another program's."""
        tmp = os.path.join(self.path, "tmp")
        cutoff = time.time() - max_age
        removed = 0
        try:
            entries = list(os.scandir(tmp))
        except FileNotFoundError:
            return 0
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
                if stat.S_ISREG(info.st_mode) and max(info.st_atime, info.st_mtime) < cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue  # another process removed it first
        if removed:
            log.info("removed %d stale file(s) from %s (left by an interrupted delivery)", removed, tmp)
        return removed

    def store(self, envelope: Envelope) -> None:
        content = envelope.content
        first_eol = content.find(b"\n")
        eol = b"\n" if first_eol >= 0 and content[first_eol - 1:first_eol] != b"\r" else b"\r\n"
        message = _return_path(envelope, eol) + content
        for attempt in range(self.name_retries):
            try:
                key = self.mailbox.add(message)
            except mailbox.ExternalClashError:
                if attempt == self.name_retries - 1:
                    raise
                continue
            # The link is an entry in new/: on disk only once new/ is.
            _fsync_directory(os.path.join(self.path, "new"))
            log.debug("stored a message from <%s> in %s as %s", envelope.mail_from, self.path, key)
            return


class Mbox(_Store):
    """Appends each message to an mbox file with the standard library's ``mailbox.mbox``.

    Each message gets a ``From <sender> <date>`` separator line (the sender
    ``MAILER-DAEMON`` for the null sender) and a ``Return-Path: <mail_from>``
    header, its CRLF line endings become LF (mbox is a Unix file format) and
    ``mailbox`` quotes body lines starting ``From `` as ``>From ``.

    Locking: deliveries to one file from this process are serialised by a
    thread lock (shared by all ``Mbox`` objects for that path); the file is
    locked with ``mailbox``'s ``lock()`` (``lockf`` and a ``.lock``
    dot-lock, which other mail programs honour) around the append and the
    ``flush()`` (fsync). ``lock()`` does not wait, so it is retried until
    ``lock_timeout`` seconds have passed; then the message is refused with
    ``450 4.2.0`` (mailbox busy) and the sender tries again later.

    Durability: ``flush()`` fsyncs the file after each append, and the
    file's directory is fsynced when the file is opened (or created), all
    before the sender hears 250.

    Atomicity, as far as mbox allows: the append and the fsync happen under
    the lock, and if either fails the file is truncated back to its length
    before the append, so it is left as it was. What mbox cannot promise: a
    crash (of the process or the machine) in the middle of the write leaves a
    partial message at the end of the file, which the next delivery would
    follow; Maildir has no such window.

    The ``mailbox.mbox`` object is kept open between deliveries, so its
    index of the file is read once, not on every message. If another
    program replaces the file (a mail reader expunging by rewrite and
    rename), the next delivery notices the new inode and reopens it.
    ``close()`` releases the file.
    """

    mailbox_class: ClassVar[type[mailbox.mbox]] = mailbox.mbox
    lock_poll = 0.05  # seconds between attempts to take a busy lock
    # One thread lock per file, shared by every Mbox object of this process:
    # lockf locks belong to the process (and closing any descriptor of the
    # file drops them), and mailbox names its dot-lock's temporary file by
    # pid and second, so neither separates two threads of one process.
    _path_locks: ClassVar[dict[str, threading.Lock]] = {}
    _registry_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self, path: str | os.PathLike[str], *, create: bool = True, lock_timeout: float = 10.0
    ) -> None:
        self.path = os.fspath(path)
        self.create = create
        self.lock_timeout = lock_timeout
        with self._registry_lock:
            key = os.path.realpath(self.path)
            self._lock = self._path_locks.setdefault(key, threading.Lock())
        self._box: mailbox.mbox | None = None
        self._identity: tuple[int, int] | None = None
        with self._lock:
            self._open()

    def _open(self) -> mailbox.mbox:
        if self._box is None:
            self._box = self.mailbox_class(self.path, create=self.create)
            # The file may have just been made: its directory entry must be
            # on disk before a 250 promises anything (appends are fsynced by
            # flush()).
            _fsync_directory(os.path.dirname(os.path.abspath(self.path)))
            info = os.stat(self.path)
            self._identity = (info.st_dev, info.st_ino)
        return self._box

    def _current(self) -> bool:
        """Is the open file still the one at ``path``?"""
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return False
        return (info.st_dev, info.st_ino) == self._identity

    def _discard(self) -> None:
        box, self._box = self._box, None
        if box is not None:
            try:
                box.close()  # unlocks too
            except OSError:
                log.exception("closing mbox %s", self.path)

    def _locked_box(self, deadline: float) -> mailbox.mbox:
        while True:
            box = self._open()
            try:
                box.lock()
            except (mailbox.ExternalClashError, FileExistsError):
                if time.monotonic() >= deadline:
                    raise SMTPError(450, "4.2.0", "Mailbox busy (locked), try again later") from None
                time.sleep(self.lock_poll)
                continue
            if self._current():
                return box
            self._discard()  # replaced under us: open the new file

    def store(self, envelope: Envelope) -> None:
        sender = envelope.mail_from
        if not sender or any(ch.isspace() for ch in sender):
            sender = "MAILER-DAEMON"
        message = (
            b"From " + sender.encode("utf-8", "surrogateescape") + b" "
            + time.asctime(time.gmtime()).encode("ascii") + b"\n"
            + _return_path(envelope, b"\n") + envelope.content.replace(b"\r\n", b"\n")
        )
        deadline = time.monotonic() + self.lock_timeout
        if not self._lock.acquire(timeout=self.lock_timeout):
            raise SMTPError(450, "4.2.0", "Mailbox busy, try again later")
        try:
            box = self._locked_box(deadline)
            try:
                before = os.path.getsize(self.path)
                try:
                    box.add(message)
                    box.flush()
                except BaseException:
                    self._roll_back(before)
                    raise
            finally:
                if self._box is box:
                    box.unlock()
        finally:
            self._lock.release()

    def _roll_back(self, length: int) -> None:
        """Cut the file back to ``length`` and forget the open object, whose
        index now names a message that is not there."""
        try:
            os.truncate(self.path, length)
        except OSError:
            log.exception("could not roll back mbox %s to %d octets", self.path, length)
        self._discard()

    def close(self) -> None:
        with self._lock:
            self._discard()


# -- Relay ----------------------------------------------------------------------


class _Refusal(SMTPError):
    """The upstream's refusal, as our reply, with the upstream's result if any."""

    def __init__(self, reply: Reply, result: SendResult | None = None) -> None:
        super().__init__(reply)
        self.result = result


def _upstream_reply(reply: Reply) -> Reply:
    """The upstream's reply as ours: same code and enhanced code, text
    prefixed ``upstream: ``. A 421 (the upstream closing) becomes 451:
    our connection with the sender is not closing."""
    code = 451 if reply.code == 421 else reply.code
    if not 400 <= code < 600:  # not a refusal: cannot happen for an error
        return Reply.of(451, "4.3.0", f"upstream: unexpected reply {reply}")
    enhanced = reply.enhanced
    if enhanced is not None and enhanced.klass != code // 100:
        enhanced = None
    return Reply.of(code, enhanced, "upstream: " + reply.text)


def _prefer_transient(replies: Sequence[Reply]) -> Reply:
    """Of refusals for several recipients, the one to give the sender: a
    transient one if there is any, so nothing that may yet go through bounces."""
    for reply in replies:
        if reply.is_transient or reply.code == 421:
            return reply
    return replies[0]


# What connecting (greeting, EHLO, STARTTLS, AUTH) or a step may raise.
_CONNECT_ERRORS = (OSError, MailwireError, asyncio.TimeoutError)


class _Upstream:
    """One sender session's connection to the upstream, driven command by
    command on the event loop (``AsyncSMTPClient``: no thread per session).
    The upstream's answer to each MAIL and RCPT becomes ours, so every
    refusal reaches the sender in the reply to the command it refuses."""

    def __init__(self, relay: Relay) -> None:
        self._relay = relay
        self._client = AsyncSMTPClient(relay.host, relay.port, auto_reconnect=False, **relay._settings())

    async def mail(self, address: str, options: MailOptions) -> None:
        client, relay = self._client, self._relay
        if not client.connected:
            try:
                await client.connect()
            except _CONNECT_ERRORS as err:
                await client.close()
                raise relay._connect_failure(err) from err
        caps = client.capabilities
        passed = _mail_options(options, caps)
        _check_requiretls(passed, client.is_tls, caps)
        if passed.smtputf8 and not caps.smtputf8:
            raise SMTPError(554, "5.3.3", "upstream cannot take this message: it does not offer SMTPUTF8")
        await self._check(client.mail(address, passed))

    async def rcpt(self, address: str, options: RcptOptions) -> None:
        caps = self._client.capabilities
        passed = _passed_rcpt_options(options, caps)
        await self._check(self._client.rcpt(address, passed))

    async def data(self, content: bytes) -> None:
        try:
            _check_8bit(content, self._client.capabilities)
        except SMTPError:
            await self.reset()
            raise
        try:
            await self._check(self._client.data(content))
        except _Refusal:
            await self.reset()  # a refused DATA leaves the upstream's transaction open
            raise

    async def _check(self, step: Awaitable[Reply]) -> None:
        try:
            reply = await step
        except (*_CONNECT_ERRORS, NotSupportedError, LocalProtocolError) as err:
            raise self._relay._step_failure(err) from err
        if not reply.is_positive:
            raise _Refusal(_upstream_reply(reply))

    async def reset(self) -> None:
        """End the upstream transaction (RSET); a connection in trouble is dropped."""
        if not self._client.connected:
            return
        try:
            await self._client.rset()
        except _CONNECT_ERRORS:
            await self._client.close()

    async def close(self) -> None:
        await self._client.quit()


class _RelaySession(BaseSession):
    """SMTP: each command is relayed as it comes (see ``_Upstream``). LMTP:
    the whole envelope after the data, each recipient getting its own
    upstream reply (``deliver``). A BINARYMIME message, which needs the
    upstream's CHUNKING, goes whole after the data in either mode."""

    def __init__(self, info: SessionInfo, relay: Relay) -> None:
        super().__init__(info)
        self._relay = relay
        self._upstream: _Upstream | None = None
        self._live = False  # this transaction is being relayed command by command

    async def mail(self, address: str, options: MailOptions) -> None:
        self._live = not self.info.lmtp and options.body != "BINARYMIME"
        if not self._live:
            return
        if self._upstream is None:
            self._upstream = _Upstream(self._relay)
        await self._upstream.mail(address, options)

    async def rcpt(self, address: str, options: RcptOptions) -> None:
        if self._live and self._upstream is not None:
            await self._upstream.rcpt(address, options)

    async def data(self, envelope: Envelope) -> None:
        if self._live and self._upstream is not None:
            self._live = False
            await self._upstream.data(envelope.content)
            return
        result = await asyncio.to_thread(self._relay.forward, envelope)
        for rcpt, reply in result.refused.items():
            log.warning(
                "relay %s:%s refused recipient <%s> of a message from <%s> after we accepted it"
                " (not reported to the sender): %s",
                self._relay.host, self._relay.port, rcpt, envelope.mail_from, reply,
            )

    async def reset(self) -> None:
        if self._live and self._upstream is not None:
            self._live = False
            await self._upstream.reset()

    async def close(self) -> None:
        upstream, self._upstream = self._upstream, None
        if upstream is not None:
            await upstream.close()

    async def deliver(self, envelope: Envelope) -> Sequence[SMTPError | None]:
        """LMTP: each recipient gets the upstream's own verdict on it."""
        try:
            result = await asyncio.to_thread(self._relay.forward, envelope)
        except _Refusal as refusal:
            if refusal.result is None:
                return [refusal] * len(envelope.rcpt_to)
            result = refusal.result
        except SMTPError as err:
            return [err] * len(envelope.rcpt_to)
        outcomes: list[SMTPError | None] = []
        for rcpt in envelope.rcpt_to:
            reply = result.recipients.get(rcpt)
            if reply is None:
                outcomes.append(SMTPError(451, "4.3.0", "upstream gave no reply for this recipient"))
            elif reply.is_positive:
                outcomes.append(None)
            else:
                outcomes.append(SMTPError(_upstream_reply(reply)))
        return outcomes


class Relay:
    """Forwards each message to an upstream server with mailwire's ``SMTPClient``.

    ``Relay(host, port, tls="starttls", auth=(user, password),
    ssl_context=..., timeout=60, **client_kwargs)``: the client options are
    ``SMTPClient``'s (``tls`` is ``starttls``, ``implicit``, ``none`` or
    ``opportunistic``; certificates are verified unless ``ssl_context`` says
    otherwise; ``allow_plaintext_auth=True`` lets AUTH cross a plaintext
    channel). ``port`` None means 25 (465 for ``tls="implicit"``).

    SMTP: each sender session gets one upstream connection (mailwire's
    ``AsyncSMTPClient``, on the server's own event loop), opened at its
    first MAIL and closed (QUIT) when the session ends, and every MAIL, RCPT
    and the data are relayed as the sender gives them; RSET, or a
    transaction the sender abandons, resets the upstream's. So the
    sender hears the upstream's verdict on each command in the reply to that
    command: a recipient the upstream refuses is refused to the sender, the
    message goes to the others, and nothing is accepted that the upstream
    did not accept. LMTP: the whole envelope is forwarded after the data on
    a connection of its own (the blocking ``SMTPClient`` in a worker thread,
    ``asyncio.to_thread``), and each recipient gets the upstream's reply
    for it (``LMTPSession.deliver``). A BINARYMIME message (which needs the
    upstream's CHUNKING) also goes whole after the data; over SMTP, a
    recipient the upstream then refuses while taking others can only be
    logged (WARNING, ``mailwire.server.handlers``).

    What the sender hears:

    * the upstream refuses the sender, a recipient, or the data: the
      upstream's reply (code and enhanced code; text prefixed ``upstream: ``).
      A 421 becomes 451.
    * the upstream cannot be reached (connection refused, timeout, DNS):
      ``451 4.4.1 upstream unreachable: ...``; the connection is lost during
      the transaction: ``451 4.4.2``; TLS fails or is not offered:
      ``451 4.7.5``; the upstream refuses our credentials: ``451 4.7.0``
      (transient: it is this relay's configuration, not the sender's fault);
      the upstream lacks an extension the message needs (SMTPUTF8, 8BITMIME,
      BINARYMIME): ``554 5.3.3`` (8-bit content: ``554 5.6.3``); REQUIRETLS
      not possible: ``550 5.7.30``.

    Also: a connection lost after the content was sent is reported as a
    temporary failure although the upstream may have taken the message
    (the sender retries, the upstream may see it twice: RFC 1047's problem).
    MAIL and RCPT parameters are passed on only where the upstream offers
    their extension (DSN parameters are dropped otherwise, without a
    "relayed" DSN); unknown parameters and ``AUTH=`` are not passed on. No
    ``Received`` header is added.
    """

    def __init__(
        self,
        host: str,
        port: int | None = None,
        *,
        tls: TLSMode = "starttls",
        auth: tuple[str, str] | ClientMechanism | None = None,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float | None = 60.0,
        **client_kwargs: Any,
    ) -> None:
        if "connect" in client_kwargs:
            raise TypeError("Relay opens its own connections; do not pass connect")
        if ssl_context is None and tls != "none":
            # One context for every connection: loading the CA store per
            # message would cost more than the handshake.
            ssl_context = ssl.create_default_context()
        self.host = host
        self.tls: TLSMode = tls
        self.auth = auth
        self.ssl_context = ssl_context
        self.timeout = timeout
        self.client_kwargs = client_kwargs
        # Build one client now so that a bad option fails here, not per message.
        self.port = self._client(port).port

    def _settings(self) -> dict[str, Any]:
        """The upstream client's settings, for either client."""
        return dict(
            tls=self.tls, auth=self.auth, ssl_context=self.ssl_context, timeout=self.timeout,
            **self.client_kwargs,
        )

    def _client(self, port: int | None) -> SMTPClient:
        return SMTPClient(self.host, port, connect=False, **self._settings())

    async def new_session(self, info: SessionInfo) -> Session:
        return _RelaySession(info, self)

    def forward(self, envelope: Envelope) -> SendResult:
        """Send ``envelope`` upstream (blocking); the result, with any
        recipients refused while others were accepted in ``result.refused``.

        Raises ``SMTPError`` with the reply for the sender when nothing was
        delivered (see the class docstring for which reply).
        """
        client = self._client(self.port)
        try:
            self._connect(client)
            return self._send(client, envelope)
        finally:
            client.quit()  # closes; never raises

    def _where(self) -> str:
        return f"{self.host}:{self.port}"

    def _fail(self, code: int, enhanced: str, text: str) -> SMTPError:
        log.warning("relay %s: %s", self._where(), text)
        return SMTPError(code, enhanced, text)

    def _connect(self, client: SMTPClient) -> None:
        try:
            client.connect()
        except _CONNECT_ERRORS as err:
            raise self._connect_failure(err) from err

    def _connect_failure(self, err: BaseException) -> SMTPError:
        """What the sender hears when connecting upstream failed with ``err``."""
        if isinstance(err, AuthenticationError):
            return self._fail(451, "4.7.0", f"upstream refused the relay's credentials: {err}")
        if isinstance(err, SMTPError):  # a refusing greeting or EHLO, or a 421
            log.warning("relay %s refused the connection: %s", self._where(), err.reply)
            return _Refusal(_upstream_reply(err.reply))
        if isinstance(err, (TLSRequiredError, ssl.SSLError)):
            return self._fail(451, "4.7.5", f"upstream TLS failed: {err}")
        return self._fail(451, "4.4.1", f"upstream unreachable: {self._where()}: {err}")

    def _send(self, client: SMTPClient, envelope: Envelope) -> SendResult:
        caps = client.capabilities
        options = _mail_options(envelope.mail_options, caps)
        _check_requiretls(options, client.is_tls, caps)
        _check_8bit(envelope.content, caps)
        try:
            return client.send(
                envelope.content, envelope.mail_from, envelope.rcpt_to,
                mail_options=options, rcpt_options=_rcpt_options(envelope, caps),
            )
        except (RecipientsRefused, DataRefused) as err:
            replies = list(err.result.recipients.values()) if err.result is not None else []
            chosen = _prefer_transient(replies) if isinstance(err, RecipientsRefused) else err.reply
            raise _Refusal(_upstream_reply(chosen), err.result) from err
        except (*_CONNECT_ERRORS, NotSupportedError, LocalProtocolError) as err:
            raise self._step_failure(err) from err

    def _step_failure(self, err: BaseException) -> SMTPError:
        """What the sender hears when a step of the upstream transaction failed."""
        if isinstance(err, SMTPError):  # SenderRefused, a 421, SIZE over the upstream's limit
            return _Refusal(_upstream_reply(err.reply))
        if isinstance(err, (NotSupportedError, LocalProtocolError)):
            return SMTPError(554, "5.3.3", f"upstream cannot take this message: {err}")
        return self._fail(451, "4.4.2", f"upstream connection lost: {err}")


def _check_requiretls(options: MailOptions, tls: bool, caps: Capabilities) -> None:
    if options.requiretls and not (tls and caps.requiretls):
        raise SMTPError(550, "5.7.30", "REQUIRETLS support required, and the upstream does not offer it")


def _check_8bit(content: bytes, caps: Capabilities) -> None:
    if has_8bit(content) and not caps.eightbitmime:
        raise SMTPError(554, "5.6.3", "upstream does not take 8-bit data (no 8BITMIME)")


def _mail_options(options: MailOptions, caps: Capabilities) -> MailOptions:
    """The MAIL parameters to pass on: only those the upstream has the extension for."""
    body = options.body
    if body == "7BIT" or (body == "8BITMIME" and not caps.eightbitmime):
        body = None  # 7BIT is the default; 8-bit content without 8BITMIME is refused
    return MailOptions(
        body=body,
        smtputf8=options.smtputf8,
        ret=options.ret if caps.dsn else None,
        envid=options.envid if caps.dsn else None,
        requiretls=options.requiretls,
        mt_priority=options.mt_priority if caps.has("mt-priority") else None,
    )


def _passed_rcpt_options(options: RcptOptions, caps: Capabilities) -> RcptOptions:
    """The RCPT parameters to pass on: DSN's, if the upstream offers DSN."""
    return RcptOptions(notify=options.notify, orcpt=options.orcpt) if caps.dsn else RcptOptions()


def _rcpt_options(envelope: Envelope, caps: Capabilities) -> dict[str, RcptOptions] | None:
    if not caps.dsn or not envelope.rcpt_options:
        return None
    chosen = {
        rcpt: _passed_rcpt_options(opts, caps) for rcpt, opts in zip(envelope.rcpt_to, envelope.rcpt_options)
    }
    return chosen if any(o.notify is not None or o.orcpt is not None for o in chosen.values()) else None
