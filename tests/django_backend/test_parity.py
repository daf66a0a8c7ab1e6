"""mailwire's backend and Django's own SMTP backend, side by side.

The same messages and the same mistakes go through Django's
``django.core.mail.backends.smtp.EmailBackend`` (smtplib) and through
``mailwire.django.EmailBackend`` to the same server; what the server received
(envelope and content, byte for byte), what ``send_messages`` returned, and
what it raised (type and arguments) must be the same. Where mailwire differs
on purpose (the rest of a list after a failure is sent; see the module's
docstring) the other tests say so.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from django.core import mail

from mailwire.testing import ServerThread, run_server

from .support import BACKEND, DJANGO_BACKEND, MODES, QUIET, RefusingBackend, mail_settings, unused_port

pytestmark = [QUIET, pytest.mark.parametrize("mode", MODES)]
FIXED = {"Date": "Tue, 01 Dec 2026 10:00:00 +0000", "Message-ID": "<fixed@example.com>"}


@pytest.fixture
def server() -> ServerThread:
    with run_server(RefusingBackend()) as running:
        yield running


def each_backend(mode: str, server: ServerThread, run: Callable[[], Any], **options: Any) -> dict[str, Any]:
    """``run()``'s result (or what it raised) and what the server received, per backend."""
    seen: dict[str, Any] = {}
    for name in (DJANGO_BACKEND, BACKEND):
        server.clear()
        with mail_settings(mode, *server.address, backend=name, **options):
            try:
                outcome: Any = ("returned", run())
            except Exception as err:  # compared below, type and arguments
                outcome = ("raised", type(err), err.args)
        received = [(e.mail_from, e.rcpt_to, _fixed_boundaries(e.content)) for e in server.messages.snapshot()]
        seen[name] = (outcome, received)
    return seen


def _fixed_boundaries(content: bytes) -> bytes:
    """The content with its MIME boundaries (random per ``message()`` call) made one."""
    for boundary in set(re.findall(rb'boundary="([^"]+)"', content)):
        content = content.replace(boundary, b"BOUNDARY")
    return content


def messages() -> list[mail.EmailMessage]:
    plain = mail.EmailMessage(
        "Caf\u00e9 \u2615", "Body with a\n.leading dot and caf\u00e9\n", "Jos\u00e9 <jose@example.com>",
        ["Bob <bob@b\u00fccher.example>", "carol@example.com"], cc=["dave@example.com"], bcc=["eve@example.com"],
        headers=FIXED,
    )
    alternatives = mail.EmailMultiAlternatives(
        "Alt", "text", "a@example.com", ["b@example.com"], headers=FIXED,
    )
    alternatives.attach_alternative("<p>html</p>", "text/html")
    alternatives.attach("blob.bin", bytes(range(256)), "application/octet-stream")
    return [plain, alternatives]


def test_the_server_receives_the_same_envelopes_and_bytes(mode: str, server: ServerThread) -> None:
    seen = each_backend(mode, server, lambda: mail.get_connection().send_messages(messages()))
    assert seen[DJANGO_BACKEND][0] == ("returned", 2)
    assert seen[BACKEND] == seen[DJANGO_BACKEND]
    received = seen[BACKEND][1]
    assert received[0][0] == "jose@example.com"
    assert received[0][1] == ["bob@xn--bcher-kva.example", "carol@example.com", "dave@example.com", "eve@example.com"]


@pytest.mark.parametrize("fail_silently", [False, True])
@pytest.mark.parametrize("case", ["every recipient", "sender", "content"])
def test_refusals_raise_the_same_exceptions(mode: str, server: ServerThread, case: str, fail_silently: bool) -> None:
    sender, body, recipients = {
        "every recipient": ("a@example.com", "x", ["nobody@example.com", "nobody2@example.com"]),
        "sender": ("banned@example.com", "x", ["b@example.com"]),
        "content": ("a@example.com", "REFUSE-ME", ["b@example.com"]),
    }[case]
    seen = each_backend(
        mode, server, lambda: mail.send_mail("S", body, sender, recipients, fail_silently=fail_silently),
    )
    assert seen[BACKEND] == seen[DJANGO_BACKEND]
    assert seen[BACKEND][0][0] == ("returned" if fail_silently else "raised")


def test_some_recipients_refused_counts_as_sent_in_both(mode: str, server: ServerThread) -> None:
    seen = each_backend(
        mode, server, lambda: mail.send_mail("S", "x", "a@example.com", ["b@example.com", "nobody@example.com"]),
    )
    assert seen[BACKEND][0] == seen[DJANGO_BACKEND][0] == ("returned", 1)
    assert [r[1] for r in seen[BACKEND][1]] == [r[1] for r in seen[DJANGO_BACKEND][1]] == [["b@example.com"]]


@pytest.mark.parametrize("fail_silently", [False, True])
def test_nobody_listening(mode: str, fail_silently: bool) -> None:
    outcomes = []
    with unused_port() as port:
        for name in (DJANGO_BACKEND, BACKEND):
            with mail_settings(mode, "127.0.0.1", port, backend=name):
                try:
                    outcomes.append(mail.send_mail("S", "x", "a@example.com", ["b@example.com"], fail_silently=fail_silently))
                except OSError as err:
                    outcomes.append(type(err))
    assert outcomes[0] == outcomes[1] == (0 if fail_silently else ConnectionRefusedError)


def test_use_tls_and_use_ssl_together_are_refused_alike(mode: str) -> None:
    errors = []
    for name in (DJANGO_BACKEND, BACKEND):
        with mail_settings(mode, "127.0.0.1", 25, backend=name, use_tls=True, use_ssl=True):
            with pytest.raises(Exception) as caught:
                mail.send_mail("S", "x", "a@example.com", ["b@example.com"])
        errors.append((type(caught.value), str(caught.value)))
    assert errors[0] == errors[1]
    assert errors[0][0] is (ValueError if mode == "settings" else mail.InvalidMailer)


def test_invalid_addresses_are_refused_alike(mode: str, server: ServerThread) -> None:
    bad = ["to@example.com\nBcc: injected@example.com", "two@example.com, three@example.com"]
    for address in bad:
        seen = each_backend(mode, server, lambda: mail.send_mail("S", "x", "a@example.com", [address]))
        assert seen[BACKEND] == seen[DJANGO_BACKEND]
        assert seen[BACKEND][0][0] == "raised" and seen[BACKEND][0][1] is ValueError
