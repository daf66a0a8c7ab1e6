"""Transactions over DATA, pipelined (RFC 2920): one round trip per message.

The envelope (MAIL, every RCPT, DATA) is one write, and the end of each
message goes out in the same write as the next envelope (RFC 2920 3.1 lets
content start a group), so a batch costs one round trip per message. That
write is formatted while the server works on the one before
(``protocol.lookahead.prepare_write``) and handed to the driver with the read,
which sends it the moment the core says the replies allow it
(``ClientConnection.content_allowed``), so no dialog code runs between the 354
and the content going out.

A refused DATA leaves its transaction open (RFC 5321 4.1.1.5): RSET goes in
front of the next one; an end of data answered, accepted or refused, leaves
nothing to reset.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import LocalProtocolError
from ..protocol.client import PreparedWrite, Sendable, prepare_write
from ..protocol.events import Data, EndOfData, MessageData, Rset
from .steps import Program, Read, Write, checked_data_reply, read_group
from .transaction import CHUNK, ContentReader, Transaction, write_content

__all__ = ["pipelined_data"]


def pipelined_data(batch: Sequence[Transaction], lmtp: bool) -> Program[None]:
    """One round trip per message: each message's content and end of data go
    in one write with the next envelope and DATA.

    That write is formatted while the server works on the one before (the
    round trip is the wait; formatting during it is free) and handed to the
    driver with the read, which sends it as soon as the 354 is in.
    """
    if not batch:
        return
    yield Write([*batch[0].envelope(), Data()])
    following = _opening(batch, 1)
    ahead = _ahead(batch[0], following)
    # Each read takes one whole group of replies: [RSET,] MAIL, each RCPT and
    # DATA of this transaction, behind the end-of-data reply(s) of the last.
    request = Read(1 + len(batch[0].rcpt_to) + 1, ahead)
    replies = yield from read_group(request)
    sent = request.written
    for i, txn in enumerate(batch):
        txn.take_envelope_replies(replies[:-1])
        data = checked_data_reply(replies[-1])
        if sent:
            txn.size = len(txn.content)  # type: ignore[arg-type]  # _ahead took only bytes
        elif data.code != 354:
            # DATA refused: if MAIL was accepted, the transaction is still open.
            txn.data_reply = data
            txn.settled = txn.outcome()
            txn.needs_reset = reset = bool(txn.mail_reply and txn.mail_reply.is_positive)
            if not following:
                return
            yield Write([Rset(), *following] if reset else following)
            after = _opening(batch, i + 2)
            ahead = _ahead(batch[i + 1], after)
            request = Read(reset + len(following), ahead)
            replies = yield from read_group(request)
            sent = request.written
            replies = replies[reset:]
            following = after
            continue
        elif txn.accepted:
            yield from write_content(ContentReader(txn.content, txn), [EndOfData(), *following])
        else:
            # DATA accepted with no recipient to deliver to: end it at once
            # with no content (RFC 2920 3.1), and the server refuses or drops it.
            yield Write([EndOfData(), *following])
        after = _opening(batch, i + 2)
        ahead = _ahead(batch[i + 1], after) if following else None
        finals = txn.replies_to_end(lmtp)
        request = Read(finals + len(following), ahead)
        replies = yield from read_group(request)
        sent = request.written
        txn.take_final_replies(replies[:finals], lmtp)
        # Worked out now, while the server reads the next write, rather
        # than for the whole batch after its last reply.
        txn.settled = txn.outcome()
        replies = replies[finals:]
        following = after


def _opening(batch: Sequence[Transaction], index: int) -> list[Sendable]:
    """The envelope and DATA of ``batch[index]``; nothing past the end."""
    return [*batch[index].envelope(), Data()] if index < len(batch) else []


def _ahead(txn: Transaction, following: list[Sendable]) -> PreparedWrite | None:
    """The write that ends ``txn`` and opens the next transaction, formatted
    now; None for content that is streamed in pieces (or will not format,
    which ``send`` then reports when it is really written)."""
    content = txn.content
    if not isinstance(content, bytes) or len(content) > CHUNK:
        return None
    events: list[Sendable] = [MessageData(content)] if content else []
    try:
        return prepare_write([*events, EndOfData(), *following])
    except LocalProtocolError:
        return None
