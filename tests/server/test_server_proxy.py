"""The PROXY protocol (HAProxy v1 and v2) in front of the server, over real sockets.

With ``proxy_protocol=True`` the server reads one header before it says
anything; the backend's ``SessionInfo.peer`` is then the client the header
names (the proxy's own address kept in ``info.proxy.proxy``). A connection
without a valid header is closed without a greeting and without a session;
one whose header never completes is closed after ``proxy_header_timeout``.
Headers are built here by hand, not by the module under test.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import time
from collections.abc import Callable

import pytest

from mailwire.limits import Limits

from .conftest import RawClient, ServerThread

Factory = Callable[..., ServerThread]
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v2_header(src: str, dst: str, sport: int, dport: int, *, command: int = 1, tlvs: bytes = b"") -> bytes:
    a, b = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    family = 0x11 if a.version == 4 else 0x21  # AF_INET/AF_INET6, STREAM
    block = a.packed + b.packed + struct.pack("!HH", sport, dport) + tlvs
    return V2_SIGNATURE + struct.pack("!BBH", 0x20 | command, family, len(block)) + block


def v2_local() -> bytes:
    return V2_SIGNATURE + struct.pack("!BBH", 0x20, 0x00, 0)


@pytest.fixture
def proxied(server_factory: Factory) -> ServerThread:
    return server_factory(proxy_protocol=True, limits=Limits().with_(proxy_header_timeout=0.5))


def send_header(client: RawClient, header: bytes, together: bool) -> None:
    """The header alone (as a proxy sends it) or with the first SMTP command."""
    if together:
        client.send(header + b"EHLO client.test\r\n")
        client.expect(220)
        client.expect(250)
    else:
        client.send(header)
        client.expect(220)
        client.ehlo()


def deliver_one(client: RawClient, header: bytes, together: bool) -> None:
    send_header(client, header, together)
    client.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
    client.expect(250)
    client.expect(250)
    client.expect(354)
    client.send(b"proxied\r\n.\r\nQUIT\r\n")
    client.expect(250)
    client.expect(221)


# A proxy sends its header alone, before the client's first byte (regression:
# the empty rest after such a header once read as the client closing).
TOGETHER = pytest.mark.parametrize("together", [True, False], ids=["with-ehlo", "alone"])


HEADERS = {
    "v1-tcp4": (b"PROXY TCP4 192.0.2.10 198.51.100.20 56324 25\r\n", ("192.0.2.10", 56324), 1),
    "v1-tcp6": (b"PROXY TCP6 2001:db8::1 2001:db8::2 40000 587\r\n", ("2001:db8::1", 40000), 1),
    "v2-inet": (v2_header("203.0.113.7", "198.51.100.1", 61000, 25), ("203.0.113.7", 61000), 2),
    "v2-inet6": (v2_header("2001:db8::7", "2001:db8::25", 1234, 25), ("2001:db8::7", 1234), 2),
    "v2-tlv": (v2_header("203.0.113.8", "198.51.100.1", 4242, 25, tlvs=b"\x04\x00\x03abc"),
               ("203.0.113.8", 4242), 2),
}


@TOGETHER
@pytest.mark.parametrize("name", list(HEADERS))
def test_peer_is_the_address_from_the_header(proxied: ServerThread, name: str, together: bool) -> None:
    header, source, version = HEADERS[name]
    client = proxied.raw(greeting=False)
    assert client.nothing_more(0.05) == b"", "greeted before the PROXY header"
    deliver_one(client, header, together)
    assert proxied.backend.wait_messages(1)
    info = proxied.backend.messages[0].session
    assert info is not None and info.peer == source
    assert info.proxy is not None and info.proxy.version == version and info.proxy.source == source
    real = info.proxy.proxy
    assert isinstance(real, tuple) and real[0] == "127.0.0.1"  # the TCP peer we really talked to
    assert proxied.backend.sessions[0].info.peer == source


def test_header_and_pipelined_smtp_in_one_segment(proxied: ServerThread) -> None:
    client = proxied.raw(greeting=False)
    client.send(b"PROXY TCP4 192.0.2.10 198.51.100.20 1111 25\r\nEHLO client.test\r\nNOOP\r\n")
    client.expect(220)
    client.expect(250)
    client.expect(250)
    assert proxied.backend.sessions[0].info.peer == ("192.0.2.10", 1111)


@TOGETHER
def test_header_one_octet_at_a_time(proxied: ServerThread, together: bool) -> None:
    client = proxied.raw(greeting=False)
    client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    header = v2_header("203.0.113.9", "198.51.100.1", 999, 25)
    for octet in header[:-1]:
        client.send(bytes([octet]))
        time.sleep(0.001)
    deliver_one(client, header[-1:], together)
    assert proxied.backend.messages[0].session.peer == ("203.0.113.9", 999)  # type: ignore[union-attr]


@TOGETHER
@pytest.mark.parametrize("header", [b"PROXY UNKNOWN\r\n", v2_local()], ids=["v1-unknown", "v2-local"])
def test_header_without_addresses_keeps_the_real_peer(proxied: ServerThread, header: bytes, together: bool) -> None:
    client = proxied.raw(greeting=False)
    deliver_one(client, header, together)
    peer = proxied.backend.messages[0].session.peer  # type: ignore[union-attr]
    assert isinstance(peer, tuple) and peer[0] == "127.0.0.1"


@pytest.mark.parametrize("garbage", [
    b"EHLO client.test\r\n",  # no header at all: plain SMTP
    b"PROXY TCP4 999.0.0.1 198.51.100.20 1 25\r\n",
    b"PROXY TCP4 192.0.2.1 198.51.100.20 70000 25\r\n",
    b"PROXY SCTP 192.0.2.1 198.51.100.20 1 25\r\n",
    b"PROXY TCP4 192.0.2.1 198.51.100.20 1 25\n",
    b"PROXY " + b"A" * 200 + b"\r\n",
    V2_SIGNATURE + b"\x30\x11\x00\x0c" + b"\x00" * 12,  # version 3
    V2_SIGNATURE + b"\x21\x12\x00\x0c" + b"\x00" * 12,  # datagram
    V2_SIGNATURE + b"\x21\x11\xff\xff",  # length beyond any use
    bytes(range(256)),
], ids=lambda g: repr(g[:24]))
def test_missing_or_garbage_header_closes_without_a_greeting(proxied: ServerThread, garbage: bytes) -> None:
    client = proxied.raw(greeting=False)
    client.send(garbage)
    started = time.monotonic()
    assert client.closed(3.0)
    assert time.monotonic() - started < 0.45, "closed by the timeout, not for the garbage"
    assert bytes(client.received) == b"", "something was said to a client without a valid header"
    assert proxied.backend.sessions == []
    send_header(proxied.raw(greeting=False), HEADERS["v1-tcp4"][0], True)  # the server goes on


@pytest.mark.parametrize("partial", [b"", b"PROXY TCP4 192.0.2.1 ", V2_SIGNATURE[:7]], ids=repr)
def test_header_that_never_comes_times_out(proxied: ServerThread, partial: bytes) -> None:
    client = proxied.raw(greeting=False)
    client.send(partial)
    started = time.monotonic()
    assert client.closed(3.0)
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 2.0, f"closed after {elapsed:.2f} s (timeout 0.5 s)"
    assert bytes(client.received) == b""
    assert proxied.backend.sessions == []


def test_without_proxy_protocol_a_header_is_just_a_bad_command(recording_server: ServerThread) -> None:
    client = recording_server.raw()
    client.cmd("PROXY TCP4 192.0.2.10 198.51.100.20 56324 25", 500)
    client.ehlo()
    assert recording_server.backend.sessions[0].info.peer[0] == "127.0.0.1"  # type: ignore[index]


@TOGETHER
def test_proxy_over_ipv6_loopback(server_factory: Factory, together: bool) -> None:
    server = server_factory(host="::1", proxy_protocol=True)
    client = RawClient.connect(("::1", server.port))
    deliver_one(client, HEADERS["v1-tcp4"][0], together)
    info = server.backend.messages[0].session
    assert info is not None and info.peer == ("192.0.2.10", 56324)
    assert info.proxy is not None and isinstance(info.proxy.proxy, tuple) and info.proxy.proxy[0] == "::1"
