"""``CaughtMessage``: reading what a sign-up or reset test needs, from any message.

Messages are built with the standard library's ``email`` (as applications
send them) or written by hand where they must be broken; no server here:
``CaughtMessage`` reads octets.
"""

from __future__ import annotations

import re
from email.message import EmailMessage

import pytest

from mailwire.server.envelope import Envelope
from mailwire.testing import CaughtMessage


def build(text: str | None = "Hi", html: str | None = None, subject: str = "Welcome",
          to: str = "Bob <bob@example.org>", **headers: str) -> CaughtMessage:
    message = EmailMessage()
    message["From"] = "App <noreply@app.example>"
    message["To"] = to
    message["Subject"] = subject
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    if text is not None:
        message.set_content(text)
        if html is not None:
            message.add_alternative(html, subtype="html")
    elif html is not None:
        message.set_content(html, subtype="html")
    return CaughtMessage(message.as_bytes())


def test_the_fields_of_a_message() -> None:
    caught = build("Hello Bob", "<p>Hello <b>Bob</b></p>", subject="=?utf-8?q?Gr=C3=BC=C3=9Fe?=",
                   to="Bob <bob@example.org>, carol@example.org", Cc="dave@example.org", X_Trace="a  b")
    assert caught.subject == "Grüße"
    assert caught.sender == "noreply@app.example"
    assert caught.to == ["bob@example.org", "carol@example.org", "dave@example.org"]
    assert caught.text == "Hello Bob\n" and caught.html == "<p>Hello <b>Bob</b></p>\n"
    assert caught.headers["x-trace"] == "a b" and caught.headers["X-TRACE"] == "a b"
    assert caught.headers.get_all("to") == ["Bob <bob@example.org>, carol@example.org"]
    assert "subject" in caught.headers and "Nope" not in caught.headers
    assert list(caught.headers)[:4] == ["From", "To", "Subject", "Cc"]
    assert caught.email["From"].addresses[0].display_name == "App"
    assert caught.raw.startswith(b"From: App") and caught.id == ""
    assert repr(caught) == ("<CaughtMessage from noreply@app.example to bob@example.org, carol@example.org, "
                            "dave@example.org: 'Grüße'>")


def test_the_envelope_names_the_recipients_and_the_sender_falls_back_to_it() -> None:
    raw = b"To: list@example.org\r\nSubject: s\r\n\r\nbody\r\n"
    caught = CaughtMessage.from_envelope(Envelope("bounce@app.example", rcpt_to=["bob@example.org"], content=raw))
    assert caught.to == ["bob@example.org"]  # the envelope, not the To header
    assert caught.sender == "bounce@app.example"  # no From header
    assert caught.text == "body\n"


def test_text_from_html_when_there_is_no_text_part() -> None:
    caught = build(None, "<html><head><title>T</title><style>p{}</style></head><body>"
                         "<p>Your code</p><p>123456</p><script>var x = 999999;</script>"
                         "<div>Bye &amp; thanks</div><br/>end</body></html>")
    assert caught.text == "Your code\n123456\nBye & thanks\nend"
    assert caught.code() == "123456"


def test_links_from_html_and_text_in_order_once_each() -> None:
    caught = build(
        "Confirm at https://app.example/confirm?t=abc&u=1. Or (https://app.example/help).\n"
        "Unsubscribe: <https://app.example/unsub>",
        '<a href="https://app.example/confirm?t=abc&amp;u=1">Confirm</a>'
        '<a href="mailto:help@app.example">mail</a><a href="#top">top</a><a href="/relative">rel</a>'
        '<a href=" HTTPS://app.example/Shout ">x</a> see http://plain.example/page, thanks',
    )
    assert caught.links == ["https://app.example/confirm?t=abc&u=1", "HTTPS://app.example/Shout",
                            "http://plain.example/page", "https://app.example/help", "https://app.example/unsub"]
    assert caught.link("confirm") == "https://app.example/confirm?t=abc&u=1"
    assert caught.link("plain") == "http://plain.example/page"


