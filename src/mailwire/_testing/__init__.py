"""What ``mailwire.testing`` offers for reading caught mail, one job per module.

* ``reading.py``: an HTML body's text and links, a text body's bare URLs;
* ``codes.py``: finding the one-time code in a message's text;
* ``message.py``: ``CaughtMessage``, a caught message as a test reads it;
* ``criteria.py``: which message a test waits for (to, sender, subject,
  Mailpit's query), matched here or written as a query for a server;
* ``waiting.py``: ``CaughtMail``, the ``wait_for`` both kinds of catcher
  share, and ``ServerMail``, over an in-process ``ServerThread``;
* ``client.py``: ``InboxClient``, the same over the HTTP API of a running
  ``mailwire serve`` or Mailpit (standard library only: ``urllib``);
* ``chaos.py``: ``RemoteChaos``, that server's injected failures, through
  an ``InboxClient``.

``mailwire.testing`` is the public home of these names; this package is
private so that the modules can move without breaking an import.
"""

from __future__ import annotations

__all__: list[str] = []
