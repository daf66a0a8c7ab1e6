"""``mailwire serve`` as a user runs it (a subprocess on 127.0.0.1, or a Unix
socket for LMTP), storing in a Maildir.

mailwire's server offers CHUNKING, so mailwire's backend sends BDAT here,
whole messages back to back; Django's backend sends DATA. The Maildirs the
two fill from the same messages must hold the same bytes.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from django.core import mail

from mailwire import SMTPClient

from .support import BACKEND, DJANGO_BACKEND, MODES, QUIET, TIMEOUT, backend, mail_settings, maildir_messages, serve

pytestmark = [QUIET, pytest.mark.parametrize("mode", MODES)]
FIXED = {"Date": "Tue, 01 Dec 2026 10:00:00 +0000"}


def newsletter(count: int) -> list[mail.EmailMessage]:
    out = []
    for i in range(count):
        message = mail.EmailMultiAlternatives(
            f"Issue {i}", f"Hello reader {i}\n" + ".dotted line\n" * (i % 3) + "x" * (i * 97 % 900),
            "news@example.com", [f"reader{i}@example.com"], headers={**FIXED, "Message-ID": f"<{i}@example.com>"},
        )
        message.attach_alternative(f"<p>Hello reader {i}</p>", "text/html")
        if i % 5 == 0:
            message.attach(f"file{i}.bin", bytes(range(256)) * (i + 1), "application/octet-stream")
        out.append(message)
    return out


def test_bdat_into_a_maildir_stores_what_djangos_backend_stores(mode: str, tmp_path: Path) -> None:
    stored = {}
    for name in (DJANGO_BACKEND, BACKEND):
        maildir = tmp_path / name.split(".")[0]
        with serve("--maildir", str(maildir), cwd=tmp_path) as server:
            with SMTPClient("127.0.0.1", server.port, tls="none", timeout=TIMEOUT) as probe:
                assert probe.capabilities.chunking  # so mailwire's backend sends BDAT
            with mail_settings(mode, "127.0.0.1", server.port, backend=name):
                assert mail.get_connection().send_messages(newsletter(40)) == 40
        # MIME boundaries are random per message() call: compared made one.
        stored[name] = sorted(_one_boundary(m) for m in maildir_messages(maildir))
    assert len(stored[BACKEND]) == 40
    assert stored[BACKEND] == stored[DJANGO_BACKEND]


def _one_boundary(content: bytes) -> bytes:
    for boundary in set(re.findall(rb'boundary="([^"]+)"', content)):
        content = content.replace(boundary, b"BOUNDARY")
    return content


@pytest.mark.parametrize("asynchronous", [False, True])
def test_lmtp_over_a_unix_socket(mode: str, asynchronous: bool, short_tmp: Path) -> None:
    socket_path = short_tmp / "lmtp.sock"
    maildir = short_tmp / "mail"
    with serve("--lmtp", "--unix", str(socket_path), "--maildir", str(maildir), cwd=short_tmp):
        with mail_settings(mode, str(socket_path), 0, lmtp=True):
            connection = backend(mode)
            messages = newsletter(10)
            if asynchronous:
                sent = asyncio.run(asyncio.wait_for(connection.asend_messages(messages), TIMEOUT))
            else:
                sent = connection.send_messages(messages)
    assert sent == 10
    assert len(maildir_messages(maildir)) == 10
