"""Where the client connects: IPv4, IPv6 (::1), a bound source address, Unix sockets.

The scripted server sees the peer address of each connection, which is how
``source_address`` binding is checked; TLS over ::1 is checked against a
certificate whose IP SAN is ::1.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest

from mailwire import SMTPClient

from helpers.aiosmtpd_server import Running
from helpers.minismtp import MiniSMTP
from helpers.scripted import ScriptedServer
from helpers.smtp_sink import free_port

Start = Callable[..., ScriptedServer]
CONTENT = b"Subject: transport\r\n\r\nbody\r\n"


def _ehlo_name(smtp: MiniSMTP) -> str:
    return smtp.commands[0].split(" ", 1)[1]


@pytest.mark.parametrize("host, literal", [("127.0.0.1", "[127.0.0.1]"), ("::1", "[IPv6:::1]")])
def test_connect_and_send(scripted: Start, host: str, literal: str) -> None:
    smtp = MiniSMTP()
    server = scripted(smtp, host=host)
    with SMTPClient(host, server.port, tls="none", timeout=2) as client:
        assert client._transport is not None
        assert client._transport.sock.family == (socket.AF_INET6 if ":" in host else socket.AF_INET)
        assert client.send(CONTENT, "s@example.org", ["r@example.net"]).ok
    assert server.peers[0].address[0] == host
    # RFC 5321 4.1.4: a qualified host name, else an address literal of our side.
    name = _ehlo_name(smtp)
    assert name == literal or ("." in name and name == socket.gethostname())
    assert smtp.transactions[0].content == CONTENT


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_source_address_is_bound(scripted: Start, host: str) -> None:
    smtp = MiniSMTP()
    server = scripted(smtp, host=host)
    port = free_port(host)
    with SMTPClient(host, server.port, tls="none", timeout=2, source_address=(host, port)) as client:
        client.noop()
    assert server.peers[0].address[:2] == (host, port)


def test_explicit_local_hostname(scripted: Start) -> None:
    smtp = MiniSMTP()
    server = scripted(smtp)
    with SMTPClient(*server.address, tls="none", timeout=2, local_hostname="client.example.org"):
        pass
    assert smtp.commands[0] == "EHLO client.example.org"


def test_starttls_over_ipv6_verifies_the_ip_address(
    aiosmtpd_factory: Callable[..., Running], server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    server = aiosmtpd_factory(host="::1", starttls=server_tls)
    with SMTPClient("::1", server.controller.port, ssl_context=client_tls, timeout=5) as client:
        assert client.is_tls
        client.send(CONTENT, "s@example.org", ["r@example.net"])
    assert len(server.handler.envelopes) == 1


def test_unix_socket(scripted: Start, short_tmp: Path) -> None:
    smtp = MiniSMTP(extensions=("PIPELINING", "CHUNKING"))
    path = str(short_tmp / "smtp.sock")
    server = scripted(smtp, unix_path=path)
    with SMTPClient(path, tls="none", timeout=2) as client:
        assert client._transport is not None and client._transport.sock.family == socket.AF_UNIX
        client.send(CONTENT, "s@example.org", ["r@example.net"])
    assert smtp.transactions[0].content == CONTENT
    assert _ehlo_name(smtp)  # some name, never an empty EHLO


def test_starttls_over_a_unix_socket_with_a_context_that_skips_the_host_name(
    scripted: Start, short_tmp: Path, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    smtp = MiniSMTP(extensions=("PIPELINING", "STARTTLS"), tls_context=server_tls)
    path = str(short_tmp / "smtp.sock")
    server = scripted(smtp, unix_path=path)
    client_tls.check_hostname = False  # a path has no host name; the chain is still verified
    with SMTPClient(path, ssl_context=client_tls, timeout=2) as client:
        assert client.is_tls
        client.send(CONTENT, "s@example.org", ["r@example.net"])
    assert smtp.tls and smtp.transactions[0].content == CONTENT


def test_tls_over_a_unix_socket_with_host_name_checks_is_a_clear_error(short_tmp: Path) -> None:
    # Refused before connecting: a path has no host name to verify a certificate against.
    with pytest.raises(ValueError, match="check_hostname=False"):
        SMTPClient(str(short_tmp / "smtp.sock"), timeout=2)


def test_connection_refused_is_immediate(closed_port: int) -> None:
    with pytest.raises(ConnectionRefusedError):
        SMTPClient("127.0.0.1", closed_port, tls="none", timeout=2)


def test_missing_unix_socket(short_tmp: Path) -> None:
    with pytest.raises(FileNotFoundError):
        SMTPClient(str(short_tmp / "absent.sock"), tls="none", timeout=2)


def test_quit_reply_and_state(scripted: Start) -> None:
    server = scripted(MiniSMTP())
    client = SMTPClient(*server.address, tls="none", timeout=2)
    assert client.connected
    reply = client.quit()
    assert reply is not None and reply.code == 221
    assert not client.connected
    assert client.quit() is None


def test_reconnect_after_close(scripted: Start) -> None:
    smtp = MiniSMTP()
    server = scripted(smtp, connections=2)
    client = SMTPClient(*server.address, tls="none", timeout=2)
    client.send(CONTENT, "s@example.org", ["r1@example.net"])
    client.close()
    assert not client.connected
    greeting = client.connect()
    assert greeting.code == 220 and client.capabilities.pipelining
    client.send(CONTENT, "s@example.org", ["r2@example.net"])
    client.quit()
    assert [t.rcpt_to for t in smtp.transactions] == [["r1@example.net"], ["r2@example.net"]]
    assert len(server.peers) == 2
