"""Command lines both ways: format_command (client) and parse_command (server)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

import mailwire
from mailwire.errors import LocalProtocolError
from mailwire.protocol.commands import (
    encode_auth_data, format_command, parse_auth_response, parse_command,
)
from mailwire.protocol.events import (
    Auth, AuthResponse, Bdat, Command, Data, Ehlo, Expn, Helo, Help, Lhlo, Mail, Noop, Quit,
    RawCommand, Rcpt, Rejected, Rset, StartTLS, Vrfy,
)
from mailwire.protocol.params import MailOptions, RcptOptions

# --------------------------------------------------------------------------
# formatting


@pytest.mark.parametrize(
    ("event", "wire"),
    [
        (Ehlo("client.example.com"), b"EHLO client.example.com\r\n"),
        (Helo("[192.0.2.1]"), b"HELO [192.0.2.1]\r\n"),
        (Lhlo("c"), b"LHLO c\r\n"),
        (Mail(""), b"MAIL FROM:<>\r\n"),
        (Mail("a@example.com"), b"MAIL FROM:<a@example.com>\r\n"),
        (Mail('"john smith"@example.com'), b'MAIL FROM:<"john smith"@example.com>\r\n'),
        (Mail('"a>b"@example.com'), b'MAIL FROM:<"a>b"@example.com>\r\n'),
        (Mail("j\u00f6rg@b\u00fccher.example"), "MAIL FROM:<j\u00f6rg@b\u00fccher.example>\r\n".encode()),
        (Mail("a@x.org", MailOptions(size=1000, body="8BITMIME")), b"MAIL FROM:<a@x.org> SIZE=1000 BODY=8BITMIME\r\n"),
        (Rcpt("b@example.com"), b"RCPT TO:<b@example.com>\r\n"),
        (Rcpt("Postmaster"), b"RCPT TO:<Postmaster>\r\n"),
        (Rcpt("b@x.org", RcptOptions(notify=("SUCCESS", "FAILURE"))),
         b"RCPT TO:<b@x.org> NOTIFY=SUCCESS,FAILURE\r\n"),
        (Data(), b"DATA\r\n"),
        (Bdat(0), b"BDAT 0\r\n"),
        (Bdat(12345, last=True), b"BDAT 12345 LAST\r\n"),
        (Rset(), b"RSET\r\n"),
        (Noop(), b"NOOP\r\n"),
        (Noop("ping"), b"NOOP ping\r\n"),
        (Quit(), b"QUIT\r\n"),
        (Vrfy("John Smith"), b"VRFY John Smith\r\n"),
        (Expn("staff"), b"EXPN staff\r\n"),
        (Help(), b"HELP\r\n"),
        (Help("MAIL"), b"HELP MAIL\r\n"),
        (StartTLS(), b"STARTTLS\r\n"),
        (Auth("plain"), b"AUTH PLAIN\r\n"),
        (Auth("CRAM-MD5"), b"AUTH CRAM-MD5\r\n"),
        (Auth("X_TOKEN-2"), b"AUTH X_TOKEN-2\r\n"),
        (Auth("PLAIN", b"\0user\0pass"), b"AUTH PLAIN AHVzZXIAcGFzcw==\r\n"),
        (Auth("PLAIN", b""), b"AUTH PLAIN =\r\n"),
        (AuthResponse(b"user"), b"dXNlcg==\r\n"),
        (AuthResponse(b""), b"=\r\n"),
        (AuthResponse(None), b"*\r\n"),
        (RawCommand("XCLIENT", "NAME=x"), b"XCLIENT NAME=x\r\n"),
        (RawCommand("ETRN"), b"ETRN\r\n"),
    ],
)
def test_format_table(event: Command, wire: bytes) -> None:
    assert format_command(event) == wire


# Every C0 control and DEL, in every place an argument goes.
CONTROLS = [chr(c) for c in range(0x20)] + ["\x7f"]

ARGUMENT_PLACES: list[tuple[str, Callable[[str], object]]] = [
    ("EHLO name", lambda s: Ehlo(f"host{s}x")),
    ("HELO name", lambda s: Helo(f"host{s}x")),
    ("LHLO name", lambda s: Lhlo(f"host{s}x")),
    ("sender", lambda s: Mail(f"a{s}b@example.com")),
    ("sender domain", lambda s: Mail(f"a@exa{s}mple.com")),
    ("sender at end", lambda s: Mail(f"a@example.com{s}")),
    ("quoted sender", lambda s: Mail(f'"a{s}b"@example.com')),
    ("recipient", lambda s: Rcpt(f"a{s}b@example.com")),
    ("quoted recipient", lambda s: Rcpt(f'"a {s}b"@example.com')),
    ("VRFY", lambda s: Vrfy(f"john{s}")),
    ("EXPN", lambda s: Expn(f"list{s}")),
    ("NOOP", lambda s: Noop(f"x{s}")),
    ("HELP", lambda s: Help(f"x{s}")),
    ("raw verb", lambda s: RawCommand(f"X{s}")),
    ("raw argument", lambda s: RawCommand("XFOO", f"a{s}b")),
    ("AUTH mechanism", lambda s: Auth(f"PLAIN{s}")),
    ("AUTH mechanism start", lambda s: Auth(f"{s}PLAIN")),
    ("MAIL extra key", lambda s: Mail("a@x.org", MailOptions(extra=((f"X{s}", None),)))),
    ("MAIL extra value", lambda s: Mail("a@x.org", MailOptions(extra=(("XFOO", f"a{s}b"),)))),
    ("RCPT extra value", lambda s: Rcpt("a@x.org", RcptOptions(extra=(("XFOO", f"a{s}"),)))),
    ("ORCPT type", lambda s: Rcpt("a@x.org", RcptOptions(orcpt=(f"rfc{s}822", "a@x.org")))),
]


@pytest.mark.parametrize("control", CONTROLS, ids=[f"0x{ord(c):02x}" for c in CONTROLS])
@pytest.mark.parametrize(("place", "make"), ARGUMENT_PLACES, ids=[p for p, _ in ARGUMENT_PLACES])
def test_controls_refused_everywhere(place: str, make: Callable[[str], Command], control: str) -> None:
    with pytest.raises(LocalProtocolError):
        format_command(make(control))


@pytest.mark.parametrize("control", CONTROLS, ids=[f"0x{ord(c):02x}" for c in CONTROLS])
def test_controls_in_xtext_values_are_encoded_not_refused(control: str) -> None:
    # ENVID and ORCPT are xtext: a control becomes +XX, it never reaches the line raw.
    line = format_command(Rcpt("a@x.org", RcptOptions(orcpt=("rfc822", f"a{control}b@x.org"))))
    assert line.endswith(b"\r\n") and line.count(b"\r") == 1 and line.count(b"\n") == 1
    assert f"+{ord(control):02X}".encode() in line
    line = format_command(Mail("a@x.org", MailOptions(envid=f"id{control}")))
    assert line.count(b"\r\n") == 1 and f"+{ord(control):02X}".encode() in line


@pytest.mark.parametrize(
    "address",
    [
        "a@b.c> NOTIFY=NEVER",
        "a@b.c>\r\nRCPT TO:<x@y>",
        "a@b.c> SIZE=1",
        "<a@b.c>",
        "a@b.c>",
        "<a@b.c",
        "a b@b.c",
        "a@b.c ",
        " a@b.c",
        "a@b .c",
        '"unbalanced@b.c',
        'a"@b.c',
        '"a"b"@c.d',
        '"ok"@b.c> NOTIFY=NEVER',
        '"ok" @b.c',
        "a@b.c\tX",
        "a\u0000@b.c",
    ],
)
def test_addresses_that_would_change_the_command_are_refused(address: str) -> None:
    with pytest.raises(LocalProtocolError):
        format_command(Mail(address))
    with pytest.raises(LocalProtocolError):
        format_command(Rcpt(address))


@pytest.mark.parametrize(
    "address",
    ['"john smith"@example.com', '"a b c"@x.org', '"<a>"@x.org', '"a\\"b c"@x.org', '" "@x.org'],
)
def test_quoted_local_parts_with_spaces_and_brackets_are_allowed(address: str) -> None:
    line = format_command(Rcpt(address))
    assert line == f"RCPT TO:<{address}>\r\n".encode()
    # And the server side reads back exactly this address.
    parsed = parse_command(line[:-2])
    assert parsed == Rcpt(address)


@pytest.mark.parametrize(
    "event",
    [Ehlo(""), Ehlo("two words"), Helo(""), Lhlo("a b"), Rcpt(""), Bdat(-1),
     Auth(""), Auth("A" * 21), Auth("PL AIN"), Auth("PLAIN=")],
)
def test_other_refusals(event: Command) -> None:
    with pytest.raises(LocalProtocolError):
        format_command(event)


def test_not_a_command() -> None:
    # The compiled build checks the argument's type on the way in, as
    # mypyc-compiled functions do, before format_command's own check.
    with pytest.raises(TypeError if mailwire.__compiled__ else LocalProtocolError):
        format_command("QUIT")  # type: ignore[arg-type]


@pytest.mark.parametrize(("data", "text"), [(None, "*"), (b"", "="), (b"a", "YQ=="), (b"\xff\x00", "/wA=")])
def test_encode_auth_data(data: bytes | None, text: str) -> None:
    assert encode_auth_data(data) == text


# --------------------------------------------------------------------------
# parsing


def ok(line: bytes) -> Command:
    event = parse_command(line)
    assert not isinstance(event, Rejected), event
    return event


@pytest.mark.parametrize(
    ("line", "event"),
    [
        (b"EHLO client.example", Ehlo("client.example")),
        (b"ehlo client.example", Ehlo("client.example")),
        (b"HELO [192.0.2.1]", Helo("[192.0.2.1]")),
        (b"LHLO c", Lhlo("c")),
        (b"EHLO  spaced  ", Ehlo("spaced")),
        (b"MAIL FROM:<a@example.com>", Mail("a@example.com")),
        (b"mail from:<a@example.com>", Mail("a@example.com")),
        (b"MAIL FROM: <a@example.com>", Mail("a@example.com")),
        (b"MAIL FROM:<>", Mail("")),
        (b"MAIL FROM:<@relay.example,@other.example:a@example.com>", Mail("a@example.com")),
        (b'MAIL FROM:<"john smith"@example.com>', Mail('"john smith"@example.com')),
        (b"MAIL FROM:<a@[192.0.2.1]>", Mail("a@[192.0.2.1]")),
        (b"MAIL FROM:<a@[IPv6:2001:db8::1]>", Mail("a@[IPv6:2001:db8::1]")),
        (b"MAIL FROM:<a@x.org> SIZE=100 BODY=8bitmime", Mail("a@x.org", MailOptions(size=100, body="8BITMIME"))),
        (b"MAIL FROM:<a@x.org>  SMTPUTF8  ", Mail("a@x.org", MailOptions(smtputf8=True))),
        ("MAIL FROM:<j\u00f6rg@b\u00fccher.example> SMTPUTF8".encode(),
         Mail("j\u00f6rg@b\u00fccher.example", MailOptions(smtputf8=True))),
        (b"MAIL FROM:<a@x.org> XFOO=Bar", Mail("a@x.org", MailOptions(extra=(("XFOO", "Bar"),)))),
        (b"RCPT TO:<b@example.com>", Rcpt("b@example.com")),
        (b"RCPT TO:<Postmaster>", Rcpt("Postmaster")),
        (b"RCPT TO:<postmaster>", Rcpt("postmaster")),
        (b"RCPT TO:<b@x.org> NOTIFY=never", Rcpt("b@x.org", RcptOptions(notify=()))),
        (b"RCPT TO:<b@x.org> ORCPT=rfc822;A+2BB@x.org",
         Rcpt("b@x.org", RcptOptions(orcpt=("rfc822", "A+B@x.org")))),
        (b"DATA", Data()),
        (b"data", Data()),
        (b"BDAT 0", Bdat(0)),
        (b"BDAT 100 LAST", Bdat(100, True)),
        (b"BDAT 100 last", Bdat(100, True)),
        (b"BDAT 7  LAST  ", Bdat(7, True)),
        (b"RSET", Rset()),
        (b"NOOP", Noop()),
        (b"NOOP anything at all", Noop("anything at all")),
        (b"QUIT", Quit()),
        (b"VRFY John Smith", Vrfy("John Smith")),
        (b"EXPN staff", Expn("staff")),
        (b"HELP", Help()),
        (b"HELP MAIL", Help("MAIL")),
        (b"STARTTLS", StartTLS()),
        (b"AUTH PLAIN", Auth("PLAIN")),
        (b"auth plain AHUAcA==", Auth("PLAIN", b"\0u\0p")),
        (b"AUTH PLAIN =", Auth("PLAIN", b"")),
        (b"AUTH LOGIN dXNlcg==", Auth("LOGIN", b"user")),
        (b"XCLIENT NAME=x", RawCommand("XCLIENT", "NAME=x")),
        (b"etrn example.com", RawCommand("ETRN", "example.com")),
    ],
)
def test_parse_table(line: bytes, event: Command) -> None:
    assert ok(line) == event


@pytest.mark.parametrize(
    ("line", "code", "enhanced"),
    [
        # control characters and bad encodings
        (b"NOOP \x00", 501, "5.5.2"),
        (b"MAIL FROM:<a@b.c>\rRCPT TO:<x@y.z>", 501, "5.5.2"),
        (b"MAIL FROM:<a@b.c>\nRCPT TO:<x@y.z>", 501, "5.5.2"),
        (b"EHLO a\tb", 501, "5.5.2"),
        (b"NOOP \x7f", 501, "5.5.2"),
        (b"MAIL FROM:<\xff@b.c>", 500, "5.5.2"),
        # hello
        (b"EHLO", 501, "5.5.4"),
        (b"HELO", 501, "5.5.4"),
        (b"EHLO two words", 501, "5.5.4"),
        # MAIL / RCPT syntax
        (b"MAIL", 501, "5.5.4"),
        (b"MAIL TO:<a@b.c>", 501, "5.5.4"),
        (b"MAIL FROM:a@b.c", 501, "5.5.4"),
        (b"MAIL FROM:<a@b.c", 501, "5.5.4"),
        (b"MAIL FROM:<a@b.c>SIZE=1", 501, "5.5.4"),
        (b"MAIL FROM:<a b@c.d>", 501, "5.5.4"),
        (b"MAIL FROM:<a<b@c.d>", 501, "5.5.4"),
        (b"MAIL FROM:<no-at-sign>", 553, "5.1.7"),
        (b"MAIL FROM:<a@-bad-.example>", 553, "5.1.7"),
        (b"MAIL FROM:<a..b@c.d>", 553, "5.1.7"),
        (b'MAIL FROM:<x"y z"@w.org>', 553, "5.1.7"),
        (b"RCPT TO:<>", 553, "5.1.3"),
        (b"RCPT TO:<nobody>", 553, "5.1.3"),
        (b"RCPT FROM:<a@b.c>", 501, "5.5.4"),
        # MAIL / RCPT parameters
        (b"MAIL FROM:<a@b.c> SIZE=abc", 501, "5.5.4"),
        (b"MAIL FROM:<a@b.c> SIZE=", 501, "5.5.4"),
        (b"MAIL FROM:<a@b.c> SIZE=1 SIZE=2", 501, "5.5.4"),
        (b"MAIL FROM:<a@b.c> BODY=9BIT", 501, "5.5.4"),
        (b"MAIL FROM:<a@b.c> =x", 501, "5.5.4"),
        (b"RCPT TO:<a@b.c> NOTIFY=SOMETIMES", 501, "5.5.4"),
        # no-argument commands with an argument
        (b"DATA now", 501, "5.5.4"),
        (b"RSET x", 501, "5.5.4"),
        (b"QUIT please", 501, "5.5.4"),
        (b"STARTTLS x", 501, "5.5.4"),
        # VRFY / EXPN need one
        (b"VRFY", 501, "5.5.4"),
        (b"EXPN", 501, "5.5.4"),
        # BDAT
        (b"BDAT", 501, "5.5.4"),
        (b"BDAT x", 501, "5.5.4"),
        (b"BDAT -1", 501, "5.5.4"),
        (b"BDAT 10 FIRST", 501, "5.5.4"),
        (b"BDAT 1234567890123456789", 501, "5.5.4"),
        ("BDAT \u0661\u0660".encode(), 501, "5.5.4"),  # Arabic-Indic digits are not DIGIT
        # AUTH
        (b"AUTH", 501, "5.5.4"),
        (b"AUTH PL@IN", 501, "5.5.4"),
        (b"AUTH PLAIN !!!", 501, "5.5.2"),
        (b"AUTH PLAIN AHUAcA", 501, "5.5.2"),
    ],
)
def test_parse_rejections(line: bytes, code: int, enhanced: str) -> None:
    event = parse_command(line)
    assert isinstance(event, Rejected), event
    assert event.reply.code == code
    assert str(event.reply.enhanced) == enhanced
    assert not event.close


@pytest.mark.parametrize(
    ("line", "event"),
    [
        (b"*", AuthResponse(None)),
        (b" * ", AuthResponse(None)),
        (b"=", AuthResponse(b"")),
        (b"", AuthResponse(b"")),
        (b"dXNlcg==", AuthResponse(b"user")),
    ],
)
def test_parse_auth_response(line: bytes, event: AuthResponse) -> None:
    assert parse_auth_response(line) == event


@pytest.mark.parametrize("line", [b"not base64!", b"dXNlcg", b"\xff\xfe", b"**"])
def test_parse_auth_response_rejects(line: bytes) -> None:
    event = parse_auth_response(line)
    assert isinstance(event, Rejected) and event.reply.code == 501


# --------------------------------------------------------------------------
# round trip: what the client formats, the server parses back to the same event

_atom = st.text(
    st.one_of(
        st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~"),
        st.characters(min_codepoint=0x80, exclude_categories=["Cs"]),  # RFC 6531 UTF8-non-ascii
    ),
    min_size=1, max_size=8,
)
_label = st.from_regex(r"[a-zA-Z0-9]([a-zA-Z0-9\-]{0,6}[a-zA-Z0-9])?", fullmatch=True)
_domain = st.lists(_label, min_size=1, max_size=3).map(".".join)
_dot_local = st.lists(_atom, min_size=1, max_size=3).map(".".join)
_quoted_local = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=10).map(
    lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
)
mailboxes = st.builds(lambda l, d: f"{l}@{d}", st.one_of(_dot_local, _quoted_local), _domain)

_xtext_values = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
_notify = st.one_of(
    st.none(), st.just(()),
    st.sets(st.sampled_from(["SUCCESS", "FAILURE", "DELAY"]), min_size=1).map(
        lambda s: tuple(n for n in ("SUCCESS", "FAILURE", "DELAY") if n in s)),
)
mail_options = st.builds(
    MailOptions,
    size=st.one_of(st.none(), st.integers(0, 2**63 - 1)),
    body=st.one_of(st.none(), st.sampled_from(["7BIT", "8BITMIME", "BINARYMIME"])),
    smtputf8=st.booleans(),
    ret=st.one_of(st.none(), st.sampled_from(["FULL", "HDRS"])),
    envid=st.one_of(st.none(), _xtext_values.filter(bool)),
    auth=st.one_of(st.none(), st.just("<>"), mailboxes),
    requiretls=st.booleans(),
    mt_priority=st.one_of(st.none(), st.integers(-9, 9)),
)
rcpt_options = st.builds(
    RcptOptions,
    notify=_notify,
    orcpt=st.one_of(st.none(), st.tuples(st.sampled_from(["rfc822", "RFC822", "x-local"]), _xtext_values)),
)


@given(st.one_of(st.just(""), mailboxes), mail_options)
def test_mail_round_trip(address: str, options: MailOptions) -> None:
    line = format_command(Mail(address, options))
    assert line.endswith(b"\r\n") and line.count(b"\r") == 1 and line.count(b"\n") == 1
    assert parse_command(line[:-2]) == Mail(address, options)


@given(mailboxes, rcpt_options)
def test_rcpt_round_trip(address: str, options: RcptOptions) -> None:
    line = format_command(Rcpt(address, options))
    assert parse_command(line[:-2]) == Rcpt(address, options)


@given(st.sampled_from(["PLAIN", "LOGIN", "XOAUTH2", "CRAM-MD5"]), st.one_of(st.none(), st.binary(max_size=100)))
def test_auth_round_trip(mechanism: str, initial: bytes | None) -> None:
    assert parse_command(format_command(Auth(mechanism, initial))[:-2]) == Auth(mechanism, initial)


@given(st.one_of(st.none(), st.binary(max_size=100)))
def test_auth_response_round_trip(data: bytes | None) -> None:
    assert parse_auth_response(format_command(AuthResponse(data))[:-2]) == AuthResponse(data)


@given(st.integers(0, 10**18 - 1), st.booleans())
def test_bdat_round_trip(size: int, last: bool) -> None:
    assert parse_command(format_command(Bdat(size, last))[:-2]) == Bdat(size, last)


@given(st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e), min_size=1, max_size=20))
def test_hello_round_trip(name: str) -> None:
    for cls in (Ehlo, Helo, Lhlo):
        assert parse_command(format_command(cls(name))[:-2]) == cls(name)


@given(st.binary(max_size=60))
def test_parse_never_raises(line: bytes) -> None:
    event = parse_command(line)
    if isinstance(event, Rejected):
        assert 500 <= event.reply.code < 600
