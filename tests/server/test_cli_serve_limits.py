"""``mailwire serve``'s limits: the connection caps, the deadlines, the AUTH delay.

A real process (``python -m mailwire serve``) for what a user sees (421 at
accept beyond ``--max-connections`` or ``--max-per-client``, 421 when a
trickled command line runs out of ``--command-timeout``), ``plan()`` in
process for how each flag reaches ``Limits``/``ServerConfig``, and one
line on stderr with exit code 2 for a bad value.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mailwire.cli.main import _parser
from mailwire.cli.serve import plan
from mailwire.limits import DEFAULT_LIMITS

from .test_cli_serve import TIMEOUT, Raw, Serve, serve  # noqa: F401 - serve is a fixture


def planned(*args: str) -> object:
    return plan(_parser().parse_args(["serve", "--sink", *args]))


def test_defaults_keep_one_client_from_taking_every_slot_except_loopback() -> None:
    config = planned().config  # type: ignore[attr-defined]
    assert config.limits.connections == DEFAULT_LIMITS.connections == 1000
    assert config.limits.connections_per_client == 50
    assert config.client_limit_exempt == ("127.0.0.0/8", "::1/128")


def test_each_flag_reaches_its_limit() -> None:
    config = planned(
        "--max-connections", "7", "--max-per-client", "3", "--client-limit-exempt", "10.0.0.0/8, ::1",
        "--command-timeout", "12.5", "--data-timeout", "30", "--auth-delay", "0",
    ).config  # type: ignore[attr-defined]
    limits = config.limits
    assert (limits.connections, limits.connections_per_client) == (7, 3)
    assert (limits.server_idle_timeout, limits.server_data_timeout, limits.auth_failure_delay) == (12.5, 30, 0)
    assert config.client_limit_exempt == ("10.0.0.0/8", "::1")
    assert planned("--client-limit-exempt", "none").config.client_limit_exempt == ()  # type: ignore[attr-defined]


@pytest.mark.parametrize("args, words", [
    (["--max-connections", "0"], "argument --max-connections"),
    (["--max-per-client", "-1"], "argument --max-per-client"),
    (["--client-limit-exempt", "10.0.0.0/33"], "not a network or address"),
    (["--command-timeout", "0"], "argument --command-timeout"),
    (["--data-timeout", "soon"], "argument --data-timeout"),
    (["--auth-delay", "-1"], "argument --auth-delay"),
])
def test_bad_limit_values_one_line_exit_2(serve: Callable[..., Serve], args: list[str], words: str) -> None:
    server = serve(*args, wait=False)
    assert server.wait() == 2
    lines = server.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mailwire") and words in lines[0], lines


def test_max_connections(serve: Callable[..., Serve], tmp_path: Path) -> None:
    server = serve("--port", "0", "--sink", "--max-connections", "2")
    held = [Raw(server.port), Raw(server.port)]
    for raw in held:
        assert raw.reply()[0] == 220
    refused = Raw(server.port)
    code, text = refused.reply()
    assert code == 421 and "4.7.0" in text
    assert refused.reply()[0] == 0  # closed
    for raw in held + [refused]:
        raw.close()
    assert server.stop() == 0


def test_max_per_client_from_loopback_when_not_exempt(serve: Callable[..., Serve]) -> None:
    server = serve("--port", "0", "--sink", "--max-per-client", "1", "--client-limit-exempt", "none")
    first = Raw(server.port)
    assert first.reply()[0] == 220
    second = Raw(server.port)
    code, text = second.reply()
    assert code == 421 and "from your address" in text
    # Another loopback address is another client.
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT, source_address=("127.0.0.2", 0))
    assert sock.recv(100).startswith(b"220")
    sock.close()
    for raw in (first, second):
        raw.close()
    assert server.stop() == 0
    # A flood of refusals is one line on stderr, not one per refusal.
    assert server.stderr.count("refusing connections from 127.0.0.1") == 1


def test_loopback_is_not_capped_by_default(serve: Callable[..., Serve]) -> None:
    server = serve("--port", "0", "--sink", "--max-per-client", "1")
    held = [Raw(server.port) for _ in range(4)]
    for raw in held:
        assert raw.reply()[0] == 220
        raw.close()
    assert server.stop() == 0


def test_command_timeout_is_a_deadline(serve: Callable[..., Serve]) -> None:
    server = serve("--port", "0", "--sink", "--command-timeout", "1")
    raw = Raw(server.port)
    assert raw.reply()[0] == 220
    started = time.monotonic()
    closed = False
    for byte in b"NOOP" + b"x" * 100:  # a byte every 0.1 s: never a whole line
        try:
            raw.sock.sendall(bytes([byte]))
        except OSError:
            closed = True
            break
        time.sleep(0.1)
        if time.monotonic() - started > 1.5:
            break
    code, text = raw.reply()
    assert code == 421 and "4.4.2" in text, (code, text, closed)
    assert time.monotonic() - started >= 0.9
    raw.close()
    assert server.stop() == 0