def test_link_fails_listing_the_links_when_not_exactly_one() -> None:
    caught = build("https://a.example/reset https://a.example/help")
    with pytest.raises(AssertionError, match=r"2 links containing 'a.example', not one") as many:
        caught.link("a.example")
    assert "  https://a.example/reset\n  https://a.example/help" in str(many.value)
    with pytest.raises(AssertionError, match=r"no link containing 'verify' in the message from noreply@"):
        caught.link("verify")
    with pytest.raises(AssertionError, match=r"2 links, not one"):
        caught.link()
    assert build("only https://x.example/one here").link() == "https://x.example/one"
    with pytest.raises(AssertionError, match=r"its links:\n  \(none\)"):
        build("no links").link()


@pytest.mark.parametrize(("text", "code"), [
    ("Your verification code is 482913.", "482913"),
    ("482913 is your code", "482913"),
    ("Code: 4829 (valid until 2026-12-06 10:30)", "4829"),
    ("Use 55667788 to sign in. © 2026 App Ltd.", "55667788"),  # a year is not preferred
    ("Call +1 555 123 4567 or +44 20 7946 0958. Your code: 771234", "771234"),  # phone groups are not codes
    ("Total $1234.00 or €2500, paid 06/12/2026; OTP 9182", "9182"),  # prices, dates
    ("Order #12345, ref 12345678 at https://app.example/o/87654321. Your PIN is 4321", "4321"),  # near a keyword
    ("Version 1.2345.6 build, 10:30:45; passcode\n\n  000123  \n", "000123"),  # leading zeros kept
])
def test_the_code_is_found_and_lookalikes_are_not(text: str, code: str) -> None:
    assert build(text).code() == code


def test_the_code_in_the_subject_and_body_is_one_code() -> None:
    assert build("Enter 739201 to continue", subject="739201 is your code").code() == "739201"


@pytest.mark.parametrize(("text", "message"), [
    ("Hello, welcome aboard!", r"no one-time code \(4-8 digits\) in the message; its text: '[^']*welcome aboard"),
    ("Codes: 1111 or 2222", r"more than one one-time code .* pass pattern= to choose: '1111' in .*; '2222' in"),
    ("Meet at 2024, 2025", r"more than one"),
    ("Your old code 1111 is replaced by your new code 2222", r"more than one"),
])
def test_no_code_or_an_ambiguous_one_fails_saying_what_was_found(text: str, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        build(text, subject="Hi").code()


def test_a_code_by_pattern_or_length() -> None:
    caught = build("Your code is AB-12CD. Ref 123456 and 98.", subject="Hi")
    assert caught.code(r"code is ([A-Z0-9]{2}-[A-Z0-9]{4})") == "AB-12CD"
    assert caught.code(re.compile(r"[A-Z]{2}-\w+")) == "AB-12CD"
    assert caught.code(digits=(2, 3)) == "98"
    with pytest.raises(AssertionError, match=r"no match of 'XYZ\\\\d\+'"):
        caught.code(r"XYZ\d+")
    with pytest.raises(ValueError, match="digits must be"):
        caught.code(digits=(6, 4))


@pytest.mark.parametrize("raw", [
    # an unknown charset, a broken base64 body, 8-bit octets in headers, no end to the multipart
    b"Subject: x\r\nContent-Type: text/plain; charset=x-unknown-7\r\n\r\nHello 123456\r\n",
    b"Subject: x\r\nContent-Transfer-Encoding: base64\r\n\r\nSGVsbG8gMTIzNDU2=*&^%\r\n",
    b"Subject: caf\xe9 \xff\r\nFrom: \xff\xfe <@@>\r\nTo: ,,<>\r\n\r\nHello 123456\r\n",
    b"Subject: x\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n"
    b"Hello 123456\r\n--b\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable"
    b"\r\n\r\n<a href=3D\"https://x.example/=\r\nlong\">x</a><p",
    b"",
    b"\r\n\r\n\xff\xfe\x00garbage",
])
def test_broken_messages_are_read_without_raising(raw: bytes) -> None:
    caught = CaughtMessage(raw)
    for name in ("subject", "sender", "to", "text", "html", "links", "headers"):
        getattr(caught, name)
    caught.describe()
    if b"123456" in raw or b"SGVsbG8gMTIzNDU2" in raw:
        assert "123456" in caught.text
        assert caught.code() == "123456"
    if b"x.example" in raw:
        assert caught.links == ["https://x.example/long"]
