"""PROXY headers only from the proxies: any other peer is closed unread.

A PROXY header rewrites who the client is, so with ``proxy_protocol`` on the
server accepts one only from ``proxy_from`` (loopback by default; ``--proxy-
from`` on the command line); HAProxy's ``proxy-protocol.txt`` has receivers
accept the header "only from a number of known sources". A peer outside those
networks is closed before anything is read or said — no greeting, no session,
no connection slot — and logged once. Unix socket peers are local and trusted.
Real connections from 127.0.0.1 and ::1, with v1 and v2 headers built by hand.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from mailwire.server.config import ServerConfig
from mailwire.server.networks import parse_networks
from mailwire.server.proxy_protocol import trusted_proxy

from .conftest import RawClient, ServerThread
from .test_cli_serve import Raw, Serve, serve  # noqa: F401 - the fixture
from .test_server_proxy import v2_header

Factory = Callable[..., ServerThread]
HEADERS = {
    "v1": b"PROXY TCP4 192.0.2.10 198.51.100.20 56324 25\r\n",
    "v2": v2_header("192.0.2.10", "198.51.100.20", 56324, 25),
}
REFUSAL = "not a trusted PROXY protocol peer"


def refused_unread(client: RawClient, header: bytes) -> None:
    """The server closes without a byte, whatever the client sends."""
    try:
        client.send(header + b"EHLO client.test\r\n")
    except OSError:
        pass  # already closed: fine
    assert client.closed()
    assert bytes(client.received) == b""


@pytest.mark.parametrize("version", sorted(HEADERS))
def test_untrusted_peer_is_closed_unread_and_logged_once(
    server_factory: Factory, caplog: pytest.LogCaptureFixture, version: str
) -> None:
    caplog.set_level(logging.INFO, logger="mailwire")
    server = server_factory(proxy_protocol=True, proxy_from=("10.0.0.0/8",))
    for _ in range(3):
        refused_unread(server.raw(greeting=False), HEADERS[version])
    assert server.backend.sessions == []  # no session was ever made
    assert server.connections == 0  # and no slot is held
    lines = [r.getMessage() for r in caplog.records if REFUSAL in r.getMessage()]
    assert len(lines) == 3 and all("127.0.0.1" in line for line in lines), lines


@pytest.mark.parametrize("version", sorted(HEADERS))
def test_trusted_peer_is_proxied(server_factory: Factory, version: str) -> None:
    server = server_factory(proxy_protocol=True)  # the default: loopback
    client = server.raw(greeting=False)
    client.send(HEADERS[version])
    client.expect(220)
    client.ehlo()
    client.cmd("QUIT", 221)
    assert server.backend.wait_closed(1)
    assert server.backend.sessions[0].info.peer == ("192.0.2.10", 56324)


@pytest.mark.parametrize("trusted, accepted", [(("127.0.0.0/8",), False), (("::1",), True)])
def test_ipv6_peer(server_factory: Factory, trusted: tuple[str, ...], accepted: bool) -> None:
    server = server_factory(host="::1", proxy_protocol=True, proxy_from=trusted)
    client = RawClient.connect(("::1", server.port))
    if not accepted:
        refused_unread(client, HEADERS["v2"])
        return
    client.send(HEADERS["v2"])
    client.expect(220)
    client.cmd("QUIT", 221)


def test_unix_socket_peers_are_local(server_factory: Factory, short_tmp: Path) -> None:
    server = server_factory(host=None, unix_path=str(short_tmp / "s.sock"), proxy_protocol=True,
                            proxy_from=("10.0.0.0/8",))
    client = server.raw_unix(greeting=False)
    client.send(HEADERS["v1"])
    client.expect(220)
    client.cmd("QUIT", 221)


def test_trusted_proxy_rules() -> None:
    loopback = parse_networks(["127.0.0.0/8", "::1"])
    assert trusted_proxy(("127.0.0.1", 1), loopback)
    assert trusted_proxy(("::ffff:127.0.0.1", 1, 0, 0), loopback)  # IPv4 on a dual-stack socket
    assert trusted_proxy(("::1", 1, 0, 0), loopback)
    assert not trusted_proxy(("192.0.2.1", 1), loopback)
    assert not trusted_proxy(("::ffff:192.0.2.1", 1, 0, 0), loopback)
    assert not trusted_proxy(("fe80::1%lo", 1, 0, 1), loopback)
    assert trusted_proxy("/run/mailwire.sock", ()) and trusted_proxy("", ())  # Unix sockets
    assert not trusted_proxy(None, loopback)
    assert ServerConfig(hostname="mx").proxy_from == ("127.0.0.0/8", "::1/128")
    assert ServerConfig(hostname="mx", proxy_from=["10.0.0.0/8", "::1"]).proxy_from == ("10.0.0.0/8", "::1/128")
    for bad in (["10.1.2.3/8"], ["nonsense"], ["10.0.0.0/33"], "10.0.0.0/8"):
        with pytest.raises(ValueError):
            ServerConfig(hostname="mx", proxy_from=bad)  # type: ignore[arg-type]


# -- mailwire serve ------------------------------------------------------------------------------


def test_serve_proxy_from(serve: Callable[..., Serve]) -> None:
    server = serve("--port", "0", "--sink", "-q", "--proxy-protocol", "--proxy-from", "10.0.0.0/8")
    for header in HEADERS.values():
        refused_unread(RawClient.connect(("127.0.0.1", server.port)), header)
    assert server.stop() == 0
    lines = [line for line in server.stderr.splitlines() if REFUSAL in line]
    assert len(lines) == 2 and all("127.0.0.1" in line for line in lines), server.stderr


def test_serve_proxy_from_several_networks(serve: Callable[..., Serve]) -> None:
    server = serve("--port", "0", "--sink", "-q", "--proxy-protocol", "--proxy-from", "10.0.0.0/8", "127.0.0.1")
    for header in HEADERS.values():
        raw = Raw(server.port, prefix=header)
        try:
            assert raw.reply()[0] == 220
            assert raw.cmd(b"QUIT")[0] == 221
        finally:
            raw.close()
    assert server.stop() == 0
    assert server.stderr == ""


@pytest.mark.parametrize("args, words", [
    (["--proxy-protocol", "--proxy-from", "10.0.0.0/33"], "argument --proxy-from: expected a network"),
    (["--proxy-protocol", "--proxy-from", "10.1.2.3/8"], "argument --proxy-from: expected a network"),
    (["--proxy-protocol", "--proxy-from", "localhost"], "argument --proxy-from: expected a network"),
    (["--proxy-protocol", "--proxy-from"], "argument --proxy-from: expected at least one argument"),
    (["--proxy-from", "10.0.0.0/8"], "--proxy-from needs --proxy-protocol"),
])
def test_serve_bad_proxy_from_one_line_exit_2(serve: Callable[..., Serve], args: list[str], words: str) -> None:
    server = serve("--port", "0", "--sink", *args, wait=False)
    assert server.wait() == 2
    lines = server.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mailwire") and words in lines[0], lines
