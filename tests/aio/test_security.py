"""The asyncio client keeps the blocking client's security promises.

* Bytes a server sends after its 220 to STARTTLS are discarded, never parsed
  as the answer to the EHLO that follows the handshake.
* CR, LF and other control characters in anything put on a command line
  (addresses, the EHLO name, VRFY, ESMTP parameters) are refused with
  ``LocalProtocolError`` before a byte is written, and the session goes on.
* A reply line over the limit, or a reply that never ends, is a
  ``RemoteProtocolError`` at once — never a hang, never unbounded memory.

The scripted servers (threads, ``tests/helpers/scripted.py``) record every
byte they received, which is how "nothing was written" is checked.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable

import pytest

from mailwire import (
    AsyncSMTPClient, ConnectionClosed, LocalProtocolError, MailOptions, RcptOptions,
    RemoteProtocolError,
)

from helpers.minismtp import MiniSMTP
from helpers.scripted import Peer, ScriptedServer

from .support import run

Start = Callable[..., ScriptedServer]
PAYLOAD = "RCPT TO:<evil@attacker.example>"
EXTENSIONS = ("PIPELINING", "8BITMIME", "DSN", "SMTPUTF8")
pytestmark = pytest.mark.timeout(20)


def _greeted(peer: Peer, *keywords: str) -> None:
    peer.reply("220 hostile ESMTP")
    assert peer.recv_line().startswith(b"EHLO ")
    lines = ["hostile", *keywords]
    peer.reply(*(f"250{'-' if i < len(lines) - 1 else ' '}{k}" for i, k in enumerate(lines)))


def _send_quietly(peer: Peer, data: bytes) -> None:
    try:
        peer.send(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


# -- STARTTLS injection ----------------------------------------------------------------


def _tls_script(tls: ssl.SSLContext, injected: bytes, separate: bool) -> Callable[[Peer], None]:
    def script(peer: Peer) -> None:
        _greeted(peer, "PIPELINING", "STARTTLS")
        assert peer.recv_line() == b"STARTTLS\r\n"
        if separate:
            peer.send(b"220 2.0.0 go\r\n")
            time.sleep(0.1)
            peer.send(injected)
        else:
            peer.send(b"220 2.0.0 go\r\n" + injected)  # one segment
        try:
            peer.starttls(tls)
        except (ssl.SSLError, OSError):
            return  # the injected bytes broke the handshake: also safe
        if not peer.recv_line().startswith(b"EHLO "):
            return
        peer.reply("250-real-after-tls", "250 PIPELINING")
        while (line := peer.recv_line()) not in (b"", b"QUIT\r\n"):
            peer.reply("250 2.0.0 ok")
        if line:
            peer.reply("221 bye")

    return script


@pytest.mark.parametrize("separate", [False, True], ids=["same-segment", "separate-segment"])
def test_bytes_after_starttls_220_are_discarded(
    scripted: Start, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture, separate: bool,
) -> None:
    injected = b"250-injected\r\n250 AUTH PLAIN\r\n"
    server = scripted(_tls_script(server_tls, injected, separate), strict=False)
    caplog.set_level(logging.WARNING, logger="mailwire.client")

    async def main() -> None:
        client = AsyncSMTPClient(*server.address, ssl_context=client_tls, timeout=2)
        try:
            await client.connect()
        except (ssl.SSLError, ConnectionError) as err:
            # The injected bytes reached the handshake and broke it: safe too.
            assert not isinstance(err, RemoteProtocolError) and not client.connected
            return
        assert client.is_tls
        assert client._transport is not None
        assert client._transport.core.discarded_after_starttls == len(injected)
        assert f"discarded {len(injected)} bytes" in caplog.text
        assert client.capabilities.greeting == "real-after-tls"
        assert not client.capabilities.auth_mechanisms
        assert (await client.noop()).text == "ok"  # later replies pair with their commands
        await client.quit()

    run(main())
    if not separate:
        # In one segment the bytes are always read before the handshake: discarded.
        assert "discarded" in caplog.text


# -- CR, LF and control characters in arguments ------------------------------------------

BAD_ADDRESSES = [
    f"a@example.org\r\n{PAYLOAD}", f"a@example.org\n{PAYLOAD}", f"a@example.org\r{PAYLOAD}",
    "a@exa\x00mple.org", "a@exa\x7fmple.org", "a@example.org> NOTIFY=NEVER",
]


def _check_refused_and_usable(scripted: Start, attempt: Callable[[AsyncSMTPClient], object]) -> None:
    """``attempt(client)`` must raise LocalProtocolError with nothing written."""
    smtp = MiniSMTP(extensions=EXTENSIONS)
    server = scripted(smtp)

    async def main() -> None:
        async with AsyncSMTPClient(*server.address, tls="none", timeout=2) as client:
            with pytest.raises(LocalProtocolError):
                await attempt(client)  # type: ignore[misc]
            assert client.connected
            assert (await client.noop()).code == 250  # still in step
            ok = await client.send(b"fine\r\n", "s@example.org", ["r@example.net"])
            assert ok.ok

    run(main())
    server.close()
    assert [c.split(" ")[0] for c in smtp.commands] == ["EHLO", "NOOP", "MAIL", "RCPT", "DATA", "QUIT"]
    assert b"evil" not in server.received and b"\x00" not in server.received and b"\x7f" not in server.received
    assert [t.content for t in smtp.transactions] == [b"fine\r\n"]


@pytest.mark.parametrize("address", BAD_ADDRESSES)
def test_bad_sender(scripted: Start, address: str) -> None:
    _check_refused_and_usable(scripted, lambda c: c.send(b"x\r\n", address, ["r@example.net"]))


@pytest.mark.parametrize("address", BAD_ADDRESSES)
def test_bad_recipient(scripted: Start, address: str) -> None:
    _check_refused_and_usable(scripted, lambda c: c.send(b"x\r\n", "s@example.org", ["ok@example.net", address]))


@pytest.mark.parametrize("address", BAD_ADDRESSES[:3])
def test_bad_address_in_send_many(scripted: Start, address: str) -> None:
    # One bad item refuses the whole batch before any of it is written.
    _check_refused_and_usable(scripted, lambda c: c.send_many([
        (b"x\r\n", "s@example.org", ["r@example.net"]), (b"y\r\n", address, ["r@example.net"]),
    ]))


@pytest.mark.parametrize("argument", ["a\r\nRSET", "a\nb", "a\x00b"])
def test_bad_vrfy_argument(scripted: Start, argument: str) -> None:
    _check_refused_and_usable(scripted, lambda c: c.verify(argument))


@pytest.mark.parametrize("options", [
    MailOptions(extra=(("X-TAG", f"v\r\n{PAYLOAD}"),)),
    MailOptions(extra=(("X-\nTAG", None),)),
], ids=["extra-value", "extra-keyword"])
def test_bad_mail_options(scripted: Start, options: MailOptions) -> None:
    _check_refused_and_usable(
        scripted, lambda c: c.send(b"x\r\n", "s@example.org", ["r@example.net"], mail_options=options)
    )


@pytest.mark.parametrize("options", [
    RcptOptions(extra=(("X-TAG", f"v\r\n{PAYLOAD}"),)),
    RcptOptions(extra=(("X-TAG", "v\x00"),)),
    RcptOptions(notify=(f"SUCCESS\r\n{PAYLOAD}",)),  # type: ignore[arg-type]
], ids=["extra-value-crlf", "extra-value-nul", "notify"])
def test_bad_rcpt_options(scripted: Start, options: RcptOptions) -> None:
    _check_refused_and_usable(
        scripted, lambda c: c.send(b"x\r\n", "s@example.org", ["r@example.net"], rcpt_options=options)
    )


@pytest.mark.parametrize("name", ["host\r\nMAIL FROM:<evil@attacker.example>", "host\nx", "ho\x00st"])
def test_bad_ehlo_name(scripted: Start, name: str) -> None:
    server = scripted(MiniSMTP(), strict=False)

    async def main() -> None:
        client = AsyncSMTPClient(*server.address, tls="none", timeout=2, local_hostname=name)
        with pytest.raises(LocalProtocolError, match="EHLO name"):
            await client.connect()
        assert not client.connected

    run(main())
    server.close()
    assert server.received == b""  # not even part of the EHLO line


# -- reply size caps ---------------------------------------------------------------------


def _expect_remote_error(scripted: Start, script: Callable[[Peer], None], match: str) -> None:
    server = scripted(script, strict=False)

    async def main() -> None:
        client = AsyncSMTPClient(*server.address, tls="none", timeout=2)
        started = time.monotonic()
        with pytest.raises(RemoteProtocolError, match=match):
            await client.connect()
        assert time.monotonic() - started < 2  # refused at the limit, not at a timeout
        assert not client.connected

    run(main())


@pytest.mark.parametrize("where", ["greeting", "ehlo"])
def test_8k_reply_line(scripted: Start, where: str) -> None:
    def script(peer: Peer) -> None:
        if where == "ehlo":
            peer.reply("220 hostile ESMTP")
            peer.recv_line()
        _send_quietly(peer, b"250 " + b"x" * 8192 + b"\r\n")
        peer.wait_closed()

    _expect_remote_error(scripted, script, "reply line longer than 2048 octets")


def test_8k_line_without_line_end(scripted: Start) -> None:
    def script(peer: Peer) -> None:
        _send_quietly(peer, b"220 " + b"x" * 8192)  # and never a CRLF
        peer.wait_closed()

    _expect_remote_error(scripted, script, "longer than 2048 octets")


def test_endless_continuation_lines(scripted: Start) -> None:
    def script(peer: Peer) -> None:
        peer.reply("220 hostile ESMTP")
        peer.recv_line()
        line = b"250-" + b"k" * 60 + b"\r\n"
        for _ in range(10_000):  # 10 MB at most: the client gives up after 64 KiB
            try:
                peer.send(line * 16)
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                return

    _expect_remote_error(scripted, script, "reply longer than 65536 octets")


def test_endless_reply_mid_session(scripted: Start) -> None:
    def script(peer: Peer) -> None:
        _greeted(peer, "PIPELINING")
        peer.recv_line()  # NOOP
        for _ in range(10_000):
            try:
                peer.send(b"250-" + b"z" * 1000 + b"\r\n")
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                return

    server = scripted(script, strict=False)

    async def main() -> None:
        client = AsyncSMTPClient(*server.address, tls="none", timeout=2, auto_reconnect=False)
        await client.connect()
        with pytest.raises(RemoteProtocolError, match="reply longer than 65536 octets"):
            await client.noop()
        assert not client.connected
        with pytest.raises(ConnectionClosed):
            await client.noop()

    run(main())


@pytest.mark.parametrize("garbage", [b"abc hello", b"999 x", b"2500 x", b"-250 x"])
def test_garbage_reply(scripted: Start, garbage: bytes) -> None:
    def script(peer: Peer) -> None:
        _send_quietly(peer, garbage + b"\r\n")
        peer.wait_closed()

    _expect_remote_error(scripted, script, "malformed reply line")
