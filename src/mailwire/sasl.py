"""SASL mechanisms (RFC 4422) for SMTP AUTH (RFC 4954), as sans-I/O exchanges.

A mechanism is a tiny state machine over raw bytes and nothing else: it never
sees a socket and never sees base64. The SMTP core decodes every ``334``
challenge before handing it over and base64-encodes whatever comes back, so a
mechanism is tested with plain byte strings. Each has two halves. The client
half (``ClientMechanism``) offers an optional initial response, then answers
challenges in order; the server half (``ServerMechanism``) is fed the client's
decoded lines through ``step`` and answers with another ``Challenge`` or with
the final ``Credentials``, which the server's backend checks.

Errors follow ``mailwire.errors``: credentials that would break the wire or the
mechanism's own framing (CR/LF in a username, NUL inside a PLAIN field, SOH in
an XOAUTH2 field) are refused with ``LocalProtocolError`` before anything is
sent; a malformed client line on the server side raises
``RemoteProtocolError`` carrying ``501 5.5.2``, and a server that leaves the
script on the client side raises ``RemoteProtocolError`` too. Strings travel
as UTF-8 and are compared as given: no SASLprep (RFC 4013) normalisation.

One module, over 500 lines: a mechanism's client and server halves are the
two ends of one wire format and share its helpers, so each pair is read,
and changed, side by side.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .errors import AuthenticationError, LocalProtocolError, RemoteProtocolError
from .reply import Reply

__all__ = [
    "ClientMechanism",
    "Plain",
    "Login",
    "CramMD5",
    "XOAuth2",
    "choose_mechanism",
    "plain_message",
    "cram_md5_response",
    "Credentials",
    "Challenge",
    "ServerMechanism",
    "ServerPlain",
    "ServerLogin",
    "ServerCramMD5",
    "ServerXOAuth2",
    "SERVER_MECHANISMS",
    "server_mechanism",
]


# --------------------------------------------------------------------------
# Shared helpers


def _encode(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise LocalProtocolError(f"{what} cannot be encoded as UTF-8") from None


def _refuse_line_breaks(text: str, what: str) -> None:
    if "\r" in text or "\n" in text:
        raise LocalProtocolError(f"{what} must not contain CR or LF")


def _hmac_md5_hex(password: bytes, challenge: bytes) -> str:
    return hmac.new(password, challenge, hashlib.md5).hexdigest()


def _malformed(mechanism: str, why: str) -> RemoteProtocolError:
    """The error for a client line a server half cannot accept.

    The reply text never echoes client data: it may hold a password.
    """
    message = f"malformed {mechanism} response: {why}"
    return RemoteProtocolError(message, Reply.of(501, "5.5.2", message))


def _too_many_steps(mechanism: str) -> RemoteProtocolError:
    message = f"{mechanism} exchange is already complete"
    return RemoteProtocolError(message, Reply.of(501, "5.5.2", message))


def _decode(data: bytes, mechanism: str, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed(mechanism, f"{what} is not UTF-8") from None


def _decode_username(data: bytes, mechanism: str) -> str:
    return _check_username(_decode(data, mechanism, "username"), mechanism)


def _check_username(username: str, mechanism: str) -> str:
    if not username:
        raise _malformed(mechanism, "empty username")
    if "\r" in username or "\n" in username:
        raise _malformed(mechanism, "username contains CR or LF")
    return username


# --------------------------------------------------------------------------
# Client half


class ClientMechanism(Protocol):
    """The client side of one SASL exchange.

    The core calls ``initial_response()`` once, before any challenge, and
    sends its result (if not ``None``) on the AUTH line; then it calls
    ``respond`` with each decoded ``334`` challenge and sends the answer.
    """

    name: str

    def initial_response(self) -> bytes | None: ...

    def respond(self, challenge: bytes) -> bytes: ...


def plain_message(username: str, password: str, authzid: str = "") -> str:
    """RFC 4616 2's message: ``authzid NUL authcid NUL passwd``. The one
    spelling of it: ``Plain`` sends it as UTF-8, the smtplib drop-in's
    ``auth_plain`` hands it to smtplib's ``auth``, which sends it as ASCII."""
    return f"{authzid}\0{username}\0{password}"


