"""Mailpit's search syntax: what it parses to, what it refuses, and what it finds."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailwire.inbox import Inbox, QueryError, Term, parse
from mailwire.inbox.query import MAX_QUERY, to_sql

from .support import message, store

UTC = timezone.utc


@pytest.mark.parametrize("text, terms", [
    ("", ()),
    ("   ", ()),
    ("hello world", (Term("text", "hello"), Term("text", "world"))),
    ('"password reset" -spam', (Term("text", "password reset"), Term("text", "spam", True))),
    ("from:alice@example.com !to:bob", (Term("from", "alice@example.com"), Term("to", "bob", True))),
    ('subject:"your code"', (Term("subject", "your code"),)),
    ("SUBJECT:Hi Is:Unread HAS:attachments", (Term("subject", "Hi"), Term("is", "unread"), Term("has", "attachments"))),
    ("message-id:abc@x tag:urgent -is:read", (Term("message-id", "abc@x"), Term("tag", "urgent"),
                                              Term("is", "read", True))),
    ("larger:2kb smaller:1.5M", (Term("larger", 2048.0), Term("smaller", 1.5 * 1024 * 1024))),
    ("after:2024-05-31", (Term("after", datetime(2024, 5, 31, tzinfo=UTC).timestamp()),)),
    ("before:2024-05-31T14:00:00+02:00", (Term("before", datetime(2024, 5, 31, 12, tzinfo=UTC).timestamp()),)),
    ("before:2024/05/31", (Term("before", datetime(2024, 5, 31, tzinfo=UTC).timestamp()),)),
    ("http://x.test/a?b=c", (Term("text", "http://x.test/a?b=c"),)),  # an unknown "prefix:" is text
    ("- -", (Term("text", "-"), Term("text", "-"))),
    ('""', ()),
])
def test_parse(text: str, terms: tuple[Term, ...]) -> None:
    assert parse(text).terms == terms


@pytest.mark.parametrize("text, says", [
    ('subject:"unclosed', "unclosed quote"),
    ("from:", "needs a value"),
    ("is:important", "unknown filter is:important"),
    ("has:wings", "unknown filter has:wings"),
    ("before:someday", "cannot read the date"),
    ("after:2024-13-45", "cannot read the date"),
    ("larger:big", "cannot read the size"),
    ("smaller:5gb", "cannot read the size"),
    ("x" * (MAX_QUERY + 1), "longer than"),
    ("a " * 100, "more than"),
    ("nul\x00", "NUL"),
])
def test_bad_queries_are_refused_with_a_reason(text: str, says: str) -> None:
    with pytest.raises(QueryError, match=says):
        parse(text)


def test_user_text_is_never_pasted_into_sql() -> None:
    sql, params = to_sql(parse("from:'; DROP TABLE messages; -- \"x\"\"y\" subject:%_"))
    assert "DROP" not in sql and "%_" not in sql and "'" not in sql.replace("'\\'", "")
    assert any("DROP" in str(p) for p in params) and "%\\%\\_%" in params


@pytest.fixture(scope="module")
def inbox(tmp_path_factory: pytest.TempPathFactory) -> Inbox:
    path = tmp_path_factory.mktemp("search")
    now = datetime.now(UTC).timestamp()
    store(str(path), message("Reset your password", sender="Shop <noreply@shop.test>", to="alice@example.com",
                             body="Your code is 123456", headers={"X-Tags": "auth, urgent"}),
          rcpt=("alice@example.com",), when=now - 3 * 86400)
    store(str(path), message("Invoice 42", sender="billing@shop.test", to="bob@example.org",
                             cc="Carol <carol@example.net>", body="Attached.",
                             attachments=(("invoice-42.pdf", b"%PDF" * 300),)),
          rcpt=("bob@example.org", "carol@example.net", "eve@example.org"), when=now - 86400)
    store(str(path), message("Hi", sender="Dan <dan@example.org>", to="alice@example.com",
                             body="ok", html="<p>Lunch at <b>noon</b>?</p>", headers={"Reply-To": "d2@example.org"}),
          rcpt=("alice@example.com",), user="dan", when=now)
    opened = Inbox(path)
    (first,) = opened.list(query="subject:Hi").messages
    opened.mark_read([first.id])
    yield opened
    opened.close()


@pytest.mark.parametrize("query, subjects", [
    ("", ["Hi", "Invoice 42", "Reset your password"]),  # newest first
    ("password", ["Reset your password"]),
    ("PASSWORD", ["Reset your password"]),
    ("123456", ["Reset your password"]),
    ('"code is 123"', ["Reset your password"]),
    ('"is 123 code"', []),
    ("42", ["Invoice 42"]),  # shorter than a trigram: a scan
    ("noon", ["Hi"]),  # HTML text is searched, tags are not
    ("invoice-42.pdf", ["Invoice 42"]),  # attachment names
    ("-password", ["Hi", "Invoice 42"]),
    ("from:shop.test", ["Invoice 42", "Reset your password"]),
    ("from:Dan", ["Hi"]),
    ("-from:shop.test", ["Hi"]),
    ("to:alice", ["Hi", "Reset your password"]),
    ("cc:carol", ["Invoice 42"]),
    ("bcc:eve@", ["Invoice 42"]),
    ("reply-to:d2@", ["Hi"]),
    ("addressed:carol", ["Invoice 42"]),
    ("subject:invoice", ["Invoice 42"]),
    ("subject:%", []),  # LIKE's wildcards are plain characters
    ("subject:_", []),
    ("is:read", ["Hi"]),
    ("is:unread", ["Invoice 42", "Reset your password"]),
    ("has:attachment", ["Invoice 42"]),
    ("-has:attachment", ["Hi", "Reset your password"]),
    ("tag:urgent", ["Reset your password"]),
    ("is:tagged", ["Reset your password"]),
    ("larger:1kb", ["Invoice 42"]),
    ("smaller:1kb", ["Hi", "Reset your password"]),
    ("from:shop.test is:unread -has:attachment code", ["Reset your password"]),
])
def test_search(inbox: Inbox, query: str, subjects: list[str]) -> None:
    page = inbox.list(query=query)
    assert [s.subject for s in page.messages] == subjects
    assert page.matched == len(subjects) and page.total == 3 and page.unread == 2


def test_tags(inbox: Inbox) -> None:
    assert inbox.tags() == ("auth", "urgent")


def test_message_id_and_dates(inbox: Inbox) -> None:
    newest = inbox.list().messages[0]
    assert [s.subject for s in inbox.list(query=f"message-id:{newest.message_id}").messages] == ["Hi"]
    day = (datetime.now(UTC) - timedelta(days=2)).date().isoformat()
    assert [s.subject for s in inbox.list(query=f"after:{day}").messages] == ["Hi", "Invoice 42"]
    assert [s.subject for s in inbox.list(query=f"before:{day}").messages] == ["Reset your password"]
    assert [s.subject for s in inbox.list(query=f"-before:{day}").messages] == ["Hi", "Invoice 42"]


def test_mailboxes(inbox: Inbox) -> None:
    assert [s.subject for s in inbox.list(mailbox="Alice@Example.com").messages] == ["Hi", "Reset your password"]
    assert [s.subject for s in inbox.list(mailbox="eve@example.org").messages] == ["Invoice 42"]  # Bcc'd
    assert [s.subject for s in inbox.list(mailbox="dan").messages] == ["Hi"]  # the AUTH user
    page = inbox.list(query="password", mailbox="alice@example.com")
    assert (page.total, page.unread, page.matched, page.matched_unread) == (2, 1, 1, 1)
    assert inbox.list(mailbox="nobody@example.com").total == 0


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=60) | st.lists(st.sampled_from(
    ['"', "-", "!", ":", "from:", "is:", "has:", "before:", "larger:", "tag:", "x", " ", "%", "_", "\\", "*",
     "NEAR(", "OR", "AND", "^", "'", ";", "\u0301", "\U0001F600", "subject:", "(", ")"]), max_size=20).map("".join))
def test_any_query_is_answered_or_refused(inbox: Inbox, text: str) -> None:
    """A query string is either read and answered or refused with
    QueryError: never an SQL error (an FTS5 syntax error included)."""
    try:
        query = parse(text)
    except QueryError:
        return
    try:
        page = inbox.list(query=query, limit=5)
    except sqlite3.Error as err:  # pragma: no cover - what this test is here to catch
        pytest.fail(f"{text!r}: {err}")
    assert 0 <= page.matched <= page.total
