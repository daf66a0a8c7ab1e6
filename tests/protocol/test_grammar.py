"""RFC 5321 / 6531 syntax: mailboxes, domains, paths, and the client-side checks."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailwire.errors import LocalProtocolError
from mailwire.protocol import grammar
from mailwire.protocol.grammar import (
    CONTROL_CHARS, check_address, check_argument, is_domain_or_literal, is_mailbox, split_path,
)


@pytest.mark.parametrize(
    "address",
    [
        "a@example.com",
        "first.last@sub.example.co.uk",
        "user+tag@example.com",
        "!#$%&'*+-/=?^_`{|}~@example.com",
        '"john smith"@example.com',
        '"a\\"b"@example.com',
        '""@example.com',
        '"@"@example.com',
        "a@localhost",
        "a@x",
        "a@1.2.3.4.example",
        "a@xn--bcher-kva.example",
        "a@[192.0.2.1]",
        "a@[IPv6:2001:db8::1]",
        "a@[x-tag:some:thing]",
        "a@a-b.example",
        "a@0-9.example",
        # RFC 6531: UTF-8 local parts and U-label domains
        "j\u00f6rg@b\u00fccher.example",
        "\u7528\u6237@\u4f8b\u5b50.\u5e7f\u544a",
    ],
)
def test_mailboxes(address: str) -> None:
    assert is_mailbox(address)


@pytest.mark.parametrize(
    "address",
    [
        "", "a", "@example.com", "a@", "a@@b.c", "a b@c.d", "a..b@c.d", ".a@c.d", "a.@c.d",
        "a@-example.com", "a@example-.com", "a@exa_mple.com", "a@.example.com", "a@example..com",
        "a@example.com.", '"unterminated@c.d', '"a"b@c.d', 'a"b"@c.d', "a@[1.2.3]", "a@[256.1.1.1.1]",
        "a@[\u0661.\u0662.\u0663.\u0664]",  # Arabic-Indic digits are not DIGIT
        "a<b@c.d", "a>b@c.d", "a@b.c>", "a\r@b.c", "a@b\n.c",
        "a\udce9@b.c",  # a byte that was not UTF-8
        '"a\x01"@b.c',
    ],
)
def test_not_mailboxes(address: str) -> None:
    assert not is_mailbox(address)


def test_ascii_only_mailboxes() -> None:
    assert is_mailbox("a@b.example", utf8=False)
    assert not is_mailbox("j\u00f6rg@b.example", utf8=False)


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("example.com", True), ("localhost", True), ("[192.0.2.1]", True), ("[IPv6:::1]", True),
        ("b\u00fccher.example", True), ("-x.example", False), ("x_y.example", False), ("", False),
        ("[192.0.2.1", False), ("example.com ", False),
    ],
)
def test_domains(text: str, ok: bool) -> None:
    assert is_domain_or_literal(text) is ok


@pytest.mark.parametrize(
    ("text", "result"),
    [
        ("<a@b.c>", ("a@b.c", "")),
        ("<>", ("", "")),
        ("<a@b.c> SIZE=10 BODY=8BITMIME", ("a@b.c", "SIZE=10 BODY=8BITMIME")),
        ("<a@b.c>   SIZE=10  ", ("a@b.c", "SIZE=10")),
        ("<@r1.example,@r2.example:a@b.c>", ("a@b.c", "")),
        ('<"a b>c"@d.e> X=1', ('"a b>c"@d.e', "X=1")),
        ("<Postmaster>", ("Postmaster", "")),
        # Regression: U+00A0 / U+2028 are UTF8-non-ascii, not path delimiters
        # (the pattern used \s, which is Unicode-aware).
        ("<j\u00a0rg@x.org> SMTPUTF8", ("j\u00a0rg@x.org", "SMTPUTF8")),
        ("<a\u2028b@x.org>", ("a\u2028b@x.org", "")),
        # Not a path at all, or junk glued to it:
        ("a@b.c", None),
        ("<a@b.c", None),
        ("<a@b.c>SIZE=1", None),
        ("<a b@c.d>", None),
        ("<a<b@c.d>", None),
        ('<"a@b.c>', None),
        (" <a@b.c>", None),
    ],
)
def test_split_path(text: str, result: tuple[str, str] | None) -> None:
    assert split_path(text) == result


@pytest.mark.parametrize("char", [chr(c) for c in range(0x20)] + ["\x7f"])
def test_control_chars_cover_c0_and_del(char: str) -> None:
    assert CONTROL_CHARS.search(char)
    with pytest.raises(LocalProtocolError, match="control character"):
        check_argument(f"ab{char}cd", "thing")
    with pytest.raises(LocalProtocolError):
        check_address(f"a{char}@b.c")


@given(st.text(st.characters(min_codepoint=0x20, exclude_categories=["Cs"]).filter(lambda c: c != "\x7f")))
def test_printable_arguments_pass(value: str) -> None:
    assert check_argument(value, "thing") == value


@pytest.mark.parametrize(
    "address",
    ["a@b.c> NOTIFY=NEVER", "a@b.c>\r\nRCPT TO:<x@y>", "<a@b.c", "a b@c.d", '"x@y.z', 'a"@b.c',
     '"ok"> X=1@b.c'],
)
def test_check_address_refuses(address: str) -> None:
    with pytest.raises(LocalProtocolError):
        check_address(address)


@pytest.mark.parametrize("address", ['"a b"@c.d', '"<>"@c.d', '"a\\" b"@c.d', "", "a@b.c", "Postmaster"])
def test_check_address_allows(address: str) -> None:
    assert check_address(address) == address


@given(st.text(st.characters(exclude_categories=["Cs"]), max_size=30))
def test_checked_address_cannot_end_the_path_early(address: str) -> None:
    # Whatever passes check_address, the server's path splitter reads back the
    # whole of it as the address and finds no parameters.
    try:
        check_address(address)
    except LocalProtocolError:
        return
    assert split_path(f"<{address}>") == (address, "")


@pytest.mark.parametrize(
    "name",
    ["ATEXT", "DOT_STRING", "QUOTED_STRING", "LOCAL_PART", "DOMAIN", "ADDRESS_LITERAL", "MAILBOX",
     "ESMTP_KEYWORD", "ESMTP_VALUE"],
)
def test_named_patterns_compile(name: str) -> None:
    re.compile(getattr(grammar, name))


@pytest.mark.parametrize(
    ("pattern", "text", "ok"),
    [
        ("ESMTP_KEYWORD", "SIZE", True), ("ESMTP_KEYWORD", "MT-PRIORITY", True),
        ("ESMTP_KEYWORD", "-X", False), ("ESMTP_KEYWORD", "A_B", False),
        ("ESMTP_VALUE", "8BITMIME", True), ("ESMTP_VALUE", "a=b", False), ("ESMTP_VALUE", "a b", False),
        ("ESMTP_VALUE", "", False), ("ESMTP_VALUE", "caf\u00e9", True),
    ],
)
def test_esmtp_patterns(pattern: str, text: str, ok: bool) -> None:
    assert (re.fullmatch(getattr(grammar, pattern), text) is not None) is ok
