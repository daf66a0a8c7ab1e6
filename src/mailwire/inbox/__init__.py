"""The catcher's store: a Maildir, an index beside it, search, and message views.

``Inbox`` is the API (list, search, view, stream, delete, mark read, wait
for mail); ``Catcher`` is the server backend that fills it. The Maildir is
the truth (back-ups, mail clients and other tools keep working on it); the
index (SQLite with FTS5, ``index.py``) answers lists and searches without
reading every file, and is rebuilt from the Maildir when it is missing or
stale. Messages are read as streams (``mime.py``), so a 50 MB attachment is
never held whole to list, search or download. No HTTP here: ``web/`` builds
Mailpit's API on this, and nothing here knows it.
"""

from __future__ import annotations

from .backend import Catcher, CatcherSession
from .index import Page
from .query import Query, QueryError, Term, parse
from .store import Inbox, MessageNotFound, PartContent, PartNotFound
from .summary import Address, Attachment, Message, Summary

__all__ = [
    "Inbox", "Catcher", "CatcherSession", "Page", "Summary", "Message", "Address", "Attachment",
    "PartContent", "MessageNotFound", "PartNotFound", "Query", "QueryError", "Term", "parse",
]
