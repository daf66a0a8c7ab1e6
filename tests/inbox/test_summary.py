"""Summaries and message views read from stored files: fields, structure, hostile input."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mailwire.inbox.mime import MAX_DEPTH, MAX_PARTS, TEXT_CAP, iter_decoded, scan
from mailwire.inbox.summary import Address, message_id_of, read_message, read_summary

from .support import message, store


def _summary(tmp_path: Path, content: bytes, **kw: object):  # type: ignore[no-untyped-def]
    name = store(str(tmp_path), content, **kw)  # type: ignore[arg-type]
    return read_summary(str(tmp_path / "new" / name))


def _view(tmp_path: Path, content: bytes, **kw: object):  # type: ignore[no-untyped-def]
    name = store(str(tmp_path), content, **kw)  # type: ignore[arg-type]
    path = str(tmp_path / "new" / name)
    with open(path, "rb") as file:
        return read_message(file, path)


def test_a_plain_message(tmp_path: Path) -> None:
    content = message("Reset your password", body="Click http://x.test/r?t=1\n\n  to reset.",
                      cc="Carol <carol@example.net>", headers={"Reply-To": "noreply@example.com",
                                                               "Date": "Tue, 01 Oct 2024 10:00:00 +0200"})
    digest = _summary(tmp_path, content, rcpt=("bob@example.org", "carol@example.net", "dave@example.org"))
    s = digest.summary
    assert s.subject == "Reset your password"
    assert s.from_ == Address("Alice", "alice@example.com")
    assert s.to == (Address("", "bob@example.org"),) and s.cc == (Address("Carol", "carol@example.net"),)
    assert s.bcc == (Address("", "dave@example.org"),)  # the envelope's, in neither To nor Cc
    assert s.reply_to == (Address("", "noreply@example.com"),)
    assert s.message_id.endswith("@example.com") and not s.message_id.startswith("<")
    assert s.date is not None and s.date.isoformat() == "2024-10-01T10:00:00+02:00"
    assert s.snippet == "Click http://x.test/r?t=1 to reset."
    assert s.attachments == 0 and s.read is False and s.return_path == "alice@example.com"
    assert s.size == os.path.getsize(tmp_path / "new" / os.listdir(tmp_path / "new")[0])
    assert s.id == message_id_of(s.name) and len(s.id) == 22
    assert "Reset your password" in digest.search_text and "to reset." in digest.search_text
    assert digest.mailboxes == ("bob@example.org", "carol@example.net", "dave@example.org")


def test_the_id_is_the_same_after_the_file_moves(tmp_path: Path) -> None:
    name = store(str(tmp_path), message())
    first = read_summary(str(tmp_path / "new" / name)).summary
    os.rename(tmp_path / "new" / name, tmp_path / "cur" / f"{name}:2,S")
    moved = read_summary(str(tmp_path / "cur" / f"{name}:2,S")).summary
    assert moved.id == first.id and moved.read and not first.read


def test_the_auth_user_is_a_mailbox(tmp_path: Path) -> None:
    digest = _summary(tmp_path, message(), user="App-User")
    assert digest.summary.username == "App-User"
    assert "app-user" in digest.mailboxes  # mailboxes are matched without case


def test_an_envelope_header_in_the_message_is_not_trusted(tmp_path: Path) -> None:
    """Only the line the catcher writes right after Return-Path is its
    envelope: the sender cannot put itself in another mailbox."""
    forged = b'X-Mailwire-Envelope: {"rcpt":["victim@example.org"],"user":"admin"}\r\n' + message()
    digest = _summary(tmp_path, forged, rcpt=("carol@example.net",))
    assert digest.summary.recipients == ("carol@example.net",) and digest.summary.username == ""
    assert digest.mailboxes == ("carol@example.net",)


def test_html_attachments_and_inline_parts(tmp_path: Path) -> None:
    content = message("Report", body="See the report", html="<p>See <b>the</b> report<script>x()</script></p>",
                      attachments=(("report.pdf", b"%PDF-1.4" * 100), ("data.bin", bytes(range(256)))))
    view, structure = _view(tmp_path, content)
    assert [p.part_id for p in structure.parts] == ["1.1", "1.2", "2", "3"]
    assert view.text == "See the report\n" and "<b>the</b>" in view.html
    assert [(a.part_id, a.filename, a.size) for a in view.attachments] == [
        ("2", "report.pdf", 800), ("3", "data.bin", 256)]
    assert view.summary.attachments == 2 and view.inline == ()
    path = str(tmp_path / "new" / os.listdir(tmp_path / "new")[0])
    with open(path, "rb") as file:
        assert b"".join(iter_decoded(file, structure.parts[3])) == bytes(range(256))


def test_an_inline_image_in_a_related_multipart(tmp_path: Path) -> None:
    raw = (b"From: a@example.com\r\nSubject: pic\r\nContent-Type: multipart/related; boundary=R\r\n\r\n"
           b"--R\r\nContent-Type: text/html\r\n\r\n<img src=\"cid:logo\">\r\n"
           b"--R\r\nContent-Type: image/png\r\nContent-ID: <logo>\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           b"iVBORw0KGgo=\r\n--R--\r\n")
    view, _ = _view(tmp_path, raw)
    assert [(a.part_id, a.content_id, a.size) for a in view.inline] == [("2", "logo", 8)]
    assert view.summary.inline == 1 and view.summary.attachments == 0
    assert view.summary.snippet == ""  # an image only: no text to show


def test_encoded_words_and_charsets(tmp_path: Path) -> None:
    raw = ("From: =?utf-8?q?J=C3=B6rg?= <j@example.de>\r\nTo: x@example.com\r\n"
           "Subject: =?iso-8859-1?q?Gr=FC=DFe?=\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
           "Content-Transfer-Encoding: quoted-printable\r\n\r\nSch=F6ne Gr=FC=DFe\r\n").encode()
    s = _summary(tmp_path, raw).summary
    assert s.from_ == Address("Jörg", "j@example.de") and s.subject == "Grüße" and s.snippet == "Schöne Grüße"


@pytest.mark.parametrize("raw, check", [
    # No boundary parameter: the whole body is one opaque part.
    (b"Subject: a\r\nContent-Type: multipart/mixed\r\n\r\n--x\r\nhello\r\n", lambda v, st: len(st.parts) == 1),
    # The boundary never appears: the body is the preamble, no parts.
    (b"Subject: a\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\nhello\r\n", lambda v, st: st.parts == []),
    # No close delimiter: the last part runs to the end.
    (b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi there",
     lambda v, st: v.text == "hi there"),
    # A header block that never ends.
    (b"Subject: only headers\r\nX: y", lambda v, st: v.summary.subject == "only headers"),
    # A part without headers (the delimiter comes first).
    (b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n--b\r\n\r\ntext\r\n--b--\r\n",
     lambda v, st: v.text == "text"),
    # Broken base64 and an unknown charset and transfer encoding.
    (b"Content-Type: text/plain; charset=x-nope\r\nContent-Transfer-Encoding: base64\r\n\r\n!!aGk=*\r\n",
     lambda v, st: isinstance(v.text, str)),
    (b"Content-Transfer-Encoding: x-uuencode\r\n\r\nbody\r\n", lambda v, st: v.text == "body\n"),
    # 8-bit garbage in headers, an unreadable date, a broken address list.
    (b"Subject: \xff\xfe caf\xe9\r\nDate: yesterday-ish\r\nFrom: <<<@@>>\r\nTo: \"unclosed <a@b\r\n\r\nx\r\n",
     lambda v, st: v.summary.date is None and "caf" in v.summary.subject),
    (b"Subject: =?utf-8?b?////?= =?bogus?q?x?=\r\nMessage-ID: \r\n\r\n", lambda v, st: v.summary.message_id == ""),
    # An empty file; a file of nothing but line breaks.
    (b"", lambda v, st: v.summary.subject == ""),
    (b"\r\n" * 1000, lambda v, st: v.summary.subject == ""),
])
def test_malformed_mime_has_a_defined_reading(tmp_path: Path, raw: bytes, check) -> None:  # type: ignore[no-untyped-def]
    view, structure = _view(tmp_path, raw, rcpt=None)
    assert check(view, structure)


def test_nesting_beyond_the_limit_is_read_as_opaque(tmp_path: Path) -> None:
    depth = MAX_DEPTH + 20
    raw = b"".join(b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i) for i in range(depth))
    raw += b"Content-Type: text/plain\r\n\r\ndeep\r\n"
    view, structure = _view(tmp_path, raw)
    assert structure.truncated and view.truncated and len(structure.parts) == 1


def test_a_thousand_parts(tmp_path: Path) -> None:
    parts = b"".join(b"--b\r\nContent-Type: application/x-thing; name=f%d.bin\r\n\r\npart %d\r\n" % (i, i)
                     for i in range(1000))
    raw = b"Subject: many\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" + parts + b"--b--\r\n"
    view, structure = _view(tmp_path, raw)
    assert view.summary.attachments == 1000 and view.attachments[-1].filename == "f999.bin"
    assert view.attachments[-1].part_id == "1000" and not structure.truncated


def test_more_parts_than_the_limit_are_counted_up_to_it() -> None:
    parts = b"--b\r\n\r\nx\r\n" * (MAX_PARTS + 5)
    structure = scan(io.BytesIO(b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + parts + b"--b--\r\n"))
    assert len(structure.parts) == MAX_PARTS and structure.truncated


def test_a_text_part_is_kept_up_to_the_cap(tmp_path: Path) -> None:
    raw = b"Subject: big\r\n\r\n" + b"0123456789abcde\n" * (TEXT_CAP // 16 + 1000)
    view, structure = _view(tmp_path, raw)
    assert len(view.text) == TEXT_CAP and view.truncated
    assert structure.parts[0].end - structure.parts[0].start == len(raw) - len(b"Subject: big\r\n\r\n")


def test_a_line_longer_than_a_read(tmp_path: Path) -> None:
    raw = (b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n" + b"x" * 300_000
           + b"--b\r\n--b\r\nContent-Type: text/plain\r\n\r\nafter\r\n--b--\r\n")
    view, structure = _view(tmp_path, raw)
    # "--b" in the middle of a long line is not a delimiter: only at a line's start.
    assert len(structure.parts) == 2 and view.text.endswith("x--b")
    assert structure.parts[1].text() == "after"


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=2000) | st.lists(st.sampled_from([
    b"--b\r\n", b"--b--\r\n", b"\r\n", b"Content-Type: multipart/mixed; boundary=b\r\n",
    b"Content-Type: text/html; charset=utf-16\r\n", b"Content-Transfer-Encoding: base64\r\n",
    b"Content-Transfer-Encoding: quoted-printable\r\n", b"Subject: =?utf-8?q?=FF?=\r\n", b"aGVsbG8=\r\n",
    b"=\r\n", b"From: \"\\\r\n", b"Content-Disposition: attachment; filename*=x''%ff\r\n", b"\xff\xfe\x00",
]), max_size=40).map(b"".join))
def test_arbitrary_bytes_never_raise(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "new" / "1.M1P1.host"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(raw)
    digest = read_summary(str(path))
    with open(path, "rb") as file:
        view, structure = read_message(file, str(path))
        for part in structure.parts:
            assert isinstance(b"".join(iter_decoded(file, part)), bytes)
    assert isinstance(digest.search_text, str) and view.summary.size == len(raw)


_PIECES = [
    b"--b\r\n", b"--b--\r\n", b"--c\r\n", b"--c--", b"\r\n", b"\n", b"Content-Type: multipart/mixed; boundary=b\r\n",
    b"Content-Type: multipart/alternative; boundary=c\r\n", b"Content-Type: text/plain\r\n",
    b"Content-Transfer-Encoding: base64\r\n", b"aGVsbG8gd29ybGQ=\r\n", b"x" * 40, b"--bb\r\n", b"-- b\r\n",
    b"Content-Disposition: attachment; filename=f\r\n",
]


@given(raw=st.lists(st.sampled_from(_PIECES), max_size=60).map(b"".join), block=st.sampled_from([3, 8, 17, 64]))
def test_the_structure_does_not_depend_on_the_block_size(raw: bytes, block: int) -> None:
    """Bodies are skipped a block at a time: wherever the blocks fall, the
    structure is the one the default block size finds."""
    def shape(block_size: int, text_cap: int = TEXT_CAP) -> list[tuple[object, ...]]:
        found = scan(io.BytesIO(raw), block_size=block_size, text_cap=text_cap)
        return [(p.part_id, p.content_type, p.start, p.end, p.size) + ((p.raw_text,) if text_cap else ())
                for p in found.parts]

    assert shape(block) == shape(1 << 18)
    # Text parts are read a line at a time (to keep them); with nothing
    # to keep they are skipped by blocks: the same structure either way.
    assert shape(block, text_cap=0) == [s[:5] for s in shape(1 << 18)]


@given(value=st.text(alphabet="ab .<>@\"',;:()\\\t=?", max_size=24))
@example(value="=@.>")  # unbalanced brackets: found by hypothesis on 3.13.0
@example(value="<a@b")
@example(value="Name <a@b>")
def test_the_simple_address_reading_agrees_with_the_classic_parser(value: str) -> None:
    """One plain address is read without ``getaddresses``: where that
    shortcut applies, it reads what the classic parser reads."""
    import email.message
    import email.utils

    from mailwire.inbox.summary import _addresses

    headers = email.message.Message()
    headers["To"] = value
    pairs = [(" ".join(n.split()), " ".join(a.split())) for n, a in email.utils.getaddresses([value])]
    classic = [(n, a) for n, a in pairs if n or a]
    assert [(a.name, a.address) for a in _addresses(headers, "to")] == classic