def cram_md5_response(username: str, password: bytes, challenge: bytes) -> str:
    """RFC 2195 2's response: the username, a space, and the HMAC-MD5 of the
    challenge keyed with the password, in lower-case hex. The one spelling
    of it, for ``CramMD5`` and the smtplib drop-in's ``auth_cram_md5``."""
    return f"{username} {_hmac_md5_hex(password, challenge)}"


class Plain:
    """RFC 4616 PLAIN: ``authzid NUL username NUL password`` in one message."""

    name = "PLAIN"

    def __init__(self, username: str, password: str, authzid: str = "") -> None:
        _refuse_line_breaks(username, "username")
        _refuse_line_breaks(authzid, "authzid")
        for what, value in (("authzid", authzid), ("username", username), ("password", password)):
            if "\0" in value:
                raise LocalProtocolError(f"PLAIN {what} must not contain NUL")
        # RFC 4616 2: authcid and passwd are 1*SAFE.
        if not username:
            raise LocalProtocolError("PLAIN username must not be empty")
        if not password:
            raise LocalProtocolError("PLAIN password must not be empty")
        for what, value in (("authzid", authzid), ("username", username), ("password", password)):
            _encode(value, what)  # refused here, naming the part, if it cannot be sent
        self._message = plain_message(username, password, authzid).encode("utf-8")
        self._sent = False

    def __repr__(self) -> str:
        return "Plain(<credentials hidden>)"

    def initial_response(self) -> bytes:
        self._sent = True
        return self._message

    def respond(self, challenge: bytes) -> bytes:
        # RFC 4616 2: with no initial response the server sends an empty
        # challenge and the message follows. Anything after that is off-script.
        if self._sent:
            raise RemoteProtocolError("server sent a PLAIN challenge after the response")
        self._sent = True
        return self._message


class Login:
    """The non-standard but ubiquitous LOGIN mechanism.

    No initial response; the first challenge (normally ``Username:``) gets the
    username and the second (``Password:``) the password. Answers go by call
    count, never by challenge text, so servers that word the prompts
    differently (``User Name``, localised prompts, empty ones) still work.
    """

    name = "LOGIN"

    def __init__(self, username: str, password: str) -> None:
        _refuse_line_breaks(username, "username")
        if not username:
            raise LocalProtocolError("LOGIN username must not be empty")
        self._answers = (_encode(username, "username"), _encode(password, "password"))
        self._calls = 0

    def __repr__(self) -> str:
        return "Login(<credentials hidden>)"

    def initial_response(self) -> bytes | None:
        return None

    def respond(self, challenge: bytes) -> bytes:
        if self._calls >= len(self._answers):
            raise RemoteProtocolError("server sent a third LOGIN challenge")
        answer = self._answers[self._calls]
        self._calls += 1
        return answer


class CramMD5:
    """RFC 2195 CRAM-MD5: answer the server's challenge with an HMAC-MD5.

    The response is ``username SP hex(hmac_md5(password, challenge))``. The
    password never crosses the wire, but the server must know it in clear.
    """

    name = "CRAM-MD5"

    def __init__(self, username: str, password: str) -> None:
        _refuse_line_breaks(username, "username")
        if not username:
            raise LocalProtocolError("CRAM-MD5 username must not be empty")
        _encode(username, "username")
        self._username = username
        self._password = _encode(password, "password")
        self._done = False

    def __repr__(self) -> str:
        return "CramMD5(<credentials hidden>)"

    def initial_response(self) -> bytes | None:
        return None

    def respond(self, challenge: bytes) -> bytes:
        if self._done:
            raise RemoteProtocolError("server sent a second CRAM-MD5 challenge")
        if not challenge:
            # An empty challenge makes every response replayable.
            raise RemoteProtocolError("server sent an empty CRAM-MD5 challenge")
        self._done = True
        return cram_md5_response(self._username, self._password, challenge).encode("utf-8")


