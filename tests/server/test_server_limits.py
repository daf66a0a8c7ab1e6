"""Every server limit over a real socket: configurable, answered right, bounded.

Each limit of ``Limits`` the server enforces is set small here and crossed on
purpose: the reply code and enhanced status are checked, and so is what comes
after (the session goes on, or the connection closes, and nothing half-made
reaches the backend). The flow-control test pipelines megabytes of NOOPs
without reading a reply and shows the server stops reading (bounded memory)
and then answers every one of them once the client reads.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import pytest

from mailwire.limits import Limits

from .conftest import RawClient, ServerThread, wait_for

Factory = Callable[..., ServerThread]


def limited(server_factory: Factory, **limits: int | float) -> ServerThread:
    return server_factory(limits=Limits().with_(**limits))


def transaction(client: RawClient, rcpts: int = 1) -> None:
    client.cmd("MAIL FROM:<a@example.com>", 250)
    for i in range(rcpts):
        client.cmd(f"RCPT TO:<r{i}@example.com>", 250)


# -- line lengths ---------------------------------------------------------------------


@pytest.mark.parametrize("length", [513, 600, 12289, 200_000])
def test_command_line_too_long_is_500_and_session_goes_on(recording_server: ServerThread, length: int) -> None:
    client = recording_server.raw()
    client.ehlo()
    line = b"MAIL FROM:<" + b"a" * (length - len(b"MAIL FROM:<>\r\n")) + b">"
    assert len(line) + 2 == length
    client.send(line + b"\r\nNOOP\r\n")
    client.expect(500, "5.5.6")
    client.expect(250)  # the NOOP after it: the overlong line was skipped whole
    transaction(client)  # no MAIL was started by the long line
    client.cmd("QUIT", 221)
    assert [a for a, _ in recording_server.backend.calls("mail")] == ["a@example.com"]


def test_command_line_of_exactly_512_is_accepted(recording_server: ServerThread) -> None:
    client = recording_server.raw()
    client.ehlo()
    line = b"NOOP " + b"x" * (512 - len(b"NOOP \r\n"))
    assert len(line) + 2 == 512
    client.cmd(line, 250)


def test_command_line_limit_is_configurable(server_factory: Factory) -> None:
    server = limited(server_factory, command_line=64)
    client = server.raw()
    client.ehlo()
    client.cmd(b"NOOP " + b"x" * 57, 250)  # 64 with CRLF
    client.cmd(b"NOOP " + b"x" * 58, 500, "5.5.6")
    client.cmd("NOOP", 250)


# -- message size ------------------------------------------------------------------------


def test_message_size_limit_data(server_factory: Factory) -> None:
    server = limited(server_factory, message_size=1000)
    client = server.raw()
    assert "SIZE 1000" in client.ehlo().lines
    transaction(client)
    client.cmd("DATA", 354)
    client.send(b"x" * 78 + b"\r\n")
    client.send((b"y" * 78 + b"\r\n") * 20 + b".\r\n")
    client.expect(552, "5.3.4")
    assert server.backend.messages == []
    # The session goes on, and a message within the limit is accepted.
    transaction(client)
    client.cmd("DATA", 354)
    client.send(b"small\r\n.\r\n")
    client.expect(250)
    assert server.backend.wait_messages(1)
    assert server.backend.messages[0].content == b"small\r\n"


def test_message_size_limit_bdat(server_factory: Factory) -> None:
    server = limited(server_factory, message_size=1000)
    client = server.raw()
    client.ehlo()
    transaction(client)
    client.send(b"BDAT 600\r\n" + b"a" * 600)
    client.expect(250)
    client.send(b"BDAT 600 LAST\r\n" + b"b" * 600 + b"NOOP\r\n")
    client.expect(552, "5.3.4")
    client.expect(250)  # the chunk's octets were skipped, not parsed
    assert server.backend.messages == []
    transaction(client)
    client.send(b"BDAT 1000 LAST\r\n" + (b"c" * 98 + b"\r\n") * 10)
    client.expect(250)
    assert server.backend.wait_messages(1)
    assert server.backend.messages[0].content == (b"c" * 98 + b"\r\n") * 10


def test_message_size_limit_size_parameter(server_factory: Factory) -> None:
    server = limited(server_factory, message_size=1000)
    client = server.raw()
    client.ehlo()
    client.cmd("MAIL FROM:<a@example.com> SIZE=1001", 552, "5.3.4")
    client.cmd("RCPT TO:<b@example.com>", 503)  # no transaction was started
    client.cmd("MAIL FROM:<a@example.com> SIZE=1000", 250)
    assert server.backend.calls("mail")[0][1].size == 1000


# -- recipients ------------------------------------------------------------------------------


def test_recipient_limit(server_factory: Factory) -> None:
    server = limited(server_factory, recipients=3)
    client = server.raw()
    client.ehlo()
    transaction(client, rcpts=3)
    client.cmd("RCPT TO:<r3@example.com>", 452, "4.5.3")
    client.cmd("DATA", 354)
    client.send(b"hi\r\n.\r\n")
    client.expect(250)
    assert server.backend.wait_messages(1)
    assert server.backend.messages[0].rcpt_to == ["r0@example.com", "r1@example.com", "r2@example.com"]
    transaction(client, rcpts=3)  # the count starts again with each transaction


# -- bad commands ---------------------------------------------------------------------------------


def test_too_many_bad_commands_is_421_and_close(server_factory: Factory) -> None:
    server = limited(server_factory, bad_commands=3)
    client = server.raw()
    client.ehlo()
    client.send(b"BOGUS\r\nXYZZY 1\r\nMAIL FRM:<x>\r\nFOO\r\nNOOP\r\n")
    assert [client.reply().code for _ in range(3)] == [500, 500, 501]
    client.expect(421, "4.7.0")
    assert client.closed()
    assert b"NOOP" not in bytes(client.received) and client.buffer == bytearray()


def test_bad_commands_below_the_limit_keep_the_session(server_factory: Factory) -> None:
    server = limited(server_factory, bad_commands=3)
    client = server.raw()
    client.ehlo()
    for _ in range(3):
        assert client.cmd("BOGUS", 500).code == 500
    client.cmd("NOOP", 250)


# -- timeouts ---------------------------------------------------------------------------------------


def test_idle_timeout_is_421(server_factory: Factory) -> None:
    server = limited(server_factory, server_idle_timeout=0.5)
    client = server.raw()
    client.ehlo()
    started = time.monotonic()
    client.expect(421, "4.4.2")
    assert client.closed()
    assert 0.4 <= time.monotonic() - started < 3.0
    assert server.backend.wait_closed(1)


def test_idle_timeout_restarts_with_each_command(server_factory: Factory) -> None:
    server = limited(server_factory, server_idle_timeout=0.5)
    client = server.raw()
    for _ in range(4):
        time.sleep(0.25)
        client.cmd("NOOP", 250)
    client.expect(421)


def test_idle_timeout_before_ehlo_and_mid_transaction(server_factory: Factory) -> None:
    server = limited(server_factory, server_idle_timeout=0.5)
    silent = server.raw()
    busy = server.raw()
    busy.ehlo()
    transaction(busy)
    silent.expect(421)
    busy.expect(421)
    assert server.backend.wait_closed(2)
    assert server.backend.messages == []
    # An abandoned transaction is reset for the backend.
    assert server.backend.calls("reset")


def test_data_timeout_is_421_and_nothing_delivered(server_factory: Factory) -> None:
    server = limited(server_factory, server_data_timeout=0.5, server_idle_timeout=30)
    client = server.raw()
    client.ehlo()
    transaction(client)
    client.cmd("DATA", 354)
    client.send(b"Subject: slow\r\n\r\nhalf a mess")
    started = time.monotonic()
    client.expect(421)
    assert time.monotonic() - started < 3.0
    assert client.closed()
    assert server.backend.wait_closed(1)
    assert server.backend.messages == []


def test_data_timeout_mid_bdat_chunk(server_factory: Factory) -> None:
    server = limited(server_factory, server_data_timeout=0.5, server_idle_timeout=30)
    client = server.raw()
    client.ehlo()
    transaction(client)
    client.send(b"BDAT 100 LAST\r\n" + b"x" * 50)
    client.expect(421)
    assert client.closed()
    assert server.backend.wait_closed(1)
    assert server.backend.messages == []


# -- connections ---------------------------------------------------------------------------------------


def test_connections_beyond_the_limit_get_421_at_accept(server_factory: Factory) -> None:
    server = limited(server_factory, connections=2)
    first, second = server.raw(), server.raw()
    third = server.raw(greeting=False)
    third.expect(421, "4.7.0")
    assert third.closed()
    # The admitted ones are unaffected.
    first.cmd("NOOP", 250)
    second.cmd("NOOP", 250)
    # A slot freed is a slot to use again.
    first.cmd("QUIT", 221)
    assert first.closed()
    assert wait_for(lambda: server.connections == 1)
    fourth = server.raw()
    fourth.cmd("NOOP", 250)
    assert len(server.backend.sessions) == 3  # the refused one never got a session


# -- flow control ------------------------------------------------------------------------------------------


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_client_that_never_reads_cannot_grow_server_memory(server_factory: Factory) -> None:
    """Pipeline up to 64 MiB of NOOPs without reading a reply: the server must
    stop reading (so the client's sends block after a few MiB of kernel
    buffers), hold bounded memory, and answer every NOOP once the client reads."""
    receive_buffer = 64 * 1024
    # junk_commands=0: NOOPs without limit, so that flow control alone is tested.
    server = limited(server_factory, receive_buffer=receive_buffer, junk_commands=0)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    sock.settimeout(5)
    sock.connect(server.address)
    client = RawClient(sock)
    client.expect(220)
    noop = b"NOOP\r\n"
    block = noop * 50_000  # 300 KB per send
    attempt = 64 << 20
    rss_before = _rss_mib()
    sock.setblocking(False)
    sent = 0
    stalled_since = time.monotonic()
    deadline = time.monotonic() + 20
    while sent < attempt and time.monotonic() < deadline:
        try:
            offset = sent % len(block)
            sent += sock.send(block[offset:])
            stalled_since = time.monotonic()
        except BlockingIOError:
            if time.monotonic() - stalled_since > 0.5:
                break  # the server stopped reading
            time.sleep(0.005)
    rss_after = _rss_mib()
    assert sent < 24 << 20, f"the server kept reading: {sent} octets taken without a reply read"
    assert rss_after - rss_before < 48, f"RSS grew by {rss_after - rss_before:.1f} MiB"
    assert server.connections == 1

    # Now read: the server must resume and answer every NOOP it was sent.
    sock.setblocking(True)
    sock.settimeout(10)
    received = bytearray()

    def drain() -> None:
        while True:
            try:
                data = sock.recv(1 << 20)
            except OSError:
                return
            if not data:
                return
            received.extend(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    partial = sent % len(noop)
    if partial:
        sock.sendall(noop[partial:])
    sock.sendall(b"QUIT\r\n")
    reader.join(30)
    assert not reader.is_alive()
    noops = (sent + len(noop) - 1) // len(noop)
    assert received.count(b"250 2.0.0 OK\r\n") == noops
    assert received.endswith(b"221 2.0.0 Bye\r\n")
    sock.close()


def test_huge_message_streams_without_buffering_it_twice(server_factory: Factory) -> None:
    """A 16 MiB message within the limit arrives whole (flow control is not loss)."""
    server = limited(server_factory, receive_buffer=64 * 1024, message_size=32 << 20)
    client = server.raw()
    client.ehlo()
    transaction(client)
    client.cmd("DATA", 354)
    line = b"0123456789" * 7 + b"\r\n"
    count = (16 << 20) // len(line)
    client.sock.sendall(line * count + b".\r\n")
    client.expect(250)
    assert server.backend.wait_messages(1)
    assert len(server.backend.messages[0].content) == len(line) * count


def test_client_that_never_reads_is_timed_out(server_factory: Factory) -> None:
    server = limited(server_factory, receive_buffer=64 * 1024, server_idle_timeout=0.5, junk_commands=0)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    try:
        sock.connect(server.address)
        sock.setblocking(False)
        block = b"NOOP\r\n" * 50_000
        stalled_since = time.monotonic()
        deadline = time.monotonic() + 10
        while time.monotonic() - stalled_since < 0.3 and time.monotonic() < deadline:
            try:
                sock.send(block)
                stalled_since = time.monotonic()
            except BlockingIOError:
                time.sleep(0.005)
        assert server.connections == 1
        # Idle for far longer than the idle timeout: the server must let go
        # (after answering what the kernel had already buffered, megabytes of
        # NOOPs on a loaded machine: hence the generous bound).
        assert wait_for(lambda: server.connections == 0, timeout=20.0), "connection still held"
    finally:
        sock.close()


@pytest.mark.parametrize("chunking", [False, True], ids=["data", "bdat"])
def test_text_line_limit(server_factory: Factory, chunking: bool) -> None:
    """RFC 5321 4.5.3.1.6: a text line is at most 1000 octets with its CRLF.
    A longer one refuses the whole message (550 5.6.0), which is never
    delivered, and the session goes on."""
    server = limited(server_factory)
    client = server.raw()
    client.ehlo()

    def send(content: bytes) -> None:
        transaction(client)
        if chunking:
            client.send(b"BDAT %d LAST\r\n" % len(content) + content)
        else:
            client.cmd("DATA", 354)
            client.send(content + b".\r\n")

    longest = b"Subject: at the limit\r\n\r\n" + b"x" * 998 + b"\r\n"
    send(longest)
    client.expect(250)
    send(b"Subject: one octet over\r\n\r\n" + b"y" * 999 + b"\r\nshort\r\n")
    client.expect(550, "5.6.0")
    send(b"Subject: next\r\n\r\nfine\r\n")
    client.expect(250)
    assert server.backend.wait_messages(2)
    assert [m.content for m in server.backend.messages] == [longest, b"Subject: next\r\n\r\nfine\r\n"]


def test_text_line_limit_is_configurable(server_factory: Factory) -> None:
    server = limited(server_factory, text_line=0)  # 0: no limit, as RFC 5321 4.5.3.1 prefers
    client = server.raw()
    client.ehlo()
    transaction(client)
    client.cmd("DATA", 354)
    line = b"x" * 4998
    client.send(b"Subject: long\r\n\r\n" + line + b"\r\n.\r\n")
    client.expect(250)
    assert server.backend.wait_messages(1)
    assert server.backend.messages[0].content == b"Subject: long\r\n\r\n" + line + b"\r\n"


def test_binarymime_has_no_lines_to_limit(server_factory: Factory) -> None:
    server = limited(server_factory)
    client = server.raw()
    client.ehlo()
    client.cmd("MAIL FROM:<a@example.com> BODY=BINARYMIME", 250)
    client.cmd("RCPT TO:<b@example.com>", 250)
    blob = bytes(range(256)).replace(b"\n", b"") * 20
    client.send(b"BDAT %d LAST\r\n" % len(blob) + blob)
    client.expect(250)
    assert server.backend.wait_messages(1)
    assert server.backend.messages[0].content == blob


def test_bdat_size_syntax(recording_server: ServerThread) -> None:
    client = recording_server.raw()
    client.ehlo()
    transaction(client)
    client.cmd("BDAT 99999999999999999999999 LAST", 501, "5.5.4")
    client.cmd("BDAT -1", 501)
    client.cmd("BDAT 0 LAST", 250)  # an empty message is a message
    assert recording_server.backend.wait_messages(1)
    assert recording_server.backend.messages[0].content == b""
