"""``Catcher``: the backend of a mail catcher, a ``Maildir`` whose messages are indexed.

It is the ``Maildir`` backend (``server/backends/maildir.py``: written as
it arrives, fsynced in ``tmp/``, linked into ``new/``) with two additions,
both through that backend's hooks rather than a copy of it:

* after ``Return-Path:`` it writes the envelope (``X-Mailwire-Envelope:``,
  the recipients and the AUTH user), so the mailboxes a message is shown
  in survive a rebuild of the index from the Maildir;
* once the file is in ``new/`` (and before the 250), it queues its name
  for the inbox's indexer (``Inbox.submit``; ``indexer.py``), which indexes
  in batches, in a thread, at once if someone waits for mail and always
  before the index is read: a test that sent a message finds it in the
  inbox as soon as its client returns, and a burst of mail is not slowed
  by an index transaction per message.

Indexing never costs a message: if it fails, the failure is logged, the
sender has heard 250 (the message is stored), and the index catches up at
its next sync (``Inbox.sync``, made when an inbox is opened).
"""

from __future__ import annotations


from ..server.backends.maildir import Maildir, MaildirSession
from ..server.envelope import Envelope, SessionInfo
from ..server.session import Session
from .store import Inbox
from .summary import envelope_trace, message_id_of, unique_name

__all__ = ["Catcher", "CatcherSession"]


class Catcher(Maildir):
    """Stores each message in ``inbox``'s Maildir and indexes it there."""

    def __init__(self, inbox: Inbox) -> None:
        super().__init__(inbox.path)
        self.inbox = inbox

    async def new_session(self, info: SessionInfo) -> Session:
        return CatcherSession(info, self)

    def trace(self, envelope: Envelope, eol: bytes) -> bytes:
        user = envelope.session.auth_identity if envelope.session is not None else None
        return super().trace(envelope, eol) + envelope_trace(envelope.rcpt_to, user, eol)

    def store(self, envelope: Envelope) -> None:
        self.deliver(envelope)

    def deliver(self, envelope: Envelope) -> str:
        """``store``, giving the message's ID: how a message that did not
        come over SMTP (the web API's send) enters the inbox the same way."""
        name = self.add(envelope)
        self.inbox.submit(name)
        return message_id_of(unique_name(name))


class CatcherSession(MaildirSession):
    def __init__(self, info: SessionInfo, catcher: Catcher) -> None:
        super().__init__(info, catcher)
        self.catcher = catcher

    async def stored(self, envelope: Envelope, name: str) -> None:
        self.catcher.inbox.submit(name)  # queued: indexed in batches by the inbox's indexer
