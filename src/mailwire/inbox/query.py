"""Mailpit's search syntax: parsed into a typed ``Query``, then into parameterised SQL.

The syntax (Mailpit's ``internal/storage/search.go``, which its users and
clients already write): words separated by white space, all of which must
match; a double-quoted phrase is one word (``"password reset"``, also after
a filter: ``subject:"your code"``); a leading ``-`` or ``!`` negates a word.
A word is a filter or free text:

* ``from:`` ``to:`` ``cc:`` ``bcc:`` ``reply-to:`` ``addressed:`` (any of
  those), ``subject:``, ``message-id:``: a case-insensitive substring of
  that field (names and addresses, for the address fields);
* ``tag:NAME``, ``is:read``, ``is:unread``, ``is:tagged``,
  ``has:attachment``, ``has:inline``;
* ``before:DATE``, ``after:DATE`` (received, inclusive; ISO 8601 or
  RFC 2822, with or without a time and zone: without a zone, ``tz``);
* ``larger:SIZE``, ``smaller:SIZE`` (``2kb``, ``1.5m``, plain octets);
* anything else is free text, a case-insensitive substring of the
  subject, the addresses, the text and HTML bodies and attachment names,
  answered by the FTS5 index (trigram tokenizer: any substring of three
  characters or more is found through the index; shorter ones by a scan).

Where Mailpit ignores what it cannot read, this refuses it with
``QueryError`` (the web layer answers 400): an unclosed quote, a filter
without a value, an unknown ``is:``/``has:`` value, a date or size that
does not parse, a query too long. Nothing of the user's text is ever
pasted into SQL: every value is a bound parameter, and an FTS5 phrase is
quoted by FTS5's own rule (a ``"`` doubled).
"""

from __future__ import annotations

import email.utils
import re
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from typing import Union

__all__ = ["QueryError", "Term", "Query", "parse", "to_sql", "MAX_QUERY", "MAX_TERMS"]

MAX_QUERY = 4096  # characters of a query
MAX_TERMS = 64  # words of a query

Value = Union[str, float]

# Filters on a text column: a substring, case-insensitive (LIKE).
_COLUMNS = {
    "from": ("from_text",), "to": ("to_text",), "cc": ("cc_text",), "bcc": ("bcc_text",),
    "reply-to": ("reply_to_text",), "subject": ("subject",), "message-id": ("message_id",),
    "addressed": ("from_text", "to_text", "cc_text", "bcc_text", "reply_to_text"),
}
_FLAGS = {
    ("is", "read"): "m.read = 1", ("is", "unread"): "m.read = 0",
    ("is", "tagged"): "EXISTS (SELECT 1 FROM tags t WHERE t.message = m.seq)",
    ("has", "attachment"): "m.attachments > 0", ("has", "attachments"): "m.attachments > 0",
    ("has", "inline"): "m.inline > 0", ("has", "inlines"): "m.inline > 0",
}
_FIELDS = set(_COLUMNS) | {"tag", "is", "has", "before", "after", "larger", "smaller"}
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s?([km]b?)?$")
_TRIGRAM = 3  # the shortest text the FTS5 trigram index can answer


class QueryError(ValueError):
    """A search query that cannot be read; the message says why."""


@dataclass(frozen=True, slots=True)
class Term:
    """One word of a query: ``field`` is "text" for free text; ``value`` a
    string, or for before/after a POSIX timestamp and for larger/smaller
    a number of octets."""

    field: str
    value: Value
    negate: bool = False


@dataclass(frozen=True, slots=True)
class Query:
    terms: tuple[Term, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.terms)


def _words(text: str) -> list[tuple[str, bool]]:
    """The words of a query, each with whether it was quoted (in part)."""
    words: list[tuple[str, bool]] = []
    current: list[str] = []
    quoted = in_quote = False
    for char in text:
        if char == '"':
            in_quote = not in_quote
            quoted = True
        elif char.isspace() and not in_quote:
            if current or quoted:
                words.append(("".join(current), quoted))
            current, quoted = [], False
        else:
            current.append(char)
    if in_quote:
        raise QueryError("the query has an unclosed quote (\")")
    if current or quoted:
        words.append(("".join(current), quoted))
    return words


