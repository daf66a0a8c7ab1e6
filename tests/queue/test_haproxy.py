"""The HAProxy recipe (docs/haproxy.md) in front of two real ``mailwire serve`` processes.

HAProxy (Debian's, with the config ``tests/helpers/haproxy.py`` writes, the
recipe's) listens on 127.0.0.1 and connects to the front ends from
127.0.0.2 with a PROXY v2 header; the front ends run ``--proxy-protocol
--proxy-from 127.0.0.2/32``; the test's clients connect to HAProxy from
127.0.0.3 and 127.0.0.4. What a user of the recipe needs to hold:

- connections are spread over both front ends;
- each front end sees the real client, not HAProxy: ``--print`` shows
  each message with ``X-Peer: <client address>``, and every message's is
  the address its client bound;
- PROXY is believed only from HAProxy's address: a direct connection from
  127.0.0.1 that sends a PROXY header is dropped unread, while the same
  header from 127.0.0.2 is taken;
- a front end that dies costs nothing: HAProxy sends every later
  connection to the other (at once, by ``option redispatch`` on the failed
  connect, before its health check has marked it down).
"""

from __future__ import annotations

import re
import smtplib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.haproxy import HAPROXY, PROXY_SOURCE, Backend, HAProxy
from helpers.processes import MailwireProcess, free_ports

pytestmark = pytest.mark.skipif(not Path(HAPROXY).exists(),
                                reason="haproxy is not installed (dev/bootstrap.sh installs it)")

CLIENTS = ("127.0.0.3", "127.0.0.4")


class Fronts:
    def __init__(self, tmp_path: Path, store: str) -> None:
        self.processes = []
        self.maildirs = []
        ports = free_ports(3)
        self.proxy_port = ports.pop()
        for number in (1, 2):
            port = ports.pop()
            maildir = tmp_path / f"mail{number}"
            what = ["--print"] if store == "print" else ["--maildir", str(maildir)]
            self.processes.append(MailwireProcess(
                f"front{number}",
                ["serve", "--no-web", "--port", str(port), *what, "--proxy-protocol", "--proxy-from",
                 f"{PROXY_SOURCE}/32"],
                tmp_path, ready="listening on"))
            self.maildirs.append(maildir)
        self.ports = [int(p.args[p.args.index("--port") + 1]) for p in self.processes]

    def stored(self, number: int) -> list[bytes]:
        new = self.maildirs[number] / "new"
        return [path.read_bytes() for path in new.iterdir()] if new.is_dir() else []


def _cluster(tmp_path: Path, store: str) -> Iterator[tuple[Fronts, HAProxy]]:
    fronts = Fronts(tmp_path, store)
    proxy = HAProxy(tmp_path, [Backend("127.0.0.1", port) for port in fronts.ports], inter="500ms",
                    port=fronts.proxy_port)
    try:
        for process in fronts.processes:
            process.start()
        proxy.start()
        proxy.wait_servers(up=2)
        yield fronts, proxy
    finally:
        proxy.stop()
        for process in fronts.processes:
            process.stop()


@pytest.fixture
def maildir_cluster(tmp_path: Path) -> Iterator[tuple[Fronts, HAProxy]]:
    yield from _cluster(tmp_path, "maildir")


@pytest.fixture
def printing_cluster(tmp_path: Path) -> Iterator[tuple[Fronts, HAProxy]]:
    yield from _cluster(tmp_path, "print")


def send(address: tuple[str, int], client: str, number: int) -> None:
    with smtplib.SMTP(*address, source_address=(client, 0), timeout=10) as smtp:
        smtp.sendmail("alice@example.org", ["bob@example.net"],
                      f"Subject: message {number}\r\nMessage-ID: <{number}@test>\r\n\r\nbody {number}\r\n".encode())


def test_connections_are_spread_over_both_front_ends(maildir_cluster: tuple[Fronts, HAProxy]) -> None:
    fronts, proxy = maildir_cluster
    for number in range(20):
        send(proxy.address, CLIENTS[number % 2], number)
    stored = [fronts.stored(0), fronts.stored(1)]
    assert len(stored[0]) + len(stored[1]) == 20
    assert stored[0] and stored[1], [len(s) for s in stored]
    sessions = {name: state.sessions for name, state in proxy.servers().items()}
    assert sessions["front1"] >= 1 and sessions["front2"] >= 1, sessions


def test_each_front_end_sees_the_real_client_address(printing_cluster: tuple[Fronts, HAProxy]) -> None:
    fronts, proxy = printing_cluster
    sent = {number: CLIENTS[number % 2] for number in range(12)}
    for number, client in sent.items():
        send(proxy.address, client, number)
    # --print writes each message whole with X-Peer before its body: pair them.
    seen: dict[int, str] = {}
    for process in fronts.processes:
        text = process.stdout_path.read_text()
        for peer, number in re.findall(r"X-Peer: (\S+)\n\nbody (\d+)", text):
            seen[int(number)] = peer
    assert seen == sent
    assert all(process.stdout_path.read_text().count("X-Peer:") for process in fronts.processes)


PROXY_V1 = b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 25\r\n"


def _greeting_after_proxy_header(source: str, port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0)) as sock:
        sock.sendall(PROXY_V1)
        chunks = b""
        while not chunks.endswith(b"\r\n"):
            try:
                chunk = sock.recv(1024)
            except ConnectionResetError:  # closed with our header unread: a reset, not a FIN
                break
            if not chunk:
                break
            chunks += chunk
        return chunks


def test_proxy_header_is_believed_only_from_haproxys_address(maildir_cluster: tuple[Fronts, HAProxy]) -> None:
    fronts, _proxy = maildir_cluster
    port = fronts.ports[0]
    assert _greeting_after_proxy_header("127.0.0.1", port) == b""  # dropped unread, no greeting
    assert _greeting_after_proxy_header("127.0.0.3", port) == b""
    assert _greeting_after_proxy_header(PROXY_SOURCE, port).startswith(b"220 ")


def test_a_dead_front_end_sends_every_connection_to_the_other(maildir_cluster: tuple[Fronts, HAProxy]) -> None:
    fronts, proxy = maildir_cluster
    fronts.processes[0].kill()
    # At once, before the health checks notice: the failed connect is redispatched.
    for number in range(10):
        send(proxy.address, CLIENTS[number % 2], number)
    assert len(fronts.stored(1)) == 10 and not fronts.stored(0)
    states = proxy.wait_servers(up=1)
    assert states["front1"].status == "DOWN" and states["front2"].up
    for number in range(10, 14):
        send(proxy.address, CLIENTS[0], number)
    assert len(fronts.stored(1)) == 14
    fronts.processes[0].start()  # back: the checks bring it into the rotation again
    proxy.wait_servers(up=2)