def _check_xoauth2_token(token: str) -> None:
    if not token:
        raise LocalProtocolError("XOAUTH2 token must not be empty")
    if "\x01" in token or "\r" in token or "\n" in token:
        raise LocalProtocolError("XOAUTH2 token must not contain SOH, CR or LF")


class XOAuth2:
    """Google's and Microsoft's XOAUTH2: an OAuth 2.0 bearer token.

    The message is ``user=<user> SOH auth=Bearer <token> SOH SOH``. ``token``
    may be a callable; it is called each time the message is built, so a
    fresh token is fetched right before it is sent. When the token is refused
    the server sends a ``334`` challenge holding a JSON error; as Google
    documents, the client answers it with an empty response (the server then
    sends the final 5xx). The JSON is kept in ``error``.
    """

    name = "XOAUTH2"

    def __init__(self, username: str, token: str | Callable[[], str]) -> None:
        _refuse_line_breaks(username, "username")
        if "\x01" in username:
            raise LocalProtocolError("XOAUTH2 username must not contain SOH")
        if not username:
            raise LocalProtocolError("XOAUTH2 username must not be empty")
        if isinstance(token, str):
            _check_xoauth2_token(token)
        self._username = username
        self._token = token
        self._sent = False
        self._acknowledged = False
        self.error: bytes | None = None

    def __repr__(self) -> str:
        return "XOAuth2(<credentials hidden>)"

    def _message(self) -> bytes:
        token = self._token if isinstance(self._token, str) else self._token()
        _check_xoauth2_token(token)
        text = f"user={self._username}\x01auth=Bearer {token}\x01\x01"
        return _encode(text, "XOAUTH2 credentials")

    def initial_response(self) -> bytes:
        message = self._message()
        self._sent = True
        return message

    def respond(self, challenge: bytes) -> bytes:
        if not self._sent:
            message = self._message()
            self._sent = True
            return message
        if not self._acknowledged:
            self._acknowledged = True
            self.error = challenge
            return b""
        raise RemoteProtocolError("server sent another XOAUTH2 challenge after the error")


_PASSWORD_MECHANISMS: dict[str, Callable[[str, str], ClientMechanism]] = {
    "CRAM-MD5": CramMD5,
    "PLAIN": Plain,
    "LOGIN": Login,
}


def choose_mechanism(
    advertised: Iterable[str],
    username: str,
    password: str | None = None,
    *,
    token: str | Callable[[], str] | None = None,
    preference: Sequence[str] = ("CRAM-MD5", "PLAIN", "LOGIN"),
) -> ClientMechanism:
    """Pick the mechanism to use against a server's advertised AUTH list.

    With a ``token``, XOAUTH2 comes first (if advertised); with a
    ``password``, the first name in ``preference`` the server offers. Names
    compare case-insensitively. Raises ``AuthenticationError`` (504 5.5.4)
    when nothing matches, and ``LocalProtocolError`` when given neither a
    password nor a token or an unknown name in ``preference``.
    """
    if password is None and token is None:
        raise LocalProtocolError("choose_mechanism needs a password or a token")
    names = advertised.split() if isinstance(advertised, str) else advertised
    offered = list(dict.fromkeys(name.strip().upper() for name in names if name.strip()))

    if token is not None and "XOAUTH2" in offered:
        return XOAuth2(username, token)
    supported = ["XOAUTH2"] if token is not None else []
    if password is not None:
        for name in preference:
            key = name.strip().upper()
            if key == "XOAUTH2":
                continue  # needs a token; handled above
            factory = _PASSWORD_MECHANISMS.get(key)
            if factory is None:
                raise LocalProtocolError(f"unsupported SASL mechanism in preference: {name!r}")
            if key in offered:
                return factory(username, password)
            if key not in supported:
                supported.append(key)
    raise AuthenticationError(
        504,
        "5.5.4",
        f"no common AUTH mechanism: server offers {' '.join(offered) or 'none'},"
        f" we support {' '.join(supported) or 'none'}",
    )