def _date(text: str, tz: tzinfo | None) -> float:
    value = text.strip()
    when: datetime | None = None
    for candidate in (value, value.replace("/", "-"), value.replace(" ", "T", 1)):
        try:
            when = datetime.fromisoformat(candidate.replace("Z", "+00:00"))
            break
        except ValueError:
            continue
    if when is None:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            when = None
    if when is None:
        raise QueryError(f"cannot read the date {text!r} (try 2024-05-31 or 2024-05-31T14:00:00+02:00)")
    if when.tzinfo is None:
        when = when.replace(tzinfo=tz) if tz is not None else when.astimezone()
    return when.timestamp()


def _size(text: str) -> float:
    match = _SIZE.match(text.strip().lower())
    if match is None:
        raise QueryError(f"cannot read the size {text!r} (try 500, 20kb or 1.5mb)")
    unit = (match.group(2) or "")[:1]
    return float(match.group(1)) * {"": 1, "k": 1024, "m": 1024 * 1024}[unit]


def _term(word: str, quoted: bool, tz: tzinfo | None) -> Term | None:
    negate = False
    if len(word) > 1 and word[0] in "-!":
        negate, word = True, word[1:]
    field, colon, value = word.partition(":")
    field = field.lower()
    if not colon or field not in _FIELDS:
        return Term("text", word, negate) if word else None
    if not value and not quoted:
        raise QueryError(f"{field}: needs a value")
    if field in ("is", "has"):
        if (field, value.lower()) not in _FLAGS:
            known = ", ".join(sorted(f"{f}:{v}" for f, v in _FLAGS if f == field))
            raise QueryError(f"unknown filter {field}:{value} (known: {known})")
        return Term(field, value.lower(), negate)
    if field in ("before", "after"):
        return Term(field, _date(value, tz), negate)
    if field in ("larger", "smaller"):
        return Term(field, _size(value), negate)
    return Term(field, value, negate)


def parse(text: str, *, tz: tzinfo | None = timezone.utc) -> Query:
    """The query ``text`` says; ``QueryError`` if it cannot be read. Dates
    without a zone are in ``tz`` (None: this machine's local time)."""
    if len(text) > MAX_QUERY:
        raise QueryError(f"the query is longer than {MAX_QUERY} characters")
    if "\x00" in text:
        raise QueryError("the query contains a NUL character")
    terms = [t for t in (_term(word, quoted, tz) for word, quoted in _words(text)) if t is not None]
    if len(terms) > MAX_TERMS:
        raise QueryError(f"the query has more than {MAX_TERMS} words")
    return Query(tuple(terms))


def _like(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _condition(term: Term) -> tuple[str, list[Value]]:
    """One term as an SQL condition on ``messages m``, and its parameters."""
    field, value = term.field, term.value
    if field == "text":
        text = str(value)
        if len(text) >= _TRIGRAM:
            phrase = '"' + text.replace('"', '""') + '"'
            return "m.seq IN (SELECT rowid FROM search WHERE search MATCH ?)", [phrase]
        return "m.seq IN (SELECT rowid FROM search WHERE text LIKE ? ESCAPE '\\')", [_like(text)]
    if field in _COLUMNS:
        columns = _COLUMNS[field]
        sql = " OR ".join(f"m.{c} LIKE ? ESCAPE '\\'" for c in columns)
        return f"({sql})", [_like(str(value))] * len(columns)
    if field == "tag":
        return "EXISTS (SELECT 1 FROM tags t WHERE t.message = m.seq AND t.tag = ?)", [value]
    if field in ("is", "has"):
        return _FLAGS[field, str(value)], []
    column, operator = {
        "before": ("m.created", "<="), "after": ("m.created", ">="),
        "larger": ("m.size", ">"), "smaller": ("m.size", "<"),
    }[field]
    return f"{column} {operator} ?", [value]


def to_sql(query: Query) -> tuple[str, list[Value]]:
    """The query as a condition on ``messages m`` (``"1"`` when empty) and
    its parameters, in order."""
    conditions: list[str] = []
    params: list[Value] = []
    for term in query.terms:
        sql, values = _condition(term)
        conditions.append(f"NOT ({sql})" if term.negate else sql)
        params += values
    return (" AND ".join(conditions) or "1"), params
