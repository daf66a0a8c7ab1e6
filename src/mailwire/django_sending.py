"""Sending a list of messages the way the Django backend needs, without Django.

``mailwire.django`` turns Django's messages into ``Item``s (content and
envelope, by Django's rules) and counts what comes back; this module sends
them and gives one outcome per item, on whichever sender the backend has:
``send_many`` on one blocking connection, ``SMTPPool.send`` for each item on
a pool (from async code, or from blocking code through ``LoopPool``), or an
``AsyncLMTPClient``. ``smtplib_error`` translates an outcome into the
exception Django's own backend would raise. Nothing here imports Django, so
it is typed and tested like the rest of mailwire.
"""

from __future__ import annotations

import asyncio
import re
import smtplib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Union

from . import (
    AsyncLMTPClient, AuthenticationError, ConnectionClosed, DataRefused, MailwireError, NotSupportedError,
    PoolClosed, RecipientsRefused, RemoteProtocolError, SenderRefused, SendResult, SMTPClient, SMTPError,
    SMTPPool, TLSRequiredError,
)

__all__ = [
    "Item", "Outcome", "LoopPool", "send_many", "asend_many", "pool_send", "close_sender", "smtplib_error", "addr_spec",
]

Outcome = Union[SendResult, BaseException]
# What leaves a connection (and so every message still in flight on it)
# unusable, rather than refusing one message.
_CONNECTION_ERRORS = (OSError, asyncio.TimeoutError, ConnectionClosed, RemoteProtocolError)


@dataclass(frozen=True, slots=True)
class Item:
    """One message as it goes on the wire: content and envelope, Django's way."""

    content: bytes
    mail_from: str
    rcpt_to: list[str]


# -- sending -----------------------------------------------------------


def send_many(client: SMTPClient, items: list[Item]) -> list[Outcome]:
    """One outcome per item, from one pipelined run on ``client``.

    A connection the server dropped since the last run is opened again
    first. When the connection fails mid-run, ``send_many`` cannot say which
    messages got through, so each carries the error (it is raised, and
    ``fail_silently`` counts none of them as sent). When it refuses the run
    before a byte was sent (a message too big for the server's SIZE), each
    message is sent on its own, so that one is refused and not the others.
    """
    if not items:
        return []
    try:
        if not client.connected:
            client.connect()
    except (MailwireError, OSError, asyncio.TimeoutError) as err:
        return [err] * len(items)
    before = client.round_trips
    try:
        return list(client.send_many([(item.content, item.mail_from, item.rcpt_to) for item in items]))
    except _CONNECTION_ERRORS as err:
        return [err] * len(items)
    except (MailwireError, ValueError) as err:
        if client.round_trips != before or not client.connected:
            return [err] * len(items)
    outcomes: list[Outcome] = []
    for i, item in enumerate(items):
        try:
            outcomes.append(client.send(item.content, item.mail_from, item.rcpt_to))
        except _CONNECTION_ERRORS as err:
            return outcomes + [err] * (len(items) - i)
        except (MailwireError, ValueError) as err:
            outcomes.append(err)
    return outcomes


async def asend_many(client: AsyncLMTPClient, items: list[Item]) -> list[Outcome]:
    """``send_many`` for the asyncio LMTP client."""
    if not items:
        return []
    before = client.round_trips
    try:
        return list(await client.send_many([(item.content, item.mail_from, item.rcpt_to) for item in items]))
    except _CONNECTION_ERRORS as err:
        return [err] * len(items)
    except (MailwireError, ValueError) as err:
        if client.round_trips != before or not client.connected:
            return [err] * len(items)
    outcomes: list[Outcome] = []
    for i, item in enumerate(items):
        try:
            outcomes.append(await client.send(item.content, item.mail_from, item.rcpt_to))
        except _CONNECTION_ERRORS as err:
            return outcomes + [err] * (len(items) - i)
        except (MailwireError, ValueError) as err:
            outcomes.append(err)
    return outcomes


async def pool_send(pool: SMTPPool, items: Iterable[Item]) -> tuple[list[Item], list[Outcome]]:
    """Every item through the pool; the items sent and one outcome each.

    ``items`` may render each message as it is taken (a generator): each is
    handed to the pool at once and the loop runs before the next is made, so
    the connections write and read while Django renders the next message
    (rendering costs about as much as a round trip on a LAN). The pool keeps
    each message's own outcome, those answered before a connection failed
    included.
    """
    taken: list[Item] = []
    sends: list[asyncio.Future[SendResult]] = []
    try:
        for item in items:
            taken.append(item)
            sends.append(asyncio.ensure_future(pool.send(item.content, item.mail_from, item.rcpt_to)))
            await asyncio.sleep(0)
    except Exception:
        await asyncio.gather(*sends, return_exceptions=True)  # handed over: let them finish
        raise
    return taken, list(await asyncio.gather(*sends, return_exceptions=True))