# --------------------------------------------------------------------------
# Server half


@dataclass(frozen=True, slots=True)
class Challenge:
    """A challenge to send as ``334 <base64(data)>``."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a client presented; the backend decides whether it is good.

    ``password`` is set for PLAIN and LOGIN, ``token`` for XOAUTH2,
    ``cram_challenge``/``cram_digest`` for CRAM-MD5. Secrets stay out of
    ``repr``.
    """

    mechanism: str
    authzid: str
    username: str
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    cram_challenge: bytes | None = None
    cram_digest: str | None = field(default=None, repr=False)

    def check_password(self, password: str) -> bool:
        """Whether ``password`` is the one the client proved knowing.

        Constant-time compared. Always false for token credentials.
        """
        secret = password.encode("utf-8", "surrogatepass")
        if self.mechanism == "CRAM-MD5":
            if self.cram_challenge is None or self.cram_digest is None:
                return False
            expected = _hmac_md5_hex(secret, self.cram_challenge)
            return hmac.compare_digest(expected.encode("ascii"), self.cram_digest.encode("utf-8"))
        if self.password is None:
            return False
        return hmac.compare_digest(secret, self.password.encode("utf-8", "surrogatepass"))


class ServerMechanism(Protocol):
    """The server side of one SASL exchange.

    ``step(None)`` starts it when the AUTH command carried no initial
    response; ``step(data)`` feeds a decoded client line (the initial
    response included). The result is the next challenge or, at the end, the
    credentials.
    """

    name: str

    def step(self, response: bytes | None) -> Challenge | Credentials: ...


def _refuse_restart(mechanism: str) -> LocalProtocolError:
    return LocalProtocolError(f"step(None) only starts a {mechanism} exchange")


class _OneMessage:
    """A server mechanism whose client sends one message, as the initial
    response or after an empty challenge: PLAIN and XOAUTH2."""

    name = ""

    def __init__(self) -> None:
        self._started = False
        self._done = False

    def step(self, response: bytes | None) -> Challenge | Credentials:
        if response is None:
            if self._started or self._done:
                raise _refuse_restart(self.name)
            self._started = True
            return Challenge(b"")
        if self._done:
            raise _too_many_steps(self.name)
        self._started = self._done = True
        return self._parse(response)

    def _parse(self, message: bytes) -> Credentials:
        raise NotImplementedError


class ServerPlain(_OneMessage):
    """RFC 4616 PLAIN, server side: one message, ``authzid NUL user NUL pass``."""

    name = "PLAIN"

    def _parse(self, message: bytes) -> Credentials:
        parts = message.split(b"\0")
        if len(parts) != 3:
            raise _malformed(self.name, "expected authzid NUL username NUL password")
        authzid = _decode(parts[0], self.name, "authzid")
        if "\r" in authzid or "\n" in authzid:
            raise _malformed(self.name, "authzid contains CR or LF")
        username = _decode_username(parts[1], self.name)
        password = _decode(parts[2], self.name, "password")
        if not password:
            raise _malformed(self.name, "empty password")
        return Credentials(self.name, authzid, username, password=password)


class ServerLogin:
    """LOGIN, server side: prompts ``Username:`` then ``Password:``.

    A client may put the username in the initial response (``AUTH LOGIN
    <user>``); the exchange then starts at the password prompt.
    """

    name = "LOGIN"

    def __init__(self) -> None:
        self._started = False
        self._username: str | None = None
        self._done = False

    def step(self, response: bytes | None) -> Challenge | Credentials:
        if response is None:
            if self._started:
                raise _refuse_restart(self.name)
            self._started = True
            return Challenge(b"Username:")
        if self._done:
            raise _too_many_steps(self.name)
        self._started = True
        if self._username is None:
            self._username = _decode_username(response, self.name)
            return Challenge(b"Password:")
        self._done = True
        password = _decode(response, self.name, "password")
        return Credentials(self.name, "", self._username, password=password)


