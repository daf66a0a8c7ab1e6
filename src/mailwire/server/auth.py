"""AUTH policy: who checks the credentials, and what a wrong guess costs.

The core runs the SASL exchange (``protocol/server.py``) and hands the driver
``Credentials``; ``judge`` is everything the server decides about them:

* An address that spent its failure budget for the current window
  (``Limits.auth_failures`` per ``auth_failure_window``, counted across its
  connections in ``clients.py``) hears 421 and is disconnected: no more
  guesses until the window ends. Mail without AUTH still flows from there.
* A failure injected for AUTH (``chaos.py``) answers first, uncounted.
* The credentials are checked by ``ServerConfig.authenticator`` if the
  server has one, else by the session (``AuthSession.authenticate``).
* A refusal (5xx) is counted for the connection and the address, and
  answered only after a delay that grows with the count
  (``auth_failure_delay`` times the failures): a sleep in the connection's
  task, so the loop serves everyone else meanwhile and what the client
  pipelined behind waits its turn. Logging is one line per address and
  window, never one per failure (a brute force made thousands).
"""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING, Optional

from ..reply import AUTH_OK, TOO_MANY_AUTH_FAILURES, Reply
from ..sasl import Credentials
from .session import AuthSession

if TYPE_CHECKING:
    from .policy import SessionPolicy, Wait

__all__ = ["judge"]

log = logging.getLogger("mailwire.server")


def judge(policy: SessionPolicy, credentials: Credentials) -> Optional[Wait]:
    """Answer ``credentials`` (see the module doc); a Wait if that takes time."""
    conn = policy.conn
    if conn.server.clients.auth_refused(conn.client_key):
        log.debug("AUTH from %s refused: too many failures", policy.info.peer)
        policy.reply(TOO_MANY_AUTH_FAILURES)  # a 421: the connection closes
        return None
    injected = policy.injected("auth", credentials.username)
    if injected is not None:  # chaos.py: a failure asked for, not a wrong guess
        policy.reply(injected)
        return None
    check = policy.config.authenticator
    if check is None:
        session = policy.session
        assert isinstance(session, AuthSession)  # else the core offered no AUTH
        check = session.authenticate
    return policy.ask(partial(_judged, policy), credentials, check, credentials)


def _judged(policy: SessionPolicy, credentials: Credentials, refusal: Reply | None) -> Optional[Wait]:
    info = policy.info
    if refusal is None:
        info.auth_identity = credentials.username
        info.auth_mechanism = credentials.mechanism
        log.info("%s authenticated as %s (%s)", info.peer, credentials.username, credentials.mechanism)
        policy.reply(AUTH_OK)
        return None
    if refusal.code >= 500:
        delay = _failed(policy, credentials.username)
        if delay > 0:
            return policy.later(delay, refusal)
    policy.reply(refusal)
    return None


def _failed(policy: SessionPolicy, username: str) -> float:
    """Count a refusal for the connection and its address; the delay
    before answering it."""
    conn = policy.conn
    policy.auth_failures += 1
    clients = conn.server.clients
    limits = conn.limits
    failures = max(policy.auth_failures, clients.auth_failed(conn.client_key))
    host = conn.client_key or _host(policy.info.peer)
    if clients.auth_log(host):
        budget = limits.auth_failures if conn.client_key is not None else 0
        log.warning(
            "AUTH refused for %r from %s; its failures in the next %gs are counted, not logged%s",
            username, host, limits.auth_failure_window,
            f" (past {budget}, AUTH from there is refused)" if budget else "",
        )
    else:
        log.debug("AUTH refused for %r from %s (failure %d)", username, host, failures)
    return failures * limits.auth_failure_delay


def _host(peer: object) -> str:
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer) if peer else "local"
