"""A ``ConnectionClosed`` says who closed the connection (blocking transport).

After a timeout the transport closes the socket itself: a late reply must
never be paired with the next command. An error met afterwards must then say
that we closed it, and why, not blame a server that did nothing of the kind;
when the server really hangs up, it says that.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest

from mailwire import ConnectionClosed
from mailwire.client.transport import SyncTransport
from mailwire.protocol.events import Noop

from helpers.scripted import Peer, ScriptedServer

Start = Callable[..., ScriptedServer]


def _transport(server: ScriptedServer) -> SyncTransport:
    transport = SyncTransport(socket.create_connection(server.address, timeout=5), timeout=5)
    assert transport.read_reply().code == 220
    return transport


def test_after_our_timeout_the_error_says_we_closed(scripted: Start) -> None:
    def script(peer: Peer) -> None:
        peer.reply("220 mute ESMTP")
        peer.wait_closed()  # the NOOP arrives; no reply ever

    transport = _transport(scripted(script, strict=False))
    transport.write([Noop()])
    with pytest.raises(TimeoutError):
        transport.read_reply(timeout=0.3)
    with pytest.raises(ConnectionClosed) as caught:
        transport.read_reply()
    assert str(caught.value) == "the connection was closed by us after a timeout"


def test_when_the_server_hangs_up_the_error_says_so(scripted: Start) -> None:
    def script(peer: Peer) -> None:
        peer.reply("220 brief ESMTP")
        peer.recv_line()
        peer.close()

    transport = _transport(scripted(script))
    transport.write([Noop()])
    with pytest.raises(ConnectionClosed, match="^the server closed the connection$"):
        transport.read_reply()
    with pytest.raises(ConnectionClosed, match="^the server closed the connection$"):
        transport.read_reply()  # and it still says so afterwards
