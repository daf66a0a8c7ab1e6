"""The index beside a Maildir: SQLite, with FTS5 for search; the Maildir stays the truth.

``<maildir>/mailwire-index.sqlite3`` holds one row per message file in
``new/`` and ``cur/``: what the list shows (the summary, as JSON, and the
columns the search filters on), the read flag, where the file is, the
mailboxes it is visible in (a join table: envelope recipients and the AUTH
user), its tags (a join table, and in the summary: its ``X-Tags`` header's
as it arrived, then as ``set_tags``/``rename_tag``/``delete_tag`` change
them) and its searchable text (an FTS5 table, trigram tokenizer).

Tags set through the index live in the index only (as in Mailpit's
database): a rebuild from the Maildir gives each message its ``X-Tags``
again.

It can always be rebuilt from the Maildir, and is: when the file is
missing, when its schema is of another version (``PRAGMA user_version``),
and, row by row, when it is stale. ``sync`` finds staleness cheaply, by
names only (a directory listing of new/ and cur/ against the index's
names, no file read): a file the index lacks is read and added, a row
whose file is gone is dropped, a row whose file moved (read elsewhere, or
flagged by a mail client) is pointed at it. ``Inbox`` syncs when it opens.

Concurrency: SQLite in WAL mode, one connection per thread (made on first
use, closed by ``close``), writes in ``BEGIN IMMEDIATE`` transactions with
a generous busy timeout, so threads and processes (``serve --workers N``
delivering into one Maildir) share the index safely; adding a message is
idempotent (its unique name is a unique key), so two processes rebuilding
at once do the work twice but write it once. ``synchronous=NORMAL``: a
power cut may lose the last index writes, never a message; the next sync
brings them back.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone

from .query import Query, Value, to_sql
from .summary import Address, Digest, Summary, read_summary, unique_name

__all__ = ["Index", "Page", "SCHEMA_VERSION", "BUSY_TIMEOUT"]

SCHEMA_VERSION = 1
BUSY_TIMEOUT = 30.0  # seconds a writer waits for another's transaction

_SCHEMA = """
CREATE TABLE messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    path TEXT NOT NULL,
    created REAL NOT NULL,
    size INTEGER NOT NULL,
    attachments INTEGER NOT NULL,
    inline INTEGER NOT NULL,
    read INTEGER NOT NULL,
    subject TEXT NOT NULL,
    message_id TEXT NOT NULL,
    from_text TEXT NOT NULL,
    to_text TEXT NOT NULL,
    cc_text TEXT NOT NULL,
    bcc_text TEXT NOT NULL,
    reply_to_text TEXT NOT NULL,
    summary TEXT NOT NULL
);
CREATE INDEX messages_created ON messages (created, seq);
CREATE TABLE mailboxes (
    mailbox TEXT NOT NULL,
    message INTEGER NOT NULL REFERENCES messages (seq) ON DELETE CASCADE,
    PRIMARY KEY (mailbox, message)
) WITHOUT ROWID;
CREATE INDEX mailboxes_message ON mailboxes (message);
CREATE TABLE tags (
    tag TEXT NOT NULL,
    message INTEGER NOT NULL REFERENCES messages (seq) ON DELETE CASCADE,
    PRIMARY KEY (tag, message)
) WITHOUT ROWID;
CREATE INDEX tags_message ON tags (message);
CREATE VIRTUAL TABLE search USING fts5 (text, tokenize = 'trigram');
"""
_TABLES = ("search", "tags", "mailboxes", "messages")
_SYNC_BATCH = 200  # messages added per transaction while syncing


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a list: ``total``/``unread`` count the mailbox (or the
    whole inbox), ``matched``/``matched_unread`` what the query matched."""

    total: int
    unread: int
    matched: int
    matched_unread: int
    start: int
    messages: tuple[Summary, ...]


def _addresses_text(addresses: Iterable[Address | None]) -> str:
    return ", ".join(f"{a.name} <{a.address}>" if a.name else a.address for a in addresses if a is not None)


def _summary_json(s: Summary) -> str:
    def addr(a: Address | None) -> list[str] | None:
        return None if a is None else [a.name, a.address]

    return json.dumps({
        "message_id": s.message_id, "from": addr(s.from_), "to": [addr(a) for a in s.to],
        "cc": [addr(a) for a in s.cc], "bcc": [addr(a) for a in s.bcc],
        "reply_to": [addr(a) for a in s.reply_to], "subject": s.subject,
        "date": s.date.isoformat() if s.date else None, "snippet": s.snippet, "tags": list(s.tags),
        "username": s.username, "return_path": s.return_path, "recipients": list(s.recipients),
    })


