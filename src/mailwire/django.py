"""A Django email backend on mailwire: ``EMAIL_BACKEND = "mailwire.django.EmailBackend"``.

Django's own SMTP backend calls ``smtplib``'s ``sendmail`` once per message:
four round trips a message (MAIL, RCPT, DATA, the content), one after
another. This backend hands the whole list of ``send_messages`` to
``SMTPClient.send_many`` on one connection: one round trip a message over
DATA, a window of messages a round trip over BDAT (CHUNKING). With
``pool_size`` above 1 the list is shared out over that many connections
(``SMTPPool``, on an event loop of the backend's own: no thread).

Everything else is meant to be Django's, so that swapping the setting changes
nothing but the speed and the safety. The settings (``EMAIL_HOST`` ...) and
the constructor's arguments (``host``, ``use_tls`` ...; on Django 6.1 the
same names in a ``MAILERS`` entry's ``OPTIONS``) mean what they mean to
Django's backend, with its defaults and its errors for contradictions. The
envelope is made by Django's own address rules (``prep_address`` on 6.x,
``sanitize_address`` and smtplib's ``quoteaddr`` on 5.2) and the content is
the bytes Django's backend would send. ``send_messages`` returns the count
of messages sent; refusals are the standard library's ``smtplib`` exceptions
(a program's ``except smtplib.SMTPException`` keeps working), raised where
Django's would be: every recipient refused is ``SMTPRecipientsRefused``,
some refused is a message sent (logged here, silent in Django), and
``fail_silently`` swallows exactly what Django's swallows.

On purpose it differs where Django's backend is unsafe or unbounded:
certificates are always verified (also with ``EMAIL_SSL_CERTFILE``, where
Django's context trusts no CA), credentials never cross a plaintext
connection unless ``allow_plaintext_auth``, ``EMAIL_TIMEOUT = None`` means
mailwire's 60 s deadline per reply rather than none, and a whole list is
sent before the first failure in it is raised (Django stops at it).

Django 6.1 has no asynchronous mail API (no ``asend_mail`` or
``asend_messages`` in ``django.core.mail``); for async code this backend
adds ``asend_messages``, ``aopen``, ``aclose`` and ``async with``, served by
an ``SMTPPool`` (or an ``AsyncLMTPClient``) on the caller's event loop.

This is the only mailwire module that imports Django.
"""

from __future__ import annotations

import asyncio
import email.policy
import logging
import smtplib
import ssl
import threading
from collections.abc import Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any

from django.conf import settings  # type: ignore[import-untyped]
from django.core.exceptions import ImproperlyConfigured  # type: ignore[import-untyped]
from django.core.mail.backends.base import BaseEmailBackend  # type: ignore[import-untyped]
from django.core.mail.backends.smtp import EmailBackend as DjangoSMTPBackend  # type: ignore[import-untyped]
from django.core.mail.utils import DNS_NAME  # type: ignore[import-untyped]

from . import AsyncLMTPClient, LMTPClient, MailwireError, SendResult, SMTPClient, SMTPPool
from .django_sending import (
    Item, LoopPool, Outcome, addr_spec, asend_many, close_sender, pool_send, send_many, smtplib_error,
)

__all__ = ["EmailBackend"]

log = logging.getLogger("mailwire.django")

TLS_MODES = ("starttls", "opportunistic", "implicit", "none")
# Settings-mode defaults for mailwire's own options (Django 5.2, or 6.x without MAILERS).
OPTIONS_SETTING = "MAILWIRE_EMAIL_OPTIONS"
EXTRA_OPTIONS = frozenset({
    "tls", "pool_size", "lmtp", "ssl_context", "ssl_cafile", "allow_plaintext_auth", "local_hostname",
})
# Django 6.x builds the envelope with its backend's prep_address; 5.2 with sanitize_address.
_PREP_ADDRESS = getattr(DjangoSMTPBackend, "prep_address", None)


