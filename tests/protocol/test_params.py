"""MAIL/RCPT parameters: typed options, xtext, and both directions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailwire.errors import LocalProtocolError, RemoteProtocolError
from mailwire.protocol.params import (
    MailOptions, RcptOptions, format_mail_options, format_rcpt_options, parse_mail_options,
    parse_params, parse_rcpt_options, xtext_decode, xtext_encode,
)

# --------------------------------------------------------------------------
# xtext


@pytest.mark.parametrize(
    ("text", "xtext"),
    [
        ("", ""),
        ("abc", "abc"),
        ("a+b", "a+2Bb"),
        ("a=b", "a+3Db"),
        ("a b", "a+20b"),
        ("a\r\nb", "a+0D+0Ab"),
        ("\x00\x7f", "+00+7F"),
        ("caf\u00e9", "caf+C3+A9"),
        ("<a@b.c>", "<a@b.c>"),
        ("Mixed.Case@Example.COM", "Mixed.Case@Example.COM"),
    ],
)
def test_xtext_table(text: str, xtext: str) -> None:
    assert xtext_encode(text) == xtext
    assert xtext_decode(xtext) == text


@pytest.mark.parametrize(
    "bad", ["a b", "a=b", "+", "+4", "+4g", "+2b", "a\x00", "caf\u00e9", "++41"]
)
def test_xtext_decode_refuses(bad: str) -> None:
    with pytest.raises(ValueError):
        xtext_decode(bad)


def test_xtext_decode_utf8_accepts_raw_non_ascii() -> None:
    assert xtext_decode("caf\u00e9+2B", utf8=True) == "caf\u00e9+"
    with pytest.raises(ValueError):
        xtext_decode("a b", utf8=True)


@given(st.text(st.characters(exclude_categories=["Cs"])))
def test_xtext_round_trip(text: str) -> None:
    encoded = xtext_encode(text)
    assert encoded.isascii()
    assert all(33 <= ord(c) <= 126 and c != "=" for c in encoded)
    assert xtext_decode(encoded) == text
    assert xtext_decode(encoded, utf8=True) == text


@given(st.binary())
def test_xtext_round_trip_for_undecodable_bytes(raw: bytes) -> None:
    # Bytes that are not UTF-8 travel as surrogateescape and come back intact.
    text = raw.decode("utf-8", "surrogateescape")
    assert xtext_decode(xtext_encode(text)) == text


# --------------------------------------------------------------------------
# parse_params


@pytest.mark.parametrize(
    ("text", "pairs"),
    [
        ("", []),
        ("SIZE=10", [("SIZE", "10")]),
        ("size=10 Body=8bitmime", [("size", "10"), ("Body", "8bitmime")]),
        ("  SMTPUTF8   XFOO ", [("SMTPUTF8", None), ("XFOO", None)]),
        ("X-Y=a<b>c", [("X-Y", "a<b>c")]),
    ],
)
def test_parse_params(text: str, pairs: list[tuple[str, str | None]]) -> None:
    assert parse_params(text) == pairs


@pytest.mark.parametrize(
    "text", ["=x", "-X=1", "SIZE=", "SIZE==1", "SIZE=a=b", "A_B=1", "SIZE=1 size=2", "X=\x00"]
)
def test_parse_params_refuses(text: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_params(text)
    assert info.value.reply.code == 501


# --------------------------------------------------------------------------
# MAIL options


@pytest.mark.parametrize(
    ("text", "options"),
    [
        ("SIZE=0", MailOptions(size=0)),
        ("SIZE=12345678901234567890", None),  # out of range: see refusals
        ("size=9223372036854775807", MailOptions(size=2**63 - 1)),
        ("BODY=7BIT", MailOptions(body="7BIT")),
        ("BODY=8bitmime", MailOptions(body="8BITMIME")),
        ("body=BinaryMIME", MailOptions(body="BINARYMIME")),
        ("SMTPUTF8", MailOptions(smtputf8=True)),
        ("RET=full", MailOptions(ret="FULL")),
        ("RET=HDRS", MailOptions(ret="HDRS")),
        ("ENVID=QQ314159", MailOptions(envid="QQ314159")),
        ("ENVID=MiXeD+2Bcase", MailOptions(envid="MiXeD+case")),
        ("AUTH=<>", MailOptions(auth="<>")),
        ("AUTH=e+3Dmc2@example.com", MailOptions(auth="e=mc2@example.com")),
        ("REQUIRETLS", MailOptions(requiretls=True)),
        ("MT-PRIORITY=-9", MailOptions(mt_priority=-9)),
        ("MT-PRIORITY=+3", MailOptions(mt_priority=3)),
        ("mt-priority=0", MailOptions(mt_priority=0)),
        ("XFOO=BaR xbare", MailOptions(extra=(("XFOO", "BaR"), ("xbare", None)))),
        ("SIZE=1 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=x AUTH=<> REQUIRETLS MT-PRIORITY=1",
         MailOptions(size=1, body="8BITMIME", smtputf8=True, ret="HDRS", envid="x", auth="<>",
                     requiretls=True, mt_priority=1)),
    ],
)
def test_parse_mail_options(text: str, options: MailOptions | None) -> None:
    if options is None:
        with pytest.raises(RemoteProtocolError):
            parse_mail_options(text)
    else:
        assert parse_mail_options(text) == options


@pytest.mark.parametrize(
    "text",
    [
        "SIZE", "SIZE=abc", "SIZE=-1", "SIZE=1.5", "SIZE=+5", "SIZE=1e3",
        "SIZE=\u0661\u0662",  # Arabic-Indic digits: not DIGIT
        "BODY", "BODY=9BIT", "BODY=8BIT",
        "SMTPUTF8=yes", "REQUIRETLS=1",
        "RET", "RET=ALL",
        "ENVID", "ENVID=a+2b", "ENVID=" + "x" * 101, "ENVID=a+",
        "AUTH",
        "MT-PRIORITY=10", "MT-PRIORITY=-10", "MT-PRIORITY", "MT-PRIORITY=high",
        "MT-PRIORITY=\u0663",
    ],
)
def test_malformed_mail_options_carry_a_reply(text: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_mail_options(text)
    reply = info.value.reply
    assert reply.code in (501, 555)
    assert reply.enhanced is not None and reply.enhanced.klass == 5
    assert reply.to_bytes().count(b"\r\n") == len(reply.lines)


def test_parse_mail_options_from_pairs() -> None:
    assert parse_mail_options([("Size", "5"), ("XA", None)]) == MailOptions(size=5, extra=(("XA", None),))


# --------------------------------------------------------------------------
# RCPT options


@pytest.mark.parametrize(
    ("text", "options"),
    [
        ("NOTIFY=NEVER", RcptOptions(notify=())),
        ("NOTIFY=never", RcptOptions(notify=())),
        ("NOTIFY=SUCCESS", RcptOptions(notify=("SUCCESS",))),
        ("NOTIFY=delay,Failure", RcptOptions(notify=("FAILURE", "DELAY"))),
        ("NOTIFY=DELAY,FAILURE,SUCCESS", RcptOptions(notify=("SUCCESS", "FAILURE", "DELAY"))),
        ("ORCPT=rfc822;Bob@Example.COM", RcptOptions(orcpt=("rfc822", "Bob@Example.COM"))),
        ("ORCPT=RFC822;a+2Bb@x.org", RcptOptions(orcpt=("RFC822", "a+b@x.org"))),
        ("ORCPT=rfc822;", RcptOptions(orcpt=("rfc822", ""))),
        ("ORCPT=utf-8;j\u00f6rg@x.org", RcptOptions(orcpt=("utf-8", "j\u00f6rg@x.org"))),
        ("NOTIFY=NEVER XFOO=1", RcptOptions(notify=(), extra=(("XFOO", "1"),))),
    ],
)
def test_parse_rcpt_options(text: str, options: RcptOptions) -> None:
    assert parse_rcpt_options(text) == options


@pytest.mark.parametrize(
    "text",
    [
        "NOTIFY", "NOTIFY=", "NOTIFY=SOMETIMES", "NOTIFY=NEVER,SUCCESS", "NOTIFY=SUCCESS,SUCCESS",
        "NOTIFY=SUCCESS,", "ORCPT", "ORCPT=a@b.c", "ORCPT=;a@b.c", "ORCPT=rfc_822;a@b.c",
        "ORCPT=rfc822;a+2b", "ORCPT=rfc822;j\u00f6rg@x.org", "ORCPT=rfc822;" + "a" * 501,
    ],
)
def test_malformed_rcpt_options_carry_a_reply(text: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_rcpt_options(text)
    assert info.value.reply.code in (501, 555)


# --------------------------------------------------------------------------
# formatting


def test_format_mail_options_order_and_case() -> None:
    options = MailOptions(
        size=10, body="BINARYMIME", smtputf8=True, ret="FULL", envid="Id+1=2",
        auth="User@Example.com", requiretls=True, mt_priority=-2, extra=(("XfOo", "BaR"),),
    )
    assert format_mail_options(options) == [
        "SIZE=10", "BODY=BINARYMIME", "SMTPUTF8", "RET=FULL", "ENVID=Id+2B1+3D2",
        "AUTH=User@Example.com", "REQUIRETLS", "MT-PRIORITY=-2", "XfOo=BaR",
    ]
    assert format_mail_options(MailOptions()) == []


def test_format_rcpt_options() -> None:
    assert format_rcpt_options(RcptOptions(notify=())) == ["NOTIFY=NEVER"]
    assert format_rcpt_options(
        RcptOptions(notify=("SUCCESS", "DELAY"), orcpt=("rfc822", "A B@x.org"), extra=(("X", None),))
    ) == ["NOTIFY=SUCCESS,DELAY", "ORCPT=rfc822;A+20B@x.org", "X"]


@pytest.mark.parametrize(
    "options",
    [
        MailOptions(size=-1),
        MailOptions(envid="x" * 101),
        # An empty esmtp-value is not a value (RFC 5321 4.1.2): the server refuses it.
        MailOptions(envid=""),
        MailOptions(auth=""),
        MailOptions(mt_priority=10),
        MailOptions(mt_priority=-10),
        MailOptions(extra=(("bad key", None),)),
        MailOptions(extra=(("-X", None),)),
        MailOptions(extra=(("X", ""),)),
        MailOptions(extra=(("X", "a=b"),)),
        MailOptions(extra=(("X", "a b"),)),
        # The same keyword twice is refused by every server.
        MailOptions(size=5, extra=(("size", "6"),)),
        MailOptions(extra=(("XA", "1"), ("xa", "2"))),
    ],
)
def test_format_mail_options_refuses(options: MailOptions) -> None:
    with pytest.raises(LocalProtocolError):
        format_mail_options(options)


@pytest.mark.parametrize(
    "options",
    [
        RcptOptions(notify=("SOMETIMES",)),  # type: ignore[arg-type]
        RcptOptions(notify=("DELAY", "DELAY")),
        RcptOptions(orcpt=("rfc 822", "a@b.c")),
        RcptOptions(orcpt=("", "a@b.c")),
        RcptOptions(notify=(), extra=(("Notify", "NEVER"),)),
    ],
)
def test_format_rcpt_options_refuses(options: RcptOptions) -> None:
    with pytest.raises(LocalProtocolError):
        format_rcpt_options(options)


# --------------------------------------------------------------------------
# round trips: what we format parses back to the same typed options

_values = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
_esmtp_values = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e).filter(lambda c: c != "="),
                        min_size=1, max_size=10)
_extra_keys = st.from_regex(r"X-[A-Za-z0-9][A-Za-z0-9\-]{0,8}", fullmatch=True)


def _distinct_keys(pairs: list[tuple[str, str | None]]) -> bool:
    keys = [k.upper() for k, _ in pairs]
    return len(keys) == len(set(keys))


_extras = st.lists(st.tuples(_extra_keys, st.one_of(st.none(), _esmtp_values)), max_size=3).filter(
    _distinct_keys).map(tuple)

mail_options = st.builds(
    MailOptions,
    size=st.one_of(st.none(), st.integers(0, 2**63 - 1)),
    body=st.one_of(st.none(), st.sampled_from(["7BIT", "8BITMIME", "BINARYMIME"])),
    smtputf8=st.booleans(),
    ret=st.one_of(st.none(), st.sampled_from(["FULL", "HDRS"])),
    envid=st.one_of(st.none(), _values.filter(lambda v: 0 < len(v) <= 100)),
    auth=st.one_of(st.none(), st.just("<>"), _values.filter(bool)),
    requiretls=st.booleans(),
    mt_priority=st.one_of(st.none(), st.integers(-9, 9)),
    extra=_extras,
)

rcpt_options = st.builds(
    RcptOptions,
    notify=st.one_of(
        st.none(), st.just(()),
        st.sets(st.sampled_from(["SUCCESS", "FAILURE", "DELAY"]), min_size=1).map(
            lambda s: tuple(n for n in ("SUCCESS", "FAILURE", "DELAY") if n in s)),
    ),
    orcpt=st.one_of(st.none(), st.tuples(st.from_regex(r"[A-Za-z0-9\-]{1,8}", fullmatch=True),
                                         _values.filter(lambda v: len(v) <= 500))),
    extra=_extras,
)


@given(mail_options)
def test_mail_options_round_trip(options: MailOptions) -> None:
    words = format_mail_options(options)
    assert all(" " not in w and "\r" not in w and "\n" not in w for w in words)
    parsed = parse_mail_options(" ".join(words))
    assert parsed == options
    # Values keep their case exactly (DSN xtext is case-sensitive).
    if options.envid is not None:
        assert parsed.envid == options.envid


@given(rcpt_options)
def test_rcpt_options_round_trip(options: RcptOptions) -> None:
    words = format_rcpt_options(options)
    assert all(" " not in w for w in words)
    assert parse_rcpt_options(" ".join(words)) == options


@given(st.lists(st.tuples(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9\-]{0,8}", fullmatch=True),
                          st.one_of(st.none(), _esmtp_values)), max_size=5).filter(_distinct_keys))
def test_parse_params_keeps_spelling(pairs: list[tuple[str, str | None]]) -> None:
    text = " ".join(k if v is None else f"{k}={v}" for k, v in pairs)
    assert parse_params(text) == pairs


def test_options_are_frozen_values() -> None:
    options = MailOptions(size=1)
    with pytest.raises(AttributeError):
        options.size = 2  # type: ignore[misc]
    assert options.with_(size=2) == MailOptions(size=2)
    assert options == MailOptions(size=1) and hash(options) == hash(MailOptions(size=1))
