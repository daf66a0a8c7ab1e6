"""EHLO capabilities: parsed exactly as CPython's smtplib.SMTP.ehlo parses them."""

from __future__ import annotations

import io
import smtplib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailwire.protocol.capabilities import Capabilities, format_ehlo_reply
from mailwire.protocol.client import ClientConnection
from mailwire.protocol.events import NEED_DATA, Ehlo
from mailwire.reply import Reply


def ehlo_wire(lines: list[str]) -> bytes:
    return b"".join(
        b"250%s%s\r\n" % (b" " if i == len(lines) - 1 else b"-", line.encode("latin-1"))
        for i, line in enumerate(lines)
    )


def ours(wire: bytes) -> Capabilities:
    """Parse through the real client, the way a driver would get them."""
    client = ClientConnection()
    client.receive_data(b"220 mx\r\n")
    client.next_event()
    client.send(Ehlo("client.example"))
    client.receive_data(wire)
    reply = client.next_event()
    assert isinstance(reply, Reply) and reply.code == 250
    assert client.next_event() is NEED_DATA
    assert client.capabilities is not None
    return client.capabilities


def stdlib(wire: bytes) -> dict[str, str]:
    """CPython's own parse of the same bytes: a real smtplib.SMTP, no socket.

    No host means no connection; ``putcmd`` is silenced and the reply is read
    by smtplib's own ``getreply`` from an in-memory file.
    """
    smtp = smtplib.SMTP(local_hostname="client.example")
    smtp.putcmd = lambda cmd, args="": None  # type: ignore[method-assign]
    smtp.file = io.BytesIO(wire)
    code, _ = smtp.ehlo()
    assert code == 250
    return smtp.esmtp_features


POSTFIX = [
    "mx.example.com",
    "PIPELINING",
    "SIZE 10240000",
    "VRFY",
    "ETRN",
    "STARTTLS",
    "AUTH PLAIN LOGIN",
    "AUTH=PLAIN LOGIN",
    "ENHANCEDSTATUSCODES",
    "8BITMIME",
    "DSN",
    "SMTPUTF8",
    "CHUNKING",
]


@pytest.mark.parametrize(
    ("lines", "features"),
    [
        (POSTFIX, {
            "pipelining": "", "size": "10240000", "vrfy": "", "etrn": "", "starttls": "",
            "auth": " PLAIN LOGIN PLAIN LOGIN", "enhancedstatuscodes": "", "8bitmime": "",
            "dsn": "", "smtputf8": "", "chunking": "",
        }),
        (["mx"], {}),
        (["mx", "size"], {"size": ""}),
        (["mx", "Size 100"], {"size": "100"}),
        (["mx", "X-Custom Param With Case"], {"x-custom": "Param With Case"}),
        (["mx", "AUTH=LOGIN"], {"auth": " LOGIN"}),
        (["mx", "auth=cram-md5 plain"], {"auth": " cram-md5 plain"}),
        (["mx", "AUTH LOGIN", "AUTH=PLAIN"], {"auth": " LOGIN PLAIN"}),
        (["mx", "AUTH"], {"auth": " "}),
        (["mx", "SIZE 1", "SIZE 2"], {"size": "2"}),
        (["mx", "-bad", "_bad", "", "GOOD"], {"good": ""}),
        (["mx", "XFOO=bar"], {"xfoo": "=bar"}),
        (["mx", "SIZE   100   "], {"size": "100"}),
        (["mx", "  PIPELINING"], {"pipelining": ""}),
        (["mx", "AUTH=LOGIN   "], {"auth": " LOGIN"}),
        (["mx", "AUTH  PLAIN\t"], {"auth": " PLAIN"}),
    ],
)
def test_ehlo_table_matches_smtplib(lines: list[str], features: dict[str, str]) -> None:
    wire = ehlo_wire(lines)
    caps = ours(wire)
    assert caps.features == features
    assert stdlib(wire) == features
    assert caps.greeting == lines[0]