def _summary_of(row: sqlite3.Row) -> Summary:
    data = json.loads(row["summary"])

    def addrs(items: list[list[str]]) -> tuple[Address, ...]:
        return tuple(Address(n, a) for n, a in items)

    return Summary(
        id=row["id"], name=row["name"], message_id=data["message_id"],
        from_=Address(*data["from"]) if data["from"] else None, to=addrs(data["to"]), cc=addrs(data["cc"]),
        bcc=addrs(data["bcc"]), reply_to=addrs(data["reply_to"]), subject=data["subject"],
        date=datetime.fromisoformat(data["date"]) if data["date"] else None,
        created=datetime.fromtimestamp(row["created"], timezone.utc), size=row["size"],
        attachments=row["attachments"], inline=row["inline"], snippet=data["snippet"], read=bool(row["read"]),
        tags=tuple(data["tags"]), username=data["username"], return_path=data["return_path"],
        recipients=tuple(data["recipients"]),
    )


class Index:
    """The index of the Maildir at ``maildir``, kept in ``path``."""

    def __init__(self, maildir: str, path: str | None = None) -> None:
        self.maildir = maildir
        # A file in the Maildir's root, as Dovecot keeps its dovecot.index
        # files: a directory whose name starts with a dot would be read as a
        # Maildir++ folder by Dovecot and Courier.
        self.path = path or os.path.join(maildir, "mailwire-index.sqlite3")
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._writing = threading.Lock()
        self._closed = False
        self._busy = 0  # blocks in _use
        self._idle = threading.Condition(self._lock)
        self._prepare()

    # -- connections and schema ----------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA foreign_keys = ON")
            db.execute("PRAGMA synchronous = NORMAL")
            self._local.db = db
            with self._lock:
                self._all.append(db)
        return db

    @contextmanager
    def _use(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection, counted as in use until the block ends.

        ``close`` runs in another thread than the readers (the web inbox
        stops while a request's query may still run in the thread pool), and
        closing a connection under a running statement can crash the
        interpreter (CPython 3.13.0 did, in the suite); so ``close`` waits
        for every block to end, and none begins once it has been called.
        """
        with self._idle:
            if self._closed:
                raise RuntimeError("the index is closed")
            self._busy += 1
        try:
            yield self._db()
        finally:
            with self._idle:
                self._busy -= 1
                if self._busy == 0:
                    self._idle.notify_all()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        # The threads of this process take turns here: waiting on SQLite's
        # own lock is a busy loop of sleeps (a millisecond, then more), which
        # under a burst of deliveries costs more than the writes themselves.
        # Processes still meet at SQLite's lock (BEGIN IMMEDIATE).
        with self._writing, self._use() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _prepare(self) -> None:
        with self._use() as db:
            db.execute("PRAGMA journal_mode = WAL")
        with self._write() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version == SCHEMA_VERSION:
                return
            for table in _TABLES:  # another version's (or none): start afresh
                db.execute(f"DROP TABLE IF EXISTS {table}")
            for statement in _SCHEMA.split(";"):  # (executescript would commit)
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")

    def close(self) -> None:
        """Close every thread's connection once none is in use (a thread
        using the index after gets ``RuntimeError``)."""
        with self._idle:
            self._closed = True
            self._idle.wait_for(lambda: self._busy == 0)
            dbs, self._all = self._all, []
        for db in dbs:
            db.close()

    # -- writing -------------------------------------------------------------------

    def add(self, digest: Digest, path: str) -> int | None:
        """Index a message stored at ``path`` (relative to the Maildir);
        its sequence number, or None if it was indexed already."""
        return self.add_many([(digest, path)])[0]

    def add_many(self, items: Sequence[tuple[Digest, str]]) -> list[int | None]:
        """``add`` for many, in one transaction (a tenth of the cost each)."""
        with self._write() as db:
            return [self._insert(db, digest, path) for digest, path in items]

    def _insert(self, db: sqlite3.Connection, digest: Digest, path: str) -> int | None:
        s = digest.summary
        cursor = db.execute(
            "INSERT OR IGNORE INTO messages (id, name, path, created, size, attachments, inline, read, subject,"
            " message_id, from_text, to_text, cc_text, bcc_text, reply_to_text, summary)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (s.id, s.name, path, s.created.timestamp(), s.size, s.attachments, s.inline, int(s.read), s.subject,
             s.message_id, _addresses_text([s.from_]), _addresses_text(s.to), _addresses_text(s.cc),
             _addresses_text(s.bcc), _addresses_text(s.reply_to), _summary_json(s)),
        )
        if not cursor.rowcount:
            return None
        seq = cursor.lastrowid
        db.executemany("INSERT OR IGNORE INTO mailboxes (mailbox, message) VALUES (?, ?)",
                       [(m, seq) for m in digest.mailboxes])
        db.executemany("INSERT OR IGNORE INTO tags (tag, message) VALUES (?, ?)", [(t, seq) for t in s.tags])
        db.execute("INSERT INTO search (rowid, text) VALUES (?, ?)", (seq, digest.search_text))
        return seq

    def remove(self, ids: Sequence[str]) -> list[tuple[str, str]]:
        """Drop the rows of these IDs; the (id, path) of those there were."""
        found: list[tuple[str, str]] = []
        with self._write() as db:
            for start in range(0, len(ids), 500):
                chunk = list(ids[start:start + 500])
                marks = ",".join("?" * len(chunk))
                rows = db.execute(f"SELECT seq, id, path FROM messages WHERE id IN ({marks})", chunk).fetchall()
                seqs = [(r["seq"],) for r in rows]
                db.executemany("DELETE FROM search WHERE rowid = ?", seqs)
                db.executemany("DELETE FROM messages WHERE seq = ?", seqs)
                found += [(r["id"], r["path"]) for r in rows]
        return found

    def set_tags(self, ids: Sequence[str], tags: Sequence[str]) -> list[str]:
        """Give these messages exactly ``tags``, all or none: the IDs not
        found (then nothing changed)."""
        with self._write() as db:
            rows: list[sqlite3.Row] = []
            missing: list[str] = []
            for message_id in dict.fromkeys(ids):
                row = db.execute("SELECT seq, summary FROM messages WHERE id = ?", (message_id,)).fetchone()
                if row is None:
                    missing.append(message_id)
                else:
                    rows.append(row)
            if not missing:
                for row in rows:
                    self._retag(db, row, lambda _: list(tags))
        return missing

    def rename_tag(self, old: str, new: str) -> int:
        """``old`` becomes ``new`` on every message with it (merged where
        both are); how many messages had it."""
        return self._edit_tag(old, lambda tags: [new if t == old else t for t in tags])

    def delete_tag(self, tag: str) -> int:
        """``tag`` removed from every message; how many had it."""
        return self._edit_tag(tag, lambda tags: [t for t in tags if t != tag])

    def _edit_tag(self, tag: str, change: Callable[[list[str]], list[str]]) -> int:
        with self._write() as db:
            rows = db.execute("SELECT m.seq, m.summary FROM messages m JOIN tags t ON t.message = m.seq"
                              " WHERE t.tag = ?", (tag,)).fetchall()
            for row in rows:
                self._retag(db, row, change)
        return len(rows)

    @staticmethod
    def _retag(db: sqlite3.Connection, row: sqlite3.Row, change: Callable[[list[str]], list[str]]) -> None:
        """A message's tags, in its summary and the tags table (the search
        text keeps the message as received: ``tag:`` finds the tags)."""
        data = json.loads(row["summary"])
        tags = list(dict.fromkeys(change(data["tags"])))
        data["tags"] = tags
        seq = row["seq"]
        db.execute("UPDATE messages SET summary = ? WHERE seq = ?", (json.dumps(data), seq))
        db.execute("DELETE FROM tags WHERE message = ?", (seq,))
        db.executemany("INSERT INTO tags (tag, message) VALUES (?, ?)", [(t, seq) for t in tags])

    def moved(self, message_id: str, path: str, read: bool) -> None:
        with self._write() as db:
            db.execute("UPDATE messages SET path = ?, read = ? WHERE id = ?", (path, int(read), message_id))

    # -- reading -------------------------------------------------------------------

    def locate(self, message_id: str) -> tuple[str, bool] | None:
        """(path relative to the Maildir, read) of a message, or None."""
        with self._use() as db:
            row = db.execute("SELECT path, read FROM messages WHERE id = ?", (message_id,)).fetchone()
        return None if row is None else (row["path"], bool(row["read"]))

    def summary(self, message_id: str) -> Summary | None:
        with self._use() as db:
            row = db.execute("SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone()
        return None if row is None else _summary_of(row)

    @staticmethod
    def _where(query: Query | None, mailbox: str | None) -> tuple[str, list[Value]]:
        where, params = to_sql(query or Query())
        if mailbox is not None:
            where = f"({where}) AND m.seq IN (SELECT message FROM mailboxes WHERE mailbox = ?)"
            params = [*params, mailbox.lower()]
        return where, params

    def page(self, start: int, limit: int, query: Query | None = None, mailbox: str | None = None) -> Page:
        with self._use() as db:
            db.execute("BEGIN")  # one snapshot for the counts and the page
            try:
                where, params = self._where(None, mailbox)
                total, unread = db.execute(
                    f"SELECT count(*), count(*) - total(m.read) FROM messages m WHERE {where}", params).fetchone()
                if query:
                    where, params = self._where(query, mailbox)
                    matched, matched_unread = db.execute(
                        f"SELECT count(*), count(*) - total(m.read) FROM messages m WHERE {where}",
                        params).fetchone()
                else:
                    matched, matched_unread = total, unread
                rows = db.execute(
                    f"SELECT * FROM messages m WHERE {where} ORDER BY m.created DESC, m.seq DESC LIMIT ? OFFSET ?",
                    [*params, limit, start]).fetchall()
            finally:
                db.execute("COMMIT")
        return Page(total, int(unread), matched, int(matched_unread), start, tuple(_summary_of(r) for r in rows))

    def ids(self, query: Query | None = None, mailbox: str | None = None) -> list[str]:
        where, params = self._where(query, mailbox)
        with self._use() as db:
            return [r[0] for r in db.execute(f"SELECT m.id FROM messages m WHERE {where}", params)]

    def after(self, seq: int, query: Query | None = None, mailbox: str | None = None,
              limit: int = 100) -> list[tuple[int, Summary]]:
        """Messages indexed after ``seq`` (oldest first), with their sequence numbers."""
        where, params = self._where(query, mailbox)
        with self._use() as db:
            rows = db.execute(
                f"SELECT * FROM messages m WHERE m.seq > ? AND ({where}) ORDER BY m.seq LIMIT ?",
                [seq, *params, limit]).fetchall()
        return [(r["seq"], _summary_of(r)) for r in rows]

    def last_seq(self) -> int:
        with self._use() as db:
            row = db.execute("SELECT max(seq) FROM messages").fetchone()
        return int(row[0] or 0)

    def oldest(self, keep: int | None, before: float | None) -> list[str]:
        """IDs beyond the newest ``keep``, and those received before ``before``."""
        found: list[str] = []
        with self._use() as db:
            if keep is not None:
                found += [r[0] for r in db.execute(
                    "SELECT id FROM messages ORDER BY created DESC, seq DESC LIMIT -1 OFFSET ?", (keep,))]
            if before is not None:
                found += [r[0] for r in db.execute("SELECT id FROM messages WHERE created < ?", (before,))]
        return list(dict.fromkeys(found))

    def tags_of(self, message_id: str) -> tuple[str, ...] | None:
        """A message's tags, in their order (None: no such message)."""
        with self._use() as db:
            row = db.execute("SELECT summary FROM messages WHERE id = ?", (message_id,)).fetchone()
        return None if row is None else tuple(json.loads(row["summary"])["tags"])

    def mailboxes(self) -> list[tuple[str, int, int]]:
        """Every mailbox with its (messages, unread), by name."""
        with self._use() as db:
            return [(r[0], r[1], int(r[2])) for r in db.execute(
                "SELECT b.mailbox, count(*), count(*) - total(m.read) FROM mailboxes b"
                " JOIN messages m ON m.seq = b.message GROUP BY b.mailbox ORDER BY b.mailbox")]

    def tags(self) -> list[str]:
        with self._use() as db:
            return [r[0] for r in db.execute("SELECT DISTINCT tag FROM tags ORDER BY tag")]

    # -- keeping up with the Maildir -------------------------------------------------

    def _listing(self) -> dict[str, str]:
        """Every message file in new/ and cur/: unique name -> relative path."""
        files: dict[str, str] = {}
        for sub in ("new", "cur"):
            try:
                entries = os.listdir(os.path.join(self.maildir, sub))
            except FileNotFoundError:
                continue
            for entry in entries:
                if not entry.startswith("."):
                    files[unique_name(entry)] = f"{sub}/{entry}"
        return files

    def sync(self) -> tuple[int, int]:
        """Bring the index in line with the Maildir (see the module doc);
        (messages added, rows dropped)."""
        files = self._listing()
        with self._use() as db:
            rows = {r["name"]: (r["id"], r["path"]) for r in db.execute("SELECT id, name, path FROM messages")}
        missing = [name for name in files if name not in rows]
        added = 0
        for start in range(0, len(missing), _SYNC_BATCH):
            digests: list[tuple[Digest, str]] = []
            for name in missing[start:start + _SYNC_BATCH]:
                path = files[name]
                try:
                    digests.append((read_summary(os.path.join(self.maildir, path)), path))
                except FileNotFoundError:
                    continue  # deleted (or moved) meanwhile: the next sync sees where
            added += sum(seq is not None for seq in self.add_many(digests))
        gone = [name for name in rows if name not in files]
        if gone:  # a file may have moved while the directories were listed: look again
            files = self._listing()
        dropped = [rows[name][0] for name in gone if name not in files]
        for name, (row_id, path) in rows.items():
            if name in files and files[name] != path:
                self.moved(row_id, files[name], "S" in files[name].partition(":2,")[2])
        return added, len(self.remove(dropped))
