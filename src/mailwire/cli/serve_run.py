"""Running ``mailwire serve``'s plan: the server, its two hooks, the banner, the signals.

``serve.plan`` has checked the options and built a ``Plan``: the backend,
the ``ServerConfig`` and where to listen. This module runs it. The server
gets two hooks (``ServerConfig`` settings, not wrappers round the backend):
``Users`` checks AUTH against the ``--auth-file`` users (``AcceptAny``, for
``--auth-accept-any``, takes whatever is presented), ``Reporter`` prints
one summary line per delivered message on stdout. ``serve`` listens (a port
in use is a ``RuntimeFailure``: one line, exit 1), prints the banner once it
does (flushed; with ``--port 0`` it names the port chosen) and waits for
SIGINT or SIGTERM, then calls ``stop(grace)``: messages being received get
``grace`` seconds to end, and a message is only ever handed to the backend
whole, so a shutdown never stores half of one. A second signal stops at once
(``server/stopping.py``). With ``--workers N``, ``serve_workers`` hands the
same plan to ``mailwire.server.workers``, which runs it in N processes and
calls back here for the banner (one, with ``workers: N``).
"""

from __future__ import annotations

import errno
import json
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from typing import Any, Protocol

from ..errors import SMTPError
from ..reply import AUTH_FAILED
from ..sasl import Credentials
from ..server.aio import SMTPServer
from ..server.config import ServerConfig
from ..server.envelope import Envelope
from ..server.session import Backend
from ..server.stopping import StopSignals
from ..server.workers import BackendFactory, Workers, WorkersFailed

__all__ = [
    "Plan", "Companion", "serve", "serve_workers", "Users", "AcceptAny", "Reporter", "RuntimeFailure",
    "summary_line", "PROG",
]

log = logging.getLogger("mailwire.serve")

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2
PROG = "mailwire serve"


class RuntimeFailure(Exception):
    """The arguments are fine but the server cannot run: one line, exit 1."""


@dataclass
class Plan:
    """What ``serve`` runs (``serve.plan`` builds it from the options)."""

    backend: Backend
    config: ServerConfig
    tcp: tuple[str, int] | None
    unix: str | None
    grace: float
    storing: str  # what the banner says happens to messages
    workers: int = 1  # above 1: processes, each with a backend from make_backend
    make_backend: BackendFactory | None = None  # an async one is awaited before the worker listens
    companions: tuple[Companion, ...] = ()  # run beside the server on its loop: the web inbox


class Companion(Protocol):
    """What runs beside the SMTP server on its event loop (``serve_web.py``:
    the web inbox): started once the server listens, stopped after it."""

    @property
    def where(self) -> str: ...  # where it listens, for an error message

    async def start(self) -> str: ...  # listen (OSError if it cannot); words for the banner

    async def stop(self) -> None: ...


# -- the server's hooks -------------------------------------------------------------


def _subject(head: bytes) -> str:
    """The decoded Subject of a message, read from its header section."""
    try:
        value = BytesHeaderParser(policy=default_policy).parsebytes(head).get("subject")
        return "" if value is None else " ".join(str(value).split())
    except Exception:  # a header the parser chokes on must not refuse the message
        return ""


def summary_line(envelope: Envelope, recipients: Sequence[str]) -> str:
    """``from=<a> to=<b>,<c> subject="..." size=N`` (size: octets as received)."""
    to = ",".join(f"<{r}>" for r in recipients)
    subject = json.dumps(_subject(envelope.header_section()), ensure_ascii=False)
    return f"from=<{envelope.mail_from}> to={to} subject={subject} size={envelope.size}"


class Users:
    """``--auth-file``'s users as the server's authenticator
    (``ServerConfig.authenticator``): a plain function, answered at once."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = users

    def __call__(self, credentials: Credentials) -> None:
        stored = self.users.get(credentials.username)
        # Compare against something even for an unknown user, so the time
        # taken does not say which names exist.
        good = credentials.check_password(stored if stored is not None else "\0unknown")
        if stored is None or not good or credentials.authzid not in ("", credentials.username):
            # Debug only: the server logs one line per client and window, not
            # one per failure (a brute force made thousands).
            log.debug("AUTH %s refused for %r", credentials.mechanism, credentials.username)
            raise SMTPError(AUTH_FAILED)


class AcceptAny:
    """``--auth-accept-any``'s authenticator: every user and password (or
    CRAM-MD5 digest, which needs no password to be taken) is accepted, so an
    application configured with credentials sends to the catcher unchanged;
    the server records the user in ``SessionInfo.auth_identity``, hence on
    each message's envelope."""

    def __call__(self, credentials: Credentials) -> None:
        log.debug("AUTH %s accepted for %r (--auth-accept-any)", credentials.mechanism, credentials.username)