_line = st.builds(
    lambda lead, key, sep, params, trail: lead + key + sep + params + trail,
    st.sampled_from(["", "", "", " ", "\t"]),
    st.sampled_from(["AUTH", "auth", "Auth", "AUTH=", "auth=", "SIZE", "PIPELINING", "X-Y", "8BITMIME",
                     "-X", "_x", "", "DSN"]),
    st.sampled_from(["", " ", "  ", "\t"]),
    st.text("ABCxyz019-= ", max_size=12),
    st.sampled_from(["", " ", "\t", " \t "]),
)


@given(st.lists(_line, max_size=8))
def test_ehlo_parse_matches_smtplib(lines: list[str]) -> None:
    wire = ehlo_wire(["mx.example.com", *lines])
    assert ours(wire).features == stdlib(wire)


def test_keywords_fold_case_and_parameters_keep_it() -> None:
    caps = Capabilities.from_reply(Reply(250, ("mx", "StartTLS", "X-Thing Foo BAR", "auth Plain xoauth2")))
    assert caps.has("STARTTLS") and caps.has("starttls") and caps.starttls
    assert caps.params("x-thing") == ["Foo", "BAR"]
    assert caps.auth_mechanisms == {"PLAIN", "XOAUTH2"}


@pytest.mark.parametrize(
    ("lines", "size"),
    [
        (["mx"], None),
        (["mx", "SIZE"], 0),
        (["mx", "SIZE 0"], 0),
        (["mx", "SIZE 35882577"], 35882577),
        (["mx", "SIZE lots"], 0),
        # Regression: "\u00b2".isdigit() is True but int() refuses it; a
        # hostile server could crash the client with ValueError.
        (["mx", "SIZE \u00b2"], 0),
        (["mx", "SIZE \u0661\u0662"], 0),
    ],
)
def test_max_size(lines: list[str], size: int | None) -> None:
    assert Capabilities.from_reply(Reply(250, tuple(lines))).max_size == size


@pytest.mark.parametrize(
    "lines, size, refused",
    [
        (["mx"], 10**9, False),  # no SIZE: nothing is known, nothing refused
        (["mx", "SIZE 0"], 10**9, False),  # RFC 1870: 0 is no fixed maximum
        (["mx", "SIZE 1000"], 1000, False),  # the maximum itself fits
        (["mx", "SIZE 1000"], 1001, True),
    ],
)
def test_size_refusal(lines: list[str], size: int, refused: bool) -> None:
    refusal = Capabilities.from_reply(Reply(250, tuple(lines))).size_refusal(size)
    if not refused:
        assert refusal is None
    else:
        assert refusal is not None
        assert (refusal.code, str(refusal.enhanced)) == (552, "5.3.4")
        assert f"{size} octets" in refusal.text and "limit of 1000" in refusal.text


def test_flags() -> None:
    caps = Capabilities.from_reply(Reply(250, tuple(POSTFIX)))
    assert caps.pipelining and caps.chunking and caps.starttls and caps.smtputf8
    assert caps.eightbitmime and caps.dsn and caps.enhanced_status_codes
    assert not caps.binarymime and not caps.requiretls
    assert caps.auth_mechanisms == {"PLAIN", "LOGIN"}
    bare = Capabilities.from_reply(Reply(250, ("mx",)))
    assert not (bare.pipelining or bare.chunking or bare.starttls or bare.smtputf8 or bare.eightbitmime
                or bare.binarymime or bare.dsn or bare.enhanced_status_codes or bare.requiretls)
    assert bare.auth_mechanisms == frozenset()
    assert bare.params("size") == []


def test_format_ehlo_reply_parses_back() -> None:
    reply = format_ehlo_reply("mx.example.com Hello", ["PIPELINING", "SIZE 1000", "AUTH PLAIN LOGIN"])
    assert reply.to_bytes() == (
        b"250-mx.example.com Hello\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 AUTH PLAIN LOGIN\r\n"
    )
    caps = ours(reply.to_bytes())
    assert caps.greeting == "mx.example.com Hello"
    assert caps.features == {"pipelining": "", "size": "1000", "auth": " PLAIN LOGIN"}
    assert caps.features == stdlib(reply.to_bytes())
    assert format_ehlo_reply("mx", []).to_bytes() == b"250 mx\r\n"
