"""``Relay``: each message forwarded upstream with mailwire's own client, as it arrives.

Over SMTP a session relays each MAIL, RCPT and the data as the sender gives
them, on one upstream connection of its own (``AsyncSMTPClient``, on the
server's event loop), so every upstream refusal is the sender's reply to
the command it refuses. Over LMTP, and for BINARYMIME, the whole envelope
goes upstream once the data begins, on a connection of its own, and each
recipient gets the upstream's reply for it. Either way the content is
streamed (``streaming.StreamingSession``): each piece goes upstream as it
comes from the sender (``_Feed``), so no session holds a whole message,
and a message that does not end whole is never ended upstream either (the
upstream connection is closed before the end of data: see ``_Feed``).
Translating upstream failures into replies for the sender is written once,
in ``Relay``; the class docstring lists them. The only backend, and the
only module of ``mailwire.server``, that uses the client.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any

from ...client.aio import AsyncSMTPClient
from ...client.message import has_8bit
from ...client.sync import SMTPClient, TLSMode
from ...errors import (
    AuthenticationError, DataRefused, LocalProtocolError, MailwireError, NotSupportedError,
    RecipientsRefused, SMTPError, TLSRequiredError,
)
from ...protocol.capabilities import Capabilities
from ...protocol.params import MailOptions, RcptOptions
from ...reply import Reply
from ...result import SendResult
from ...sasl import ClientMechanism
from ..envelope import Envelope, SessionInfo
from ..session import BaseSession, Session
from ..streaming import MessageContent

__all__ = ["Relay"]

log = logging.getLogger(__name__)


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


class _Feed:
    """The sender's content on its way upstream: ``first`` (already taken),
    then the rest as it comes, each piece checked for 8-bit octets where the
    upstream cannot take them (RFC 6152: without 8BITMIME).

    The client reads it while the upstream DATA (or BDAT) is open; whatever
    it raises (``MessageAborted``: the sender left, or the server refused
    the message part-way; the 8-bit refusal) makes the client close the
    upstream connection before the end of data, so nothing is delivered
    upstream (see ``client.steps.Pull``). ``error`` keeps it, to tell it
    from the upstream's own failures.
    """

    def __init__(self, first: bytes | None, rest: AsyncIterator[bytes], refuse_8bit: bool) -> None:
        self._first = first
        self._rest = rest
        self._refuse_8bit = refuse_8bit
        self.error: BaseException | None = None

    def __aiter__(self) -> _Feed:
        return self

    async def __anext__(self) -> bytes:
        first = self._first
        if first is not None:
            self._first = None
            return first
        try:
            piece = await anext(self._rest)
            rest = self._rest
            if isinstance(rest, MessageContent):
                piece = await _gather(piece, rest)
            if self._refuse_8bit and has_8bit(piece):
                raise _eight_bit_refusal()
        except StopAsyncIteration:
            raise
        except BaseException as err:
            self.error = err
            raise
        return piece


# One upstream write takes at least this much of the message (waiting for
# the sender's next reads until then, or its end) and what has arrived
# behind it, up to _GATHER: a write per socket read cost the relay an eighth
# more CPU per 100 KB message, and a message no larger goes in one write
# with its end (``_whole``), as when messages were held whole.
_GATHER_LEAST = 1 << 18
_GATHER = 1 << 20


async def _gather(piece: bytes, content: MessageContent) -> bytes:
    """``piece`` and what follows it, up to the sizes above, joined."""
    parts = [piece]
    size = len(piece)
    while size < _GATHER and (content.buffered or (size < _GATHER_LEAST and not content.ended)):
        part = await anext(content, None)
        if part is None:
            break
        parts.append(part)
        size += len(part)
    return parts[0] if len(parts) == 1 else b"".join(parts)


async def _first_piece(content: AsyncIterator[bytes]) -> bytes | None:
    """The first piece of a message, gathered (``_gather``)."""
    first = await anext(content, None)
    if first is not None and isinstance(content, MessageContent):
        first = await _gather(first, content)
    return first


async def _whole(first: bytes | None, content: AsyncIterator[bytes]) -> bytes | None:
    """The whole message, if ``first`` is all of it (it had ended when it was
    taken: the iteration is then taken to its end); else None."""
    if isinstance(content, MessageContent) and content.ended and not content.buffered:
        await _drain(content)
        return first or b""
    return None


async def _once(content: bytes) -> AsyncIterator[bytes]:
    """A message held whole, as a stream of one piece (none if empty)."""
    if content:
        yield content


async def _drain(content: AsyncIterator[bytes]) -> None:
    """Read what the upstream never took: a streaming session answers once
    the message has ended (``MessageAborted`` goes on)."""
    async for _ in content:
        pass


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

    async def data(self, content: bytes | AsyncIterator[bytes]) -> None:
        """The content, forwarded piece by piece as it comes.

        Its first piece is looked at before DATA goes up: 8-bit content for
        an upstream without 8BITMIME found there (a small message: all of
        it) is refused with the upstream transaction reset, and nothing
        sent. Found later, or the message aborted (``MessageAborted``),
        part of it has gone upstream and a DATA cannot be taken back: the
        upstream connection is closed before the end of data (``_Feed``),
        so the upstream delivers nothing, and the next transaction opens a
        new one. A message that has all arrived by the time its first piece
        is taken (most small ones) goes up as one piece, in one write with
        the end of data.
        """
        refuse_8bit = not self._client.capabilities.eightbitmime
        first: bytes | None
        whole: bytes | None
        try:
            if isinstance(content, bytes):
                first, whole = content, content
            else:
                first = await _first_piece(content)
                whole = await _whole(first, content)
            if refuse_8bit and first is not None and has_8bit(first):
                raise _eight_bit_refusal()
        except Exception:
            await self.reset()
            raise
        try:
            if whole is not None or isinstance(content, bytes):
                await self._check(self._client.data(whole or b""))
            else:
                feed = _Feed(first, content, refuse_8bit)
                await self._check(self._client.data(feed), feed)
        except _Refusal:
            await self.reset()  # a refused DATA leaves the upstream's transaction open
            raise

    async def _check(self, step: Awaitable[Reply], feed: _Feed | None = None) -> None:
        try:
            reply = await step
        except (*_CONNECT_ERRORS, NotSupportedError, LocalProtocolError) as err:
            if feed is not None and err is feed.error:
                raise  # the sender's side stopped it, not the upstream
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
    the whole envelope once the data begins, each recipient getting its own
    upstream reply (``deliver_stream``). A BINARYMIME message, which needs
    the upstream's CHUNKING, goes that way in either mode. The content is
    streamed (``data_stream``, ``deliver_stream``); ``data`` and
    ``deliver``, for code that drives a session with a message held whole,
    stream it as one piece."""

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

    async def data_stream(self, envelope: Envelope, content: MessageContent) -> None:
        await self._data(envelope, content)

    async def data(self, envelope: Envelope) -> None:
        await self._data(envelope, envelope.content)

    async def _data(self, envelope: Envelope, content: bytes | AsyncIterator[bytes]) -> None:
        if self._live and self._upstream is not None:
            self._live = False
            await self._upstream.data(content)
            return
        pieces = _once(content) if isinstance(content, bytes) else content
        result = await self._relay.forward_stream(envelope, pieces)
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

    async def deliver_stream(self, envelope: Envelope, content: MessageContent) -> Sequence[SMTPError | None]:
        """LMTP: each recipient gets the upstream's own verdict on it."""
        return await self._deliver(envelope, content)

    async def deliver(self, envelope: Envelope) -> Sequence[SMTPError | None]:
        return await self._deliver(envelope, _once(envelope.content))

    async def _deliver(self, envelope: Envelope, content: AsyncIterator[bytes]) -> Sequence[SMTPError | None]:
        try:
            result = await self._relay.forward_stream(envelope, content)
        except _Refusal as refusal:
            await _drain(content)
            if refusal.result is None:
                return [refusal] * len(envelope.rcpt_to)
            result = refusal.result
        except SMTPError as err:
            await _drain(content)
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
    """Forwards each message to an upstream server with mailwire's own client, as it arrives.

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
    did not accept. LMTP: the whole envelope is forwarded once the data
    begins, on a connection of its own (``forward_stream``, on the event
    loop too), and each recipient gets the upstream's reply for it
    (``LMTPStreamingSession.deliver_stream``). A BINARYMIME message (which
    needs the upstream's CHUNKING) also goes that way; over SMTP, a
    recipient the upstream then refuses while taking others can only be
    logged (WARNING, ``mailwire.server.backends.relay``).

    Streaming: the content goes upstream piece by piece as the sender's
    arrive (``StreamingSession``), so a relay holds no whole message, and a
    sender that sends faster than the upstream takes is slowed down by the
    server's flow control. A message that does not end whole (the sender
    leaves, RSET between BDAT chunks, a size or line limit) is never ended
    upstream: the upstream connection is closed before the end of data (a
    DATA under way cannot be withdrawn otherwise), so the upstream
    delivers nothing. 8-bit content for an upstream without 8BITMIME is
    known only as it passes: found in the first piece (a small message:
    all of it), it is refused before DATA goes up; found later, the
    upstream connection is closed the same way; either way the sender
    hears ``554 5.6.3`` and nothing is delivered.

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

    async def forward_stream(self, envelope: Envelope, content: AsyncIterator[bytes]) -> SendResult:
        """``forward`` for content that is still arriving, on the event loop
        (``AsyncSMTPClient``, a connection of its own): the envelope goes up
        at once and each piece of ``content`` as it comes. If ``content``
        raises (``MessageAborted``), or holds an 8-bit octet the upstream
        cannot take, the upstream connection is closed before the end of
        the data, so nothing is delivered, and that error (the 8-bit one:
        ``554 5.6.3``) is raised.
        """
        client = AsyncSMTPClient(self.host, self.port, auto_reconnect=False, **self._settings())
        try:
            try:
                await client.connect()
            except _CONNECT_ERRORS as err:
                raise self._connect_failure(err) from err
            caps = client.capabilities
            options = _mail_options(envelope.mail_options, caps)
            _check_requiretls(options, client.is_tls, caps)
            feed = _Feed(None, content, not caps.eightbitmime)
            try:
                return await client.send(
                    feed, envelope.mail_from, envelope.rcpt_to,
                    mail_options=options, rcpt_options=_rcpt_options(envelope, caps),
                )
            except Exception as err:
                failure = err if err is feed.error else self._send_failure(err)
                if failure is err:
                    raise
                raise failure from err
        finally:
            await client.quit()  # closes; never raises

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
        if has_8bit(envelope.content) and not caps.eightbitmime:
            raise _eight_bit_refusal()
        try:
            return client.send(
                envelope.content, envelope.mail_from, envelope.rcpt_to,
                mail_options=options, rcpt_options=_rcpt_options(envelope, caps),
            )
        except Exception as err:
            failure = self._send_failure(err)
            if failure is err:
                raise
            raise failure from err

    def _send_failure(self, err: Exception) -> Exception:
        """What the sender hears when sending the whole envelope failed with
        ``err`` (``err`` itself: not the upstream's doing)."""
        if isinstance(err, (RecipientsRefused, DataRefused)):
            replies = list(err.result.recipients.values()) if err.result is not None else []
            chosen = _prefer_transient(replies) if isinstance(err, RecipientsRefused) else err.reply
            return _Refusal(_upstream_reply(chosen), err.result)
        if isinstance(err, (*_CONNECT_ERRORS, NotSupportedError, LocalProtocolError)):
            return self._step_failure(err)
        return err

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


def _eight_bit_refusal() -> SMTPError:
    return SMTPError(554, "5.6.3", "upstream does not take 8-bit data (no 8BITMIME)")


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