class Reporter:
    """One summary line on stdout per delivered message (``ServerConfig.on_delivered``)."""

    def __init__(self) -> None:
        self._failed = False

    def __call__(self, envelope: Envelope, recipients: Sequence[str]) -> None:
        try:
            sys.stdout.write(summary_line(envelope, recipients) + "\n")
            sys.stdout.flush()
        except (OSError, ValueError) as err:  # stdout gone: the message is stored all the same
            if not self._failed:
                self._failed = True
                log.warning("cannot write to stdout (%s); messages are still accepted", err)


# -- running ---------------------------------------------------------------------------


def _format_address(address: Any) -> str:
    if isinstance(address, tuple):
        host = str(address[0])
        return f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}"
    return str(address)


def _banner(addresses: Sequence[Any], plan: Plan) -> str:
    features = ["LMTP"] if plan.config.lmtp else []
    if plan.config.tls_context is not None:
        features.append("implicit TLS" if plan.config.implicit_tls else "STARTTLS")
    if plan.config.authenticator is not None:
        features.append("AUTH accepting any" if isinstance(plan.config.authenticator, AcceptAny) else "AUTH")
    if plan.config.proxy_protocol:
        features.append("PROXY")
    where = " and ".join(_format_address(a) for a in addresses)
    extra = f" ({', '.join(features)})" if features else ""
    workers = f", workers: {plan.workers}" if plan.workers > 1 else ""
    return f"{PROG}: listening on {where}{extra}, {plan.storing}{workers}"


def _listen_error(where: str, err: OSError) -> str:
    if err.errno == errno.EADDRINUSE:
        reason = "address already in use (is another server running there?)"
    elif err.errno == errno.EACCES:
        reason = "permission denied (ports below 1024 need privileges)"
    else:
        reason = err.strerror or str(err)
    return f"cannot listen on {where}: {reason}"


async def serve(plan: Plan) -> int:
    """Run ``plan`` in this process until SIGINT or SIGTERM; the exit code."""
    signals = StopSignals((signal.SIGINT, signal.SIGTERM))
    server = SMTPServer(plan.backend, plan.config)
    where = ""
    try:
        if plan.unix is not None:
            where = plan.unix
            await server.start_unix(plan.unix)
        if plan.tcp is not None:
            where = _format_address(plan.tcp)
            await server.start(*plan.tcp)
        beside = []
        for companion in plan.companions:
            where = companion.where
            beside.append(await companion.start())
    except OSError as err:
        await server.stop(0)
        await _stop(plan.companions)
        raise RuntimeFailure(_listen_error(where, err)) from None
    print(", ".join([_banner(server.addresses, plan), *beside]), flush=True)
    name = await signals.wait()
    log.info("%s: stopping; messages in progress have %gs to end", name, plan.grace)
    try:
        if not await signals.stop(server, plan.grace):
            print(f"{PROG}: {signals.received[-1]} again, stopping now", file=sys.stderr)
            return EXIT_RUNTIME
    finally:
        await _stop(plan.companions)
    return EXIT_OK


async def _stop(companions: Sequence[Companion]) -> None:
    for companion in companions:
        await companion.stop()


def serve_workers(plan: Plan) -> int:
    """Run ``plan`` in ``plan.workers`` supervised processes (no event loop
    here: they are forked); the exit code."""
    assert plan.make_backend is not None
    host, port = plan.tcp if plan.tcp is not None else (None, None)
    workers = Workers(
        plan.make_backend, plan.config, host=host, port=port, unix=plan.unix, count=plan.workers,
        grace=plan.grace, on_ready=lambda addresses: print(_banner(addresses, plan), flush=True),
    )
    try:
        workers.bind()
    except OSError as err:
        where = plan.unix if plan.unix is not None and plan.tcp is None else _format_address(plan.tcp)
        raise RuntimeFailure(_listen_error(where, err)) from None
    try:
        return workers.run()
    except WorkersFailed as err:
        raise RuntimeFailure(str(err)) from None
