"""``addr_spec``: smtplib's ``quoteaddr`` without brackets, fast path included.

Django 5.2's backend hands smtplib ``sanitize_address`` output ("Name
<a@b>", or a bare address); smtplib's ``quoteaddr`` makes the MAIL/RCPT
argument of it with ``email.utils.parseaddr``. ``addr_spec`` skips that
parse for plain addresses; it must agree with smtplib on every input.
"""

from __future__ import annotations

import smtplib

from hypothesis import given
from hypothesis import strategies as st

from mailwire.django_sending import addr_spec

ATOM = st.text("abcXYZ019_+-", min_size=1, max_size=6)
TRICKY = st.text('abc@.<>"() ,;:_+-=', max_size=16)


def quoteaddr(address: str) -> str:
    quoted: str = smtplib.quoteaddr(address)
    return quoted[1:-1] if quoted.startswith("<") and quoted.endswith(">") else quoted


@given(st.lists(ATOM, min_size=1, max_size=3), st.lists(ATOM, min_size=1, max_size=3))
def test_plain_addresses_agree_with_smtplib(local: list[str], domain: list[str]) -> None:
    address = ".".join(local) + "@" + ".".join(domain)
    assert addr_spec(address) == quoteaddr(address) == address


@given(TRICKY)
def test_any_address_agrees_with_smtplib(address: str) -> None:
    assert addr_spec(address) == quoteaddr(address)


def test_display_names_and_the_null_sender() -> None:
    assert addr_spec("=?utf-8?q?Jos=C3=A9?= <jose@example.com>") == "jose@example.com"
    assert addr_spec('"Doe, John" <john@example.com>') == "john@example.com"
    assert addr_spec("<>") == ""