async def close_sender(sender: SMTPPool | AsyncLMTPClient, timeout: float | None) -> None:
    if isinstance(sender, SMTPPool):
        await sender.close(timeout if timeout is not None else 30.0)
    else:
        await sender.quit()


class LoopPool:
    """An ``SMTPPool`` on an event loop of its own, driven from blocking code.

    ``send_messages`` is blocking and may run in any thread; a pool is
    asyncio. Rather than a thread to host a loop, the backend owns a loop and
    runs it in the caller's thread for the length of each call (under the
    backend's lock, so one thread at a time). A thread that is already
    running a loop cannot run another: there ``asend_messages`` is the way.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, pool: SMTPPool) -> None:
        self.loop, self.pool = loop, pool

    @classmethod
    def open(cls, open_pool: Callable[[], Awaitable[SMTPPool]]) -> "LoopPool":
        """A new loop, and on it the pool ``open_pool()`` opens."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError(
                "pool_size > 1 runs its own event loop, and this thread is running one: "
                "use 'await backend.asend_messages(...)' here (or sync_to_async)"
            )
        loop = asyncio.new_event_loop()
        try:
            pool = loop.run_until_complete(open_pool())
        except BaseException:
            loop.close()
            raise
        return cls(loop, pool)

    def send(self, items: Iterable[Item]) -> tuple[list[Item], list[Outcome]]:
        return self.loop.run_until_complete(pool_send(self.pool, items))

    def close(self, timeout: float | None) -> None:
        try:
            self.loop.run_until_complete(close_sender(self.pool, timeout))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        finally:
            self.loop.close()


# -- smtplib's ways, mirrored ------------------------------------------------------------


def addr_spec(address: str) -> str:
    """The address smtplib's ``quoteaddr`` puts in MAIL/RCPT, without its
    brackets: what Django 5.2's ``sanitize_address`` output becomes on the wire.

    A plain ``local@domain`` (dot-atoms of letters, digits, ``_+-``) is its
    own answer, which spares ``quoteaddr``'s ``parseaddr`` for nearly every
    address (it cost a tenth of the backend's time a message); anything else
    goes through ``quoteaddr`` itself.
    """
    if _PLAIN_ADDRESS.match(address):
        return address
    quoted: str = smtplib.quoteaddr(address)  # what Django 5.2's smtplib puts between MAIL FROM: and CRLF
    return quoted[1:-1] if quoted.startswith("<") and quoted.endswith(">") else quoted


_ATOM = r"[A-Za-z0-9_+-]+"
_PLAIN_ADDRESS = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@{_ATOM}(?:\.{_ATOM})*\Z")


def smtplib_error(err: BaseException, *, opening: bool = False) -> BaseException:
    """The exception Django's backend (smtplib) raises where mailwire raised ``err``.

    A refusal keeps the server's code and text (smtplib's ``smtp_error`` is
    the reply's bytes). Socket and TLS errors while opening are raised as they
    are, as smtplib raises them; once sending, smtplib turns them into
    ``SMTPServerDisconnected``, and so does this. Anything else (a
    ValueError for an address, a bug) is left alone.
    """
    if isinstance(err, SenderRefused):
        return smtplib.SMTPSenderRefused(err.code, err.reply.message, err.sender)
    if isinstance(err, RecipientsRefused):
        return smtplib.SMTPRecipientsRefused(
            {rcpt: (reply.code, reply.message) for rcpt, reply in err.result.recipients.items()}
        )
    if isinstance(err, DataRefused):
        return smtplib.SMTPDataError(err.code, err.reply.message)
    if isinstance(err, AuthenticationError):
        return smtplib.SMTPAuthenticationError(err.code, err.reply.message)
    if isinstance(err, (TLSRequiredError, NotSupportedError)):
        return smtplib.SMTPNotSupportedError(str(err))
    if isinstance(err, SMTPError):
        if err.code == 421:  # the server is closing the connection
            return smtplib.SMTPServerDisconnected(str(err))
        if opening:
            return smtplib.SMTPConnectError(err.code, err.reply.message)
        return smtplib.SMTPResponseException(err.code, err.reply.message)
    if isinstance(err, (ConnectionClosed, RemoteProtocolError)):
        return smtplib.SMTPServerDisconnected(str(err) or type(err).__name__)
    if isinstance(err, (OSError, asyncio.TimeoutError)) and not opening:
        return smtplib.SMTPServerDisconnected(f"connection lost: {err or type(err).__name__}")
    if isinstance(err, PoolClosed) and not opening:  # the pool closed before it was sent
        return smtplib.SMTPServerDisconnected(str(err))
    return err
