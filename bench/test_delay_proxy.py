"""Functional checks of the delay proxy: bytes arrive intact and in order, end of stream and resets
propagate, and the turn counter tells waiting from streaming. Run with
``.venv/bin/python -m pytest bench``. Nothing here asserts on durations: the delay is made large
(20 ms) only so that the turn counter's quiet-gap rule is unambiguous on a loaded machine.
"""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest
from delay_proxy import DelayProxy, ProxyProcess

DELAY = 0.02


class _Echo(socketserver.BaseRequestHandler):
    """Echo until end of stream, then half-close: exercises both directions and EOF."""

    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)
        self.request.shutdown(socket.SHUT_WR)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture
def echo() -> Iterator[int]:
    server = _Server(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(echo: int) -> Iterator[DelayProxy]:
    delay_proxy = DelayProxy("127.0.0.1", echo, delay=DELAY)
    delay_proxy.start()
    yield delay_proxy
    delay_proxy.stop()


def _recv_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_bytes_arrive_intact_and_in_order_with_half_close(proxy: DelayProxy) -> None:
    payload = bytes(range(256)) * 8000  # 2 MB, many chunks in flight at once
    with socket.create_connection(("127.0.0.1", proxy.port)) as sock:

        def send() -> None:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        echoed = _recv_all(sock)  # returns only once the server's half-close came back
        sender.join()
    assert echoed == payload
    stats = proxy.stats()
    assert stats.bytes_up == stats.bytes_down == len(payload)


def test_unreachable_upstream_closes_the_client() -> None:
    unreachable = DelayProxy("127.0.0.1", 1, delay=DELAY)
    port = unreachable.start()
    try:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.settimeout(10)
            try:
                assert sock.recv(1) == b""
            except ConnectionResetError:
                pass
    finally:
        unreachable.stop()


def test_client_reset_closes_the_upstream_side(proxy: DelayProxy) -> None:
    sock = socket.create_connection(("127.0.0.1", proxy.port))
    sock.sendall(b"hello")
    assert sock.recv(5) == b"hello"
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()  # linger 0: RST
    with socket.create_connection(("127.0.0.1", proxy.port)) as other:  # the proxy still serves
        other.sendall(b"again")
        assert other.recv(5) == b"again"


def test_turns_count_waits_not_pipelined_writes(proxy: DelayProxy) -> None:
    with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
        before = proxy.stats().turns
        for _ in range(3):  # lock-step: each ping after the first follows a reply, 2 turns
            sock.sendall(b"ping\r\n")
            assert sock.recv(6) == b"ping\r\n"
        for _ in range(5):  # a turn, then four writes without waiting: not turns
            sock.sendall(b"x" * 100)
        assert len(_recv_exactly(sock, 500)) == 500
        sock.sendall(b"last")  # after a wait: the fourth turn
        sock.shutdown(socket.SHUT_WR)
        _recv_all(sock)
    assert proxy.stats().turns - before == 4


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        data += sock.recv(n - len(data))
    return data


def test_child_process_reports_stats(echo: int) -> None:
    with ProxyProcess("127.0.0.1", echo, delay=DELAY) as child:
        with socket.create_connection(("127.0.0.1", child.port)) as sock:
            sock.sendall(b"abc")
            assert sock.recv(3) == b"abc"
        stats = child.stats()
    assert stats.bytes_up == 3 and stats.connections == 1
