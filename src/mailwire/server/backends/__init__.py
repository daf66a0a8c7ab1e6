"""The backends mailwire ships: Sink, Printer, Maildir, Mbox and Relay, one module each.

Each is a ``Backend`` whose sessions follow the ``Session`` contract: they are
told of the complete message in ``data()`` (``Maildir``'s, as it arrives, in
``data_stream()``: see ``streaming.py``) and refuse by raising
``SMTPError``. None of them keeps per-transaction state, so one backend object
serves any number of concurrent connections.

The rule that shapes the storing and relaying backends: the event loop never
waits on a disk or a remote server. File writes (``Maildir``, ``Mbox``, over
the session they share in ``store.py``; a streamed message in batches) run
in worker threads through
``asyncio.to_thread``, and so does a relayed message sent whole (``Relay``
over LMTP); a relay that follows the sender command by command uses the
asyncio client on the server's own loop. What the threads share is guarded:
``mailbox.Maildir.add`` needs nothing but a retry on a name clash, an
``mbox`` file is written under a thread lock plus the file locks of
``mailbox`` (``lock()``/``flush()``/``unlock()``), and each relayed message
has its own client connection.

A storing backend promises that a message is either stored whole or not at
all; a relaying one promises that an upstream refusal comes back to the
sender as a refusal rather than vanishing. The limits of both promises are
written down on each class. One limit is common to all: a worker thread
cannot be cancelled, so if the connection is dropped while a message is
being stored or relayed, the thread finishes the job although the sender
never hears 250; the sender retries and the message arrives twice
(at-least-once delivery, as with any MTA).

These are the public names (``mailwire.server`` re-exports the classes);
the modules are the place to read one.
"""

from __future__ import annotations

from .maildir import Maildir
from .mbox import Mbox
from .printer import Printer, debugging_text
from .relay import Relay
from .sink import Sink

__all__ = ["Sink", "Printer", "Maildir", "Mbox", "Relay", "debugging_text"]
