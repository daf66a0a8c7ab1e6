"""pytest fixtures: a real SMTP server per test, and what it received.

Registered through the ``pytest11`` entry point, so installing mailwire makes
the fixtures available everywhere; disable with ``-p no:mailwire``. The
module imports nothing of mailwire's server until a test asks for a fixture,
and a project's own fixture of the same name wins over these, so a test run
that does not use them is not affected.

``smtp_server``: a ``mailwire.testing.ServerThread`` listening on 127.0.0.1
(``.host``, ``.port``, ``.messages``, ``.wait_for(count, timeout)``,
``.clear()``, ``.server``), stopped after the test. ``smtp_messages``: its
``messages``, the envelopes it accepted. Configure the server of one test
with the marker ``@pytest.mark.mailwire_server(handler=None, **config)``,
which takes ``run_server``'s arguments (ServerConfig fields, ``grace`` ...).
``smtp_chaos``: the ``mailwire.server.chaos.Chaos`` of ``smtp_server``
(asking for it gives the server one), to make it fail on purpose:
``smtp_chaos.fail("rcpt", 451, times=2, match="*@flaky.test")``; a
``mailwire serve`` in another process is told the same over its API:
``remote_chaos(url)`` is a ``mailwire.chaos_client.RemoteChaos`` whose
failures are turned off after the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .chaos_client import RemoteChaos
    from .server.chaos import Chaos
    from .testing import Messages, ServerThread

__all__ = ["smtp_server", "smtp_messages", "smtp_chaos", "remote_chaos"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "mailwire_server(handler=None, **config): how the smtp_server fixture builds its server",
    )


@pytest.fixture
def smtp_server(request: pytest.FixtureRequest) -> Iterator[ServerThread]:
    """A running SMTP server for this test (a ``mailwire.testing.ServerThread``)."""
    from .testing import run_server

    marker = request.node.get_closest_marker("mailwire_server")
    args = marker.args if marker is not None else ()
    kwargs = marker.kwargs if marker is not None else {}
    if "smtp_chaos" in request.fixturenames and kwargs.get("chaos") is None and "config" not in kwargs:
        from .server.chaos import Chaos

        kwargs = {**kwargs, "chaos": Chaos()}
    with run_server(*args, **kwargs) as server:
        yield server


@pytest.fixture
def smtp_messages(smtp_server: ServerThread) -> Messages:
    """The messages ``smtp_server`` accepted (live, thread-safe)."""
    return smtp_server.messages


@pytest.fixture
def smtp_chaos(smtp_server: ServerThread) -> Chaos:
    """The failures ``smtp_server`` injects (none until the test asks):
    ``smtp_chaos.fail(stage, code, times=..., probability=..., match=...)``."""
    chaos = smtp_server.server.config.chaos
    if chaos is None:
        raise pytest.UsageError("smtp_chaos needs a server with chaos: the marker's config= has none")
    return chaos


@pytest.fixture
def remote_chaos() -> Iterator[Callable[..., RemoteChaos]]:
    """``remote_chaos(url, auth=None)``: the chaos of a running ``mailwire
    serve`` (its web inbox's URL), over its API; every server it was asked
    for has its failures turned off after the test."""
    from .chaos_client import RemoteChaos

    made: list[RemoteChaos] = []

    def connect(url: str, **settings: Any) -> RemoteChaos:
        made.append(RemoteChaos(url, **settings))
        return made[-1]

    yield connect
    for remote in made:
        remote.clear()
