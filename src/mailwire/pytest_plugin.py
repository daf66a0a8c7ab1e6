"""pytest fixtures: a real SMTP server per test, what it received, and waiting for mail.

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

``smtp_mail``: ``smtp_server.mail`` (a ``mailwire.testing.ServerMail``):
``smtp_mail.wait_for(to=..., sender=..., subject=..., query=...,
timeout=...)`` gives a ``CaughtMessage`` (``.text``, ``.html``,
``.links``, ``.link(containing=...)``, ``.code()``).

``mail_address``: an address unique to this test and this run
(``t-<hash of the run and the test's node ID>-<xdist worker>@mailwire.test``),
so tests that share a catcher, in parallel or one run after another, never
take each other's mail. ``inbox_client``: a ``mailwire.testing.InboxClient``
for a catcher running elsewhere (``mailwire serve``, Mailpit), at
``--mailwire-url`` or ``$MAILWIRE_URL``, seeing only the mail to
``mail_address``; a test that asks for it is skipped when no URL is given.

``smtp_chaos``: the ``mailwire.server.chaos.Chaos`` of ``smtp_server``
(asking for it gives the server one), to make it fail on purpose:
``smtp_chaos.fail("rcpt", 451, times=2, match="*@flaky.test")``; a
``mailwire serve`` in another process is told the same over its API:
``remote_chaos(url)`` is a ``mailwire.testing.RemoteChaos`` whose
failures are turned off after the test.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable, Iterator
from typing import Any
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .testing import RemoteChaos
    from .server.chaos import Chaos
    from .testing import InboxClient, Messages, ServerMail, ServerThread

__all__ = ["smtp_server", "smtp_messages", "smtp_mail", "mail_address", "inbox_client", "smtp_chaos", "remote_chaos",
           "DOMAIN"]

DOMAIN = "mailwire.test"  # a reserved name (RFC 2606): mail to it never leaves by mistake
_RUN = pytest.StashKey[tuple[str, str]]()  # (the run's token, the xdist worker's ID or "main")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("mailwire").addoption(
        "--mailwire-url", default=None, metavar="URL",
        help="the HTTP API of a running mailwire serve or Mailpit, for the inbox_client fixture "
             "(default: $MAILWIRE_URL)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "mailwire_server(handler=None, **config): how the smtp_server fixture builds its server",
    )
    # One token per run, shared by pytest-xdist's workers (each gets the run's
    # ID and its own in ``workerinput``; the environment would also reach a
    # pytest run started inside a worker, which is another run).
    worker = getattr(config, "workerinput", None)
    if isinstance(worker, dict) and "testrunuid" in worker:
        config.stash[_RUN] = (str(worker["testrunuid"]), str(worker.get("workerid", "gw")))
    else:
        config.stash[_RUN] = (secrets.token_hex(8), "main")


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
def smtp_mail(smtp_server: ServerThread) -> ServerMail:
    """The mail ``smtp_server`` caught, to wait for and read (``ServerMail``)."""
    return smtp_server.mail


@pytest.fixture
def mail_address(request: pytest.FixtureRequest) -> str:
    """An address for this test alone: its node ID and the run, hashed, and the xdist worker."""
    run, worker = request.config.stash.get(_RUN, ("", "main"))
    digest = hashlib.blake2b(f"{run}\0{request.node.nodeid}".encode(), digest_size=5).hexdigest()
    return f"t-{digest}-{worker}@{DOMAIN}".lower()


@pytest.fixture
def inbox_client(request: pytest.FixtureRequest, mail_address: str) -> InboxClient:
    """The running catcher at ``--mailwire-url`` (or ``$MAILWIRE_URL``),
    seeing the mail to ``mail_address`` only; the test is skipped without one."""
    url = request.config.getoption("mailwire_url") or os.environ.get("MAILWIRE_URL")
    if not url:
        pytest.skip("no running catcher to ask: give --mailwire-url URL or set MAILWIRE_URL")
    from .testing import InboxClient

    return InboxClient(url, to=mail_address)


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
    from .testing import RemoteChaos

    made: list[RemoteChaos] = []

    def connect(url: str, **settings: Any) -> RemoteChaos:
        made.append(RemoteChaos(url, **settings))
        return made[-1]

    yield connect
    for remote in made:
        remote.clear()