class ServerCramMD5:
    """RFC 2195 CRAM-MD5, server side.

    The challenge is ``<random.random@hostname>`` from ``secrets`` (about 96
    random bits); pass ``challenge`` only to reproduce a known exchange.
    """

    name = "CRAM-MD5"

    def __init__(self, hostname: str, *, challenge: bytes | None = None) -> None:
        if challenge is None:
            text = f"<{secrets.randbits(64)}.{secrets.randbits(32)}@{hostname}>"
            challenge = _encode(text, "hostname")
        if not challenge:
            raise LocalProtocolError("CRAM-MD5 challenge must not be empty")
        self._challenge = challenge
        self._started = False
        self._done = False

    def step(self, response: bytes | None) -> Challenge | Credentials:
        if response is None:
            if self._started:
                raise _refuse_restart(self.name)
            self._started = True
            return Challenge(self._challenge)
        if self._done:
            raise _too_many_steps(self.name)
        if not self._started:
            self._done = True
            raise _malformed(self.name, "CRAM-MD5 takes no initial response")
        self._done = True
        text = _decode(response, self.name, "response")
        user, space, digest = text.rpartition(" ")
        if not space:
            raise _malformed(self.name, "expected username SP digest")
        username = _check_username(user, self.name)
        if len(digest) != 32 or any(c not in string.hexdigits for c in digest):
            raise _malformed(self.name, "digest is not 32 hex digits")
        return Credentials(
            self.name, "", username, cram_challenge=self._challenge, cram_digest=digest.lower()
        )


class ServerXOAuth2(_OneMessage):
    """XOAUTH2, server side: parses ``user=... SOH auth=Bearer ... SOH SOH``.

    Keys other than ``user`` and ``auth`` are ignored. Refusing a token is the
    backend's call; answering with a final 535 is enough for clients.
    """

    name = "XOAUTH2"

    def _parse(self, message: bytes) -> Credentials:
        if not message.endswith(b"\x01\x01"):
            raise _malformed(self.name, "message does not end with SOH SOH")
        text = _decode(message[:-2], self.name, "message")
        fields: dict[str, str] = {}
        for pair in text.split("\x01"):
            key, equals, value = pair.partition("=")
            if not equals or not key:
                raise _malformed(self.name, "expected key=value pairs")
            if key in fields:
                raise _malformed(self.name, f"duplicate key {key!r}")
            fields[key] = value
        if "user" not in fields or "auth" not in fields:
            raise _malformed(self.name, "user and auth are required")
        scheme, _, token = fields["auth"].partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise _malformed(self.name, "auth must be 'Bearer <token>'")
        username = _check_username(fields["user"], self.name)
        return Credentials(self.name, "", username, token=token)


def _plain(hostname: str) -> ServerMechanism:
    return ServerPlain()


def _login(hostname: str) -> ServerMechanism:
    return ServerLogin()


def _cram_md5(hostname: str) -> ServerMechanism:
    return ServerCramMD5(hostname)


def _xoauth2(hostname: str) -> ServerMechanism:
    return ServerXOAuth2()


SERVER_MECHANISMS: dict[str, Callable[[str], ServerMechanism]] = {
    "PLAIN": _plain,
    "LOGIN": _login,
    "CRAM-MD5": _cram_md5,
    "XOAUTH2": _xoauth2,
}
"""Server halves by upper-case mechanism name; each factory takes the hostname."""


def server_mechanism(name: str, hostname: str) -> ServerMechanism | None:
    """A fresh server half for ``name`` (any case), or ``None`` if unknown."""
    factory = SERVER_MECHANISMS.get(name.strip().upper())
    return None if factory is None else factory(hostname)
