"""Transactions without PIPELINING: one command at a time, as RFC 5321 requires.

Each command waits for its reply before the next goes: MAIL, each RCPT, then
DATA (or the BDAT chunks, with CHUNKING). Nobody accepted, or the data
refused: RSET, since the transaction is still open (RFC 5321 4.1.1.5); a
refused BDAT leaves the state indeterminate (RFC 3030 2), so RSET after it too.
"""

from __future__ import annotations

from ..protocol.events import Bdat, Data, EndOfData, Mail, Rcpt, Rset
from .bdat import BdatFramer
from .steps import Program, Write, checked_data_reply, command, read
from .transaction import ContentReader, Transaction, read_final, write_content

__all__ = ["one_by_one"]


def one_by_one(txn: Transaction, chunking: bool, lmtp: bool) -> Program[None]:
    """Send ``txn`` a command at a time; its replies fill it in."""
    txn.mail_reply = yield from command(Mail(txn.mail_from, txn.mail_options))
    if not txn.mail_reply.is_positive:
        return
    for event in txn.envelope()[1:]:
        assert isinstance(event, Rcpt)
        txn.rcpt_replies[event.address] = yield from command(event)
    if not txn.accepted:
        yield from command(Rset())
        return
    if chunking:
        framer = BdatFramer(txn)
        while (framed := (yield from framer.next())) is not None:
            yield Write(framed)
            last = isinstance(framed[0], Bdat) and framed[0].last
            if last:
                yield from read_final(txn, lmtp)
                if txn.data_reply is not None and not txn.data_reply.is_positive:
                    yield from command(Rset())  # RFC 3030 2, as for any refused BDAT
                return
            reply = yield from read()
            if not reply.is_positive:
                txn.data_reply = reply
                yield from command(Rset())
                return
        return
    data = checked_data_reply((yield from command(Data())))
    if data.code != 354:
        txn.data_reply = data
        yield from command(Rset())
        return
    yield from write_content(ContentReader(txn.content, txn), [EndOfData()])
    yield from read_final(txn, lmtp)