class EmailBackend(BaseEmailBackend):  # type: ignore[misc]  # Django ships no types
    """Django's SMTP backend contract, sent pipelined (see the module docstring).

    The ten parameters are Django's SMTP backend's, in its order, with its
    meanings; mailwire's own come as further keyword arguments (or in a
    ``MAILERS`` entry's ``OPTIONS``, or, without ``MAILERS``, in the
    ``MAILWIRE_EMAIL_OPTIONS`` setting), each checked here:

    - ``tls``: ``"starttls"`` (required, what ``use_tls`` means),
      ``"implicit"`` (``use_ssl``), ``"opportunistic"`` (STARTTLS when the
      server offers it, still verified) or ``"none"`` (the default when
      neither ``use_tls`` nor ``use_ssl`` is set, as in Django).
    - ``pool_size``: connections a list is shared out over (default 1).
    - ``lmtp``: speak LMTP (RFC 2033); ``host`` may be a Unix socket path.
    - ``ssl_context`` / ``ssl_cafile``: the TLS context to use, or a CA file
      to trust besides the system's (a private CA).
    - ``allow_plaintext_auth``: send credentials without TLS (Django does).
    - ``local_hostname``: the EHLO name (default: Django's ``DNS_NAME``).
    """

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        username: str | None = None,
        password: str | None = None,
        use_tls: bool | None = None,
        fail_silently: bool = False,
        use_ssl: bool | None = None,
        timeout: float | None = None,
        ssl_keyfile: str | None = None,
        ssl_certfile: str | None = None,
        **kwargs: Any,
    ) -> None:
        alias = kwargs.get("alias")
        extra = {name: kwargs.pop(name) for name in EXTRA_OPTIONS & set(kwargs)}
        # Django 6.1's base reports unknown OPTIONS of a MAILERS entry (and
        # takes ``alias``); 5.2's ignores what it does not know, as its
        # SMTP backend does.
        super().__init__(**kwargs)
        self.fail_silently = fail_silently
        self.connection: SMTPClient | None = None
        self._lock = threading.RLock()
        self._pool: LoopPool | None = None  # pool_size > 1, opened by open()
        self._async: SMTPPool | AsyncLMTPClient | None = None  # opened by aopen()
        if alias is None:
            self._from_settings(host, port, username, password, use_tls, use_ssl, timeout, ssl_keyfile, ssl_certfile)
            extra = {**_settings_options(), **extra}
        else:
            self._from_options(alias, host, port, username, password, use_tls, use_ssl, timeout,
                               ssl_keyfile, ssl_certfile)
        self._extra_options(**extra)

    # -- what the settings mean ------------------------------------------------------

    def _from_settings(
        self, host: str | None, port: int | None, username: str | None, password: str | None,
        use_tls: bool | None, use_ssl: bool | None, timeout: float | None, ssl_keyfile: str | None,
        ssl_certfile: str | None,
    ) -> None:
        """Django's EMAIL_* settings fill what the arguments leave out, exactly
        as in its SMTP backend (``or`` for host and port, ``is None`` for the rest)."""
        self.host = host or settings.EMAIL_HOST
        self.port = port or settings.EMAIL_PORT
        self.username = settings.EMAIL_HOST_USER if username is None else username
        self.password = settings.EMAIL_HOST_PASSWORD if password is None else password
        self.use_tls = settings.EMAIL_USE_TLS if use_tls is None else use_tls
        self.use_ssl = settings.EMAIL_USE_SSL if use_ssl is None else use_ssl
        self.timeout = settings.EMAIL_TIMEOUT if timeout is None else timeout
        self.ssl_keyfile = settings.EMAIL_SSL_KEYFILE if ssl_keyfile is None else ssl_keyfile
        self.ssl_certfile = settings.EMAIL_SSL_CERTFILE if ssl_certfile is None else ssl_certfile
        if self.use_ssl and self.use_tls:
            raise ValueError(
                "EMAIL_USE_TLS/EMAIL_USE_SSL are mutually exclusive, so only set "
                "one of those settings to True."
            )

    def _from_options(
        self, alias: str, host: str | None, port: int | None, username: str | None, password: str | None,
        use_tls: bool | None, use_ssl: bool | None, timeout: float | None, ssl_keyfile: str | None,
        ssl_certfile: str | None,
    ) -> None:
        """A Django 6.1 MAILERS entry: OPTIONS only, never the EMAIL_* settings
        (Django refuses to read them once MAILERS is defined), and Django's
        InvalidMailer for what its own backend would refuse."""
        from django.core.mail import InvalidMailer  # type: ignore[import-untyped]  # 6.1+

        self.host, self.port = host, port
        self.username, self.password = username, password
        self.use_tls, self.use_ssl = bool(use_tls), bool(use_ssl)
        self.timeout = timeout
        self.ssl_keyfile, self.ssl_certfile = ssl_keyfile, ssl_certfile
        if self.host is None:
            raise InvalidMailer("OPTIONS must define 'host'.", alias=alias)
        if self.use_ssl and self.use_tls:
            raise InvalidMailer(
                "The 'use_ssl' and 'use_tls' OPTIONS are incompatible. Set at most one of them to True.",
                alias=alias,
            )
        if self.port is None:
            self.port = 465 if self.use_ssl else 587 if self.use_tls else 25

    def _extra_options(
        self, tls: str | None = None, pool_size: int = 1, lmtp: bool = False,
        ssl_context: ssl.SSLContext | None = None, ssl_cafile: str | None = None,
        allow_plaintext_auth: bool = False, local_hostname: str | None = None,
    ) -> None:
        """mailwire's own options, each checked here: a contradiction is a
        ValueError at construction, never a surprise at the first send."""
        implied = "implicit" if self.use_ssl else "starttls" if self.use_tls else None
        if tls is not None and tls not in TLS_MODES:
            raise ValueError(f"tls must be one of {', '.join(TLS_MODES)}, not {tls!r}")
        if tls is not None and implied is not None and tls != implied:
            raise ValueError(
                f"tls={tls!r} contradicts {'use_ssl' if self.use_ssl else 'use_tls'}=True "
                f"(which means tls={implied!r}); set one of them"
            )
        self.tls: str = tls or implied or "none"
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
            raise ValueError(f"pool_size must be a whole number of at least 1, not {pool_size!r}")
        if lmtp and pool_size > 1:
            raise ValueError("pooled LMTP is not offered: use pool_size=1 with lmtp=True")
        if ssl_context is not None and (ssl_cafile or self.ssl_certfile or self.ssl_keyfile):
            raise ValueError(
                "give ssl_context, or ssl_cafile/ssl_certfile/ssl_keyfile to build one; not both"
            )
        self.pool_size, self.lmtp = pool_size, bool(lmtp)
        self.ssl_cafile = ssl_cafile
        self.allow_plaintext_auth = bool(allow_plaintext_auth)
        self.local_hostname = local_hostname
        self._ssl_context = ssl_context

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """The context every TLS connection uses: the one given, or one that
        verifies against the system's CAs (plus ``ssl_cafile``) and presents
        ``ssl_certfile``/``ssl_keyfile`` as a client certificate. Django's
        builds a bare ``PROTOCOL_TLS_CLIENT`` context for a client
        certificate, which trusts no CA at all; this one still verifies."""
        if self._ssl_context is None:
            context = ssl.create_default_context(cafile=self.ssl_cafile)
            if self.ssl_certfile or self.ssl_keyfile:
                context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
            self._ssl_context = context
        return self._ssl_context

    def _client_settings(self) -> dict[str, Any]:
        """The keywords every mailwire client of this backend is made with."""
        auth = (str(self.username), str(self.password)) if self.username and self.password else None
        options: dict[str, Any] = {
            "tls": self.tls, "auth": auth, "allow_plaintext_auth": self.allow_plaintext_auth,
            # Django's backend says EHLO with its cached FQDN; so do we.
            "local_hostname": self.local_hostname or DNS_NAME.get_fqdn(),
        }
        if self.tls != "none":
            options["ssl_context"] = self.ssl_context
        if self.timeout is not None:  # else mailwire's deadline per reply (60 s), never none
            options["timeout"] = self.timeout
        return options

    def _port(self) -> int | None:
        return int(self.port) if self.port is not None else None

    # -- the blocking contract -------------------------------------------------------

    def open(self) -> bool | None:
        """Ensure a connection (or, with ``pool_size`` > 1, a pool whose first
        connection is up). True if one was opened, False if one was open
        already, None if opening failed and ``fail_silently`` hid why."""
        if self.connection is not None or self._pool is not None:
            return False
        try:
            if self.pool_size > 1:
                self._pool = LoopPool.open(self._open_pool)
            else:
                client_class = LMTPClient if self.lmtp else SMTPClient
                self.connection = client_class(self.host, self._port(), **self._client_settings())
        except (MailwireError, OSError, asyncio.TimeoutError) as err:
            error = smtplib_error(err, opening=True)
            # Django's open() hides OSError, which smtplib's exceptions are.
            if self.fail_silently and isinstance(error, OSError):
                return None
            if error is err:
                raise
            raise error from err
        return True

    def close(self) -> None:
        """QUIT and close; a connection the server already dropped is no error."""
        connection, self.connection = self.connection, None
        pool, self._pool = self._pool, None
        if connection is not None:
            connection.quit()
        if pool is not None:
            pool.close(self.timeout)

    def send_messages(self, email_messages: Sequence[Any]) -> int:
        """Send every message of the list in one pipelined run; the count sent.

        As in Django's backend: a message without recipients is skipped, a
        connection opened here is closed here (kept when ``open()`` or the
        ``with`` block opened it), and the first failure in the list is
        raised unless ``fail_silently``. Unlike it, the messages after that
        one have been sent too: the list went out in one run.
        """
        if not email_messages:
            return 0
        with self._lock:
            new_conn_created = self.open()
            if (self.connection is None and self._pool is None) or new_conn_created is None:
                return 0  # failed silently in open()
            try:
                invalid: list[ValueError] = []
                if self._pool is not None:
                    items, outcomes = self._pool.send(self._items(email_messages, invalid))
                else:
                    assert self.connection is not None
                    items = list(self._items(email_messages, invalid))
                    outcomes = send_many(self.connection, items)
                return self._tally(items, outcomes, invalid)
            finally:
                if new_conn_created:
                    self.close()

    # -- the asynchronous extension --------------------------------------------------

    async def aopen(self) -> bool | None:
        """``open()`` for async code: an ``SMTPPool`` of ``pool_size``
        connections (an ``AsyncLMTPClient`` for LMTP) on the running loop,
        its first connection opened now. Use it, ``asend_messages`` and
        ``aclose`` on one event loop."""
        if self._async is not None:
            return False
        sender = await self._open_async()
        if sender is None:
            return None
        if self._async is not None:  # another task opened one meanwhile: keep that
            await close_sender(sender, self.timeout)
            return False
        self._async = sender
        return True

    async def aclose(self) -> None:
        sender, self._async = self._async, None
        if sender is not None:
            await close_sender(sender, self.timeout)

    async def asend_messages(self, email_messages: Sequence[Any]) -> int:
        """``send_messages`` for async code, with the same answers. Without
        ``aopen`` (or ``async with``) it opens a pool of its own for this
        call, so concurrent calls never close each other's connections."""
        if not email_messages:
            return 0
        sender, owned = self._async, False
        if sender is None:
            sender, owned = await self._open_async(), True
            if sender is None:
                return 0  # failed silently
        try:
            invalid: list[ValueError] = []
            if isinstance(sender, SMTPPool):
                items, outcomes = await pool_send(sender, self._items(email_messages, invalid))
            else:
                items = list(self._items(email_messages, invalid))
                outcomes = await asend_many(sender, items)
            return self._tally(items, outcomes, invalid)
        finally:
            if owned:
                await close_sender(sender, self.timeout)

    async def _open_async(self) -> SMTPPool | AsyncLMTPClient | None:
        """A connected async sender; None if that failed and ``fail_silently``."""
        try:
            return await self._async_sender()
        except (MailwireError, OSError, asyncio.TimeoutError) as err:
            error = smtplib_error(err, opening=True)
            if self.fail_silently and isinstance(error, OSError):
                return None
            if error is err:
                raise
            raise error from err

    async def _open_pool(self) -> SMTPPool:
        pool = SMTPPool(self.host, self._port(), size=self.pool_size, **self._client_settings())
        try:
            await pool.connect()
        except BaseException:
            await pool.close()
            raise
        return pool

    async def _async_sender(self) -> SMTPPool | AsyncLMTPClient:
        if self.lmtp:
            client = AsyncLMTPClient(self.host, self._port(), **self._client_settings())
            await client.connect()
            return client
        return await self._open_pool()

    async def __aenter__(self) -> "EmailBackend":
        try:
            await self.aopen()
        except Exception:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- messages in, counts out -----------------------------------------------------

    def _items(self, email_messages: Iterable[Any], invalid: list[ValueError]) -> Iterator[Item]:
        """The wire form of each message, made as it is taken, up to the first
        Django refuses to address: that ValueError goes in ``invalid``, to be
        raised once those before it are sent, as in Django, where they went
        out one by one before it."""
        envelope: dict[tuple[str, str], str] = {}  # this list's addresses, made once each
        for message in email_messages:
            try:
                item = self._item(message, envelope)
            except ValueError as err:
                invalid.append(err)
                return
            if item is not None:
                yield item

    def _item(self, message: Any, envelope: dict[tuple[str, str], str]) -> Item | None:
        """What Django's SMTP backend's ``_send`` hands ``sendmail``; None
        for a message without recipients, which it skips."""
        recipients = message.recipients()
        if not recipients:
            return None
        # In Django's order (the addresses, then the message), so a message
        # wrong in both fails with the same error.
        encoding = "" if _PREP_ADDRESS is not None else message.encoding or settings.DEFAULT_CHARSET
        mail_from = self._address(message.from_email, encoding, envelope)
        rcpt_to = [self._address(address, encoding, envelope) for address in recipients]
        if _PREP_ADDRESS is not None:  # Django 6.x
            content = message.message(policy=email.policy.SMTP).as_bytes()
        else:  # Django 5.2
            content = message.message().as_bytes(linesep="\r\n")
        return Item(content, mail_from, rcpt_to)

    def _address(self, address: Any, encoding: str, envelope: dict[tuple[str, str], str]) -> str:
        """An envelope address by Django's rules: its backend's ``prep_address``
        on 6.x; on 5.2 ``sanitize_address`` and then smtplib's ``quoteaddr``,
        which its ``sendmail`` applies. A pure function of the address (and
        5.2's charset), remembered for the list: a newsletter's one sender is
        parsed once, not once a message (Django's parser is slow)."""
        key = (address, encoding) if isinstance(address, str) else None
        if key is not None and key in envelope:
            return envelope[key]
        if _PREP_ADDRESS is not None:
            made: str = _PREP_ADDRESS(self, address)
        else:
            from django.core.mail.message import sanitize_address  # type: ignore[import-untyped]

            made = addr_spec(sanitize_address(address, encoding))
        if key is not None:
            envelope[key] = made
        return made

    def _tally(self, items: list[Item], outcomes: Sequence[Outcome], invalid: list[ValueError]) -> int:
        """Count what was sent; raise the first failure as Django would."""
        sent = 0
        for item, outcome in zip(items, outcomes):
            if isinstance(outcome, SendResult):
                sent += 1
                if outcome.refused:
                    # smtplib returns these and Django drops them; a log line
                    # is the least a refused recipient deserves.
                    log.warning(
                        "message from %s sent, but refused for %s", item.mail_from,
                        "; ".join(f"{rcpt}: {reply}" for rcpt, reply in outcome.refused.items()),
                    )
                continue
            error = smtplib_error(outcome)
            if self.fail_silently and isinstance(error, smtplib.SMTPException):
                continue
            if error is outcome:
                raise error
            raise error from outcome
        if invalid:
            raise invalid[0]
        return sent


# -- Django's and smtplib's ways, mirrored -------------------------------------------------


def _settings_options() -> dict[str, Any]:
    """``MAILWIRE_EMAIL_OPTIONS``: mailwire's options where there is no
    MAILERS entry to hold them (Django 5.2's EMAIL_BACKEND takes no options)."""
    options = getattr(settings, OPTIONS_SETTING, None) or {}
    if not isinstance(options, dict):
        raise ImproperlyConfigured(f"{OPTIONS_SETTING} must be a dict, not {type(options).__name__}")
    unknown = set(options) - EXTRA_OPTIONS
    if unknown:
        raise ImproperlyConfigured(
            f"{OPTIONS_SETTING}: unknown options {', '.join(sorted(unknown))} "
            f"(known: {', '.join(sorted(EXTRA_OPTIONS))})"
        )
    return dict(options)


