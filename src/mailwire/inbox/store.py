"""``Inbox``: the catcher's store as the web layer and the test helpers use it.

One object per Maildir and process; its methods are blocking (file and
SQLite I/O, short) and thread-safe, so an asyncio caller runs them with
``asyncio.to_thread``; the one asyncio-native method is ``arrivals``,
which waits for mail without a thread. What each method answers is what a
route of Mailpit's API v1 needs: ``list`` (``GET /messages``, ``/search``),
``message`` and ``headers`` (``/message/{ID}``, ``…/headers``), ``raw``
(``…/raw``, an open file: a 50 MB message is streamed, not read),
``part`` (``…/part/{PartID}``, decoded as it is streamed), ``delete`` and
``delete_all``/``delete_matching`` (``DELETE /messages``, ``/search``),
``mark_read`` (``PUT /messages``), ``set_tags``/``rename_tag``/``delete_tag``
(``/tags``); ``wait`` is the blocking wait Mailpit
lacks, ``arrivals`` the event stream of arrivals.

A missing ID is ``MessageNotFound`` (a ``KeyError``: 404); a bad query
string is ``QueryError`` (a ``ValueError``: 400). Read and unread are the
Maildir's own (RFC-less but universal) convention, so a mail client on the
same Maildir agrees: a read message is in ``cur/`` with the ``S`` flag.

The catcher hands each stored message to ``submit``, which queues it for
the inbox's indexer (``indexer.py``: batches, in a thread); every read
here first ``flush``es that queue, so what a client heard 250 for is
listed, and ``wait``/``arrivals`` make the indexer work at once.
Arrivals are seen two ways: a message indexed by this process wakes the
waiters at once; one indexed by another process (``serve --workers N``)
is seen by polling the index's sequence every ``poll_interval`` seconds
(that process indexes within its indexer's ``max_delay``). Retention
(``max_messages``, ``max_age``) prunes the oldest after each batch
indexed here, and on ``prune()``.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncGenerator, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import IO

from .index import Index, Page
from .indexer import Indexer
from .mime import Part, iter_decoded
from .query import Query, parse
from .summary import Digest, Message, Summary, read_message, read_summary

__all__ = ["Inbox", "MessageNotFound", "PartNotFound", "PartContent", "clean_tag", "MAX_TAG"]


class MessageNotFound(KeyError):
    """No message has this ID (deleted, or never there)."""


class PartNotFound(KeyError):
    """The message has no part with this ID."""


@dataclass(frozen=True, slots=True)
class PartContent:
    """A part of a message, to be streamed: ``chunks`` yields its decoded
    content and closes the file at its end (or call ``close``)."""

    part_id: str
    content_type: str
    filename: str
    content_id: str
    size: int
    chunks: Iterator[bytes]

    def close(self) -> None:
        close = getattr(self.chunks, "close", None)
        if close is not None:
            close()


def _flags(path: str) -> str:
    return path.partition(":2,")[2]


class Inbox:
    """The messages of the Maildir at ``path`` (made if missing), indexed.

    ``max_messages`` and ``max_age`` (seconds) bound what is kept: the
    oldest go first (after each batch indexed, and on ``prune``: call it
    now and then for ``max_age`` on an idle inbox). ``index_delay`` and
    ``index_backlog`` are the indexer's ``max_delay`` and ``backlog``
    (``indexer.py``): how long, and for how many messages, the catcher's
    deliveries may wait to be indexed while nobody reads or waits.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, max_messages: int | None = None, max_age: float | None = None,
        poll_interval: float = 1.0, index_path: str | None = None, index_delay: float | None = 5.0,
        index_backlog: int = 5000,
    ) -> None:
        self.path = os.fspath(path)
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(self.path, sub), exist_ok=True)
        self.max_messages = max_messages
        self.max_age = max_age
        self.poll_interval = poll_interval
        self.index_delay = index_delay
        self.index_backlog = index_backlog
        self.index = Index(self.path, index_path)
        self._arrived = threading.Condition()
        self._loops: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._waiting = 0  # callers in wait() or arrivals(): index at once for them
        self._indexer: Indexer | None = None
        self._indexer_lock = threading.Lock()
        self.sync()

    def close(self) -> None:
        if self._indexer is not None:
            self._indexer.close()
        self.index.close()

    def __enter__(self) -> Inbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading -------------------------------------------------------------------

    @staticmethod
    def query(query: str | Query | None) -> Query | None:
        """A query string parsed (``QueryError`` if it cannot be), or as given."""
        return parse(query) if isinstance(query, str) else query

    def list(self, start: int = 0, limit: int = 50, query: str | Query | None = None,
             mailbox: str | None = None) -> Page:
        """A page of messages, newest first, with the counts Mailpit's list shows."""
        if start < 0 or limit < 0:
            raise ValueError("start and limit must not be negative")
        self.flush()
        return self.index.page(start, limit, self.query(query), mailbox)

    def tags(self) -> tuple[str, ...]:
        """Every tag in use (Mailpit's list shows them), sorted."""
        self.flush()
        return tuple(self.index.tags())

    def mailboxes(self) -> tuple[tuple[str, int, int], ...]:
        """Every mailbox (an envelope recipient or an AUTH user, lower-case)
        with how many messages it holds and how many of them are unread."""
        self.flush()
        return tuple(self.index.mailboxes())

    def summary(self, message_id: str) -> Summary:
        self.flush()
        found = self.index.summary(message_id)
        if found is None:
            raise MessageNotFound(message_id)
        return found

    def _file(self, message_id: str) -> tuple[str, bool]:
        """The full path of a message's file and its read flag; a file moved
        meanwhile (read by another process) is found by a sync."""
        self.flush()
        for attempt in range(2):
            found = self.index.locate(message_id)
            if found is None:
                break  # an unknown ID: no listing of the Maildir for it
            path = os.path.join(self.path, found[0])
            if os.path.exists(path):
                return path, found[1]
            if attempt == 0:
                self.sync()
        raise MessageNotFound(message_id)

    def _open(self, message_id: str) -> tuple[IO[bytes], str, bool]:
        for attempt in range(3):
            path, read = self._file(message_id)
            try:
                return open(path, "rb"), path, read
            except FileNotFoundError:
                continue  # moved between the look and the open
        raise MessageNotFound(message_id)

    def message(self, message_id: str) -> Message:
        """The message view: summary, headers, text and HTML, attachments;
        its tags are the index's (the file has those it arrived with)."""
        file, path, read = self._open(message_id)
        with file:
            message, _ = read_message(file, path, read=read)
        tags = self.index.tags_of(message_id)
        if tags is None or tags == message.summary.tags:
            return message
        return replace(message, summary=replace(message.summary, tags=tags))

    def headers(self, message_id: str) -> tuple[tuple[str, str], ...]:
        return self.message(message_id).headers

    def raw(self, message_id: str) -> IO[bytes]:
        """The stored file, open for reading (the caller closes it): the
        trace lines (Return-Path, the envelope) and the message as received."""
        return self._open(message_id)[0]

    def part(self, message_id: str, part_id: str) -> PartContent:
        """A part (an attachment, an inline image, a body), decoded from its
        transfer encoding as it is read: memory stays bounded whatever its size."""
        file, path, read = self._open(message_id)
        try:
            _, structure = read_message(file, path, read=read)
            part = next((p for p in structure.parts if p.part_id == part_id), None)
            if part is None:
                raise PartNotFound(part_id)
        except BaseException:
            file.close()
            raise
        return PartContent(part.part_id, part.content_type, part.filename, part.content_id, part.size,
                           _streamed(file, part))

    # -- changing ------------------------------------------------------------------

    def delete(self, ids: Iterable[str]) -> int:
        """Delete these messages (files and rows); how many there were."""
        self.flush()
        return self._delete(ids)

    def _delete(self, ids: Iterable[str]) -> int:
        """``delete`` without the flush: the indexer's own thread prunes
        through it (a flush there would wait for itself)."""
        removed = self.index.remove(list(ids))
        for _, path in removed:
            try:
                os.remove(os.path.join(self.path, path))
            except FileNotFoundError:
                self._remove_moved(path)
        return len(removed)

    def _remove_moved(self, path: str) -> None:
        """A file renamed (flags) after the index last saw it: find it by name."""
        name = os.path.basename(path).split(":", 1)[0]
        for sub in ("new", "cur"):
            for entry in os.listdir(os.path.join(self.path, sub)):
                if entry.split(":", 1)[0] == name:
                    try:
                        os.remove(os.path.join(self.path, sub, entry))
                    except FileNotFoundError:
                        pass

    def delete_matching(self, query: str | Query | None = None, mailbox: str | None = None) -> int:
        """Delete every message the query matches (all, without one)."""
        parsed = self.query(query)
        self.flush()
        if query is None and mailbox is None:
            self.sync()
        return self.delete(self.index.ids(parsed, mailbox))

    def delete_all(self) -> int:
        return self.delete_matching()

    def mark_read(self, ids: Iterable[str], read: bool = True) -> int:
        """Mark messages read (moved to cur/ with the S flag) or unread (the
        flag dropped); how many changed."""
        return sum(self._mark(message_id, read) for message_id in ids)

    def _mark(self, message_id: str, read: bool) -> bool:
        for attempt in range(3):
            path, was = self._file(message_id)
            if was == read:
                return False
            unique, _, flags = os.path.basename(path).partition(":2,")
            flags = "".join(sorted(set(flags.replace("S", "")) | ({"S"} if read else set())))
            target = os.path.join(self.path, "cur", f"{unique}:2,{flags}")
            try:
                os.rename(path, target)
            except FileNotFoundError:
                continue  # moved meanwhile (another thread or process marked it): look again
            self.index.moved(message_id, os.path.relpath(target, self.path), read)
            return True
        raise MessageNotFound(message_id)

    def mark_matching(self, read: bool, query: str | Query | None = None, mailbox: str | None = None) -> int:
        """``mark_read`` for every message the query matches (all, without one)."""
        parsed = self.query(query)
        self.flush()
        return self.mark_read(self.index.ids(parsed, mailbox), read)

    def set_tags(self, ids: Iterable[str], tags: Iterable[str]) -> None:
        """Give these messages exactly these tags (none: untagged); all or
        none of them, ``MessageNotFound`` for an unknown ID; ``ValueError``
        for a tag ``clean_tag`` refuses."""
        cleaned = list(dict.fromkeys(clean_tag(t) for t in tags))
        self.flush()
        missing = self.index.set_tags(list(ids), cleaned)
        if missing:
            raise MessageNotFound(missing[0])

    def rename_tag(self, old: str, new: str) -> int:
        """``old`` becomes ``new`` on every message; how many had it."""
        cleaned = clean_tag(new)
        self.flush()
        return self.index.rename_tag(old, cleaned)

    def delete_tag(self, tag: str) -> int:
        """``tag`` removed from every message (the messages stay); how many had it."""
        self.flush()
        return self.index.delete_tag(tag)

    def prune(self) -> int:
        """Apply retention now; how many messages went."""
        self.flush()
        return self._prune()

    def _prune(self) -> int:
        if self.max_messages is None and self.max_age is None:
            return 0
        before = time.time() - self.max_age if self.max_age is not None else None
        return self._delete(self.index.oldest(self.max_messages, before))

    def sync(self) -> tuple[int, int]:
        """Bring the index in line with the Maildir: (added, dropped)."""
        added, dropped = self.index.sync()
        if added:
            self._notify()
        return added, dropped

    def add(self, name: str) -> Summary | None:
        """Index now the message stored in ``new/`` as ``name``; its summary
        (None if it was indexed already), waiters woken, retention applied."""
        relative = f"new/{name}"
        digest = read_summary(os.path.join(self.path, relative))
        seq = self.index.add(digest, relative)
        if seq is None:
            return None
        self.prune()
        self._notify()
        return digest.summary

    def submit(self, name: str) -> None:
        """Queue the message stored in ``new/`` as ``name`` for indexing
        (``indexer.py``: in batches, in a thread, before anyone reads the
        index); returns at once."""
        with self._indexer_lock:
            if self._indexer is None:
                self._indexer = Indexer(self._index_names, lambda: self._waiting > 0,
                                        max_delay=self.index_delay, backlog=self.index_backlog)
            indexer = self._indexer
        indexer.submit(name)

    def flush(self) -> None:
        """Index what was submitted so far (every read does it first)."""
        if self._indexer is not None:
            self._indexer.flush()

    def _index_names(self, names: Sequence[str]) -> None:
        items: list[tuple[Digest, str]] = []
        for name in names:
            relative = f"new/{name}"
            try:
                items.append((read_summary(os.path.join(self.path, relative)), relative))
            except FileNotFoundError:
                continue  # read (moved to cur/) or deleted already: the next sync finds it
        if any(seq is not None for seq in self.index.add_many(items)):
            self._prune()  # in the indexer's thread: no flush
            self._notify()

    # -- waiting for mail --------------------------------------------------------------

    def _notify(self) -> None:
        with self._arrived:
            self._arrived.notify_all()
            loops = list(self._loops)
        for loop, event in loops:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that loop is closed
                with self._arrived:
                    self._loops.discard((loop, event))

    def wait(self, query: str | Query | None = None, timeout: float = 10.0, *, mailbox: str | None = None,
             existing: bool = True) -> Summary:
        """The newest message matching ``query`` already here (``existing``)
        or the first to arrive within ``timeout`` seconds; ``TimeoutError``."""
        parsed = self.query(query)
        deadline = time.monotonic() + timeout
        self._waiting_starts()
        try:
            self.flush()
            seq = self.index.last_seq()
            if existing:
                page = self.index.page(0, 1, parsed, mailbox)
                if page.messages:
                    return page.messages[0]
            while True:
                found = self.index.after(seq, parsed, mailbox, limit=1)
                if found:
                    return found[0][1]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no message matching {query!r} arrived within {timeout} s")
                with self._arrived:
                    self._arrived.wait(min(remaining, self.poll_interval))
        finally:
            self._waiting_ends()

    def _waiting_starts(self) -> None:
        with self._arrived:
            self._waiting += 1
        if self._indexer is not None:
            self._indexer.wake()

    def _waiting_ends(self) -> None:
        with self._arrived:
            self._waiting -= 1

    async def arrivals(self, query: str | Query | None = None, *, mailbox: str | None = None,
                       existing: bool = False) -> AsyncGenerator[Summary, None]:
        """Each message indexed from now on that matches, oldest first, as
        it arrives: ``async for summary in inbox.arrivals("to:alice"):``.
        ``existing``: first the newest matching message already here, if
        any (``wait`` without a thread: nothing that arrives between the
        look and the watch is missed)."""
        parsed = self.query(query)
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        entry = (loop, event)
        with self._arrived:
            self._loops.add(entry)
        self._waiting_starts()
        try:
            await asyncio.to_thread(self.flush)
            seq = await asyncio.to_thread(self.index.last_seq)
            given = ""  # the existing one, if it came in after ``seq``: not given twice
            if existing:
                page = await asyncio.to_thread(self.index.page, 0, 1, parsed, mailbox)
                if page.messages:
                    given = page.messages[0].id
                    yield page.messages[0]
            while True:
                found = await asyncio.to_thread(self.index.after, seq, parsed, mailbox)
                for seq, summary in found:
                    if summary.id != given:
                        yield summary
                if found:
                    continue
                event.clear()
                try:
                    await asyncio.wait_for(event.wait(), self.poll_interval)
                except asyncio.TimeoutError:
                    pass
        finally:
            with self._arrived:
                self._loops.discard(entry)
            self._waiting_ends()


MAX_TAG = 100  # characters in a tag


def clean_tag(text: str) -> str:
    """A tag as kept: runs of white space made one space, the ends trimmed
    (as the ``X-Tags`` header's are); ``ValueError`` for one that is empty,
    longer than ``MAX_TAG``, or holds a comma (``X-Tags`` separates tags
    with them) or a control character."""
    if not isinstance(text, str):
        raise ValueError(f"a tag is a string, not {text!r}")
    tag = " ".join(text.split())
    if not tag:
        raise ValueError("a tag must not be empty")
    if len(tag) > MAX_TAG:
        raise ValueError(f"a tag is at most {MAX_TAG} characters")
    if "," in tag or any(ord(c) < 32 or ord(c) == 127 for c in tag):
        raise ValueError(f"a tag holds no comma nor control character: {tag!r}")
    return tag


def _streamed(file: IO[bytes], part: Part) -> Iterator[bytes]:
    with file:
        yield from iter_decoded(file, part)
