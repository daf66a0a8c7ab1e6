"""``mailwire.smtpd.SMTPChannel`` and ``channel_class``: refused loudly, never ignored.

Programs subclassed smtpd's channel to add AUTH or STARTTLS to EHLO, to
refuse recipients in ``smtp_RCPT``, or to stop the loop in ``smtp_QUIT``, and
made their channels in ``handle_accept``. None of that can run on mailwire's
server, so each shape below (taken from real programs) must fail when it is
defined or set, with an error naming what to use instead, and before any
port is bound.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest

import mailwire.smtpd as msmtpd
from mailwire.smtpd import ChannelNotSupported, SMTPChannel, SMTPServer

ALTERNATIVES = ("process_message", "make_config", "mailwire.server.SMTPServer", "BaseSession.mail/rcpt",
                "AuthSession.authenticate")


def assert_names_the_alternatives(err: pytest.ExceptionInfo[ChannelNotSupported]) -> str:
    text = str(err.value)
    for name in ALTERNATIVES:
        assert name in text, (name, text)
    assert isinstance(err.value, TypeError)
    return text


def test_an_auth_channel_fails_when_defined() -> None:
    # The shape of mail catchers that added AUTH: EHLO advertising it, AUTH handling it.
    with pytest.raises(ChannelNotSupported) as err:
        class AuthChannel(SMTPChannel):
            def smtp_EHLO(self, arg: str) -> None:
                pass

            def smtp_AUTH(self, arg: str) -> None:
                pass

    text = assert_names_the_alternatives(err)
    assert "AuthChannel subclasses SMTPChannel (it defines smtp_AUTH, smtp_EHLO), which would never run" in text


def test_a_channel_with_only_attributes_fails_too() -> None:
    with pytest.raises(ChannelNotSupported, match=r"Quiet subclasses SMTPChannel \(it defines command_size_limit\)"):
        class Quiet(SMTPChannel):
            command_size_limit = 1024


def test_a_channel_cannot_be_made() -> None:
    # What a handle_accept override did with the stock channel.
    with pytest.raises(ChannelNotSupported) as err:
        SMTPChannel(None, None, ("127.0.0.1", 1))
    assert_names_the_alternatives(err)


def test_channel_class_in_a_server_class_fails_when_defined() -> None:
    with pytest.raises(ChannelNotSupported) as err:
        class Server(SMTPServer):
            channel_class = dict  # any class but SMTPChannel

    assert "Server.channel_class = dict would never be used" in assert_names_the_alternatives(err)


@pytest.mark.parametrize("hook", ["handle_accept", "handle_accepted"])
def test_accepting_connections_itself_fails_when_defined(hook: str) -> None:
    # Mailman's test SinkServer: handle_accept made a OneShotChannel of its own.
    with pytest.raises(ChannelNotSupported) as err:
        type("SinkServer", (SMTPServer,), {hook: lambda self: None})
    assert f"SinkServer.{hook} would never be called" in assert_names_the_alternatives(err)


def test_a_mixin_accepting_connections_fails_too() -> None:
    class Accepting:
        def handle_accept(self) -> None:
            pass

    with pytest.raises(ChannelNotSupported, match="Mixed.handle_accept would never be called"):
        class Mixed(Accepting, SMTPServer):
            pass


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_channel_class_set_on_the_class_later_fails_before_binding() -> None:
    class Server(SMTPServer):
        pass

    Server.channel_class = dict  # type: ignore[assignment]
    port = _unused_port()
    with pytest.raises(ChannelNotSupported, match="Server.channel_class = dict"):
        Server(("127.0.0.1", port), None, map={})
    assert _port_is_free(port)


def test_channel_class_set_on_a_server_fails() -> None:
    class Early(SMTPServer):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.channel_class = dict  # type: ignore[assignment]
            super().__init__(*args, **kwargs)

    port = _unused_port()
    with pytest.raises(ChannelNotSupported, match="Early.channel_class = dict"):
        Early(("127.0.0.1", port), None, map={})
    assert _port_is_free(port)
    with SMTPServer(("127.0.0.1", 0), None, map={}) as server:
        with pytest.raises(ChannelNotSupported):
            server.channel_class = dict  # type: ignore[assignment]
        server.channel_class = SMTPChannel  # the one it has: allowed


def test_the_stock_channel_class_is_fine() -> None:
    class Explicit(msmtpd.DebuggingServer):
        channel_class = SMTPChannel

    assert SMTPServer.channel_class is SMTPChannel
    with Explicit(("127.0.0.1", 0), None, map={}) as server:
        assert server.channel_class is SMTPChannel
