"""``POST /api/v1/message/{ID}/release``: a caught message sent on to a second, real server.

The relay is a mailwire server in a thread (``ServerThread``), with STARTTLS
or implicit TLS on a certificate of a CA made here (trustme), trusted by the
release only when given (``ssl_context``, what ``--release-ca`` builds).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import sys
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from mailwire.cli.serve_run import Users
from mailwire.inbox.release import ReleaseRelay
from mailwire.server.backends import Maildir
from mailwire.testing import ServerThread

from .conftest import Catching, mail, start_catching, stop_catching

_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:  # helpers/ (the trustme contexts) lives next to this directory
    sys.path.insert(0, _TESTS)

from helpers.certs import client_context, server_context  # noqa: E402
from helpers.smtp_sink import smtp_sink  # noqa: E402

RAW = (b"From: Alice <alice@example.com>\r\nTo: Bob <bob@example.org>\r\nBcc: hidden@example.net\r\n"
       b"Subject: Release me\r\nDate: Mon, 01 Jan 2024 10:00:00 +0000\r\nMessage-ID: <orig@example.com>\r\n"
       b"X-Mailwire-Envelope: {\"rcpt\":[\"sender-made@example.com\"]}\r\n"
       b"Content-Type: text/plain\r\n\r\nHello Bob,\r\n.leading dot\r\nbye\r\n")


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def relay_server(ca: trustme.CA) -> Iterator[ServerThread]:
    with ServerThread(tls_context=server_context(ca)) as server:
        yield server


@pytest.fixture
def make_catcher(tmp_path: Path) -> Iterator[Any]:
    started: list[Catching] = []

    def make(relay: ReleaseRelay | None) -> Catching:
        catching = start_catching(tmp_path / f"mail{len(started)}", relay=relay)
        started.append(catching)
        return catching

    yield make
    for catching in started:
        stop_catching(catching)


def _relay(server: ServerThread, ca: trustme.CA | None, **kwargs: Any) -> ReleaseRelay:
    host, port = server.address
    return ReleaseRelay("localhost", port, ssl_context=client_context(ca) if ca is not None else None, **kwargs)


def _released(catcher: Catching, to: list[str], message_id: str = "latest") -> Any:
    return catcher.request("POST", f"/api/v1/message/{message_id}/release", body={"To": to})


def _without(content: bytes, *names: bytes) -> bytes:
    """``content`` without the header lines starting with ``names``."""
    head, sep, body = content.partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(names)]
    return b"\r\n".join(lines) + sep + body


def test_release_over_starttls_with_the_private_ca_delivers_the_message(
        make_catcher: Any, relay_server: ServerThread, ca: trustme.CA) -> None:
    catcher = make_catcher(_relay(relay_server, ca))
    catcher.send(RAW)
    reply = _released(catcher, ["carol@example.net", "Dave <dave@example.net>"])
    assert (reply.status, reply.body) == (200, b"ok") and reply.headers["Content-Type"].startswith("text/plain")
    [envelope] = relay_server.wait_for(1)
    assert envelope.mail_from == "alice@example.com"
    assert envelope.rcpt_to == ["carol@example.net", "dave@example.net"]
    assert envelope.session is not None and envelope.session.tls is not None
    delivered = envelope.content
    # Mailpit's changes and no others: Bcc gone, a new Date and Message-ID, every other byte as caught.
    assert _without(delivered, b"date:", b"message-id:") == _without(RAW, b"bcc:", b"date:", b"message-id:")
    assert b"\r\nDate: " in delivered and b"Mon, 01 Jan 2024" not in delivered
    assert re.search(rb"\r\nMessage-ID: <[0-9a-f]{32}@mailwire>\r\n", delivered)
    assert b"Return-Path" not in delivered and b"sender-made" in delivered  # the sender's header is theirs
    # The message stays caught.
    assert catcher.get("/api/v1/messages").json()["total"] == 1


def test_preserve_message_ids_and_return_path(make_catcher: Any, relay_server: ServerThread,
                                              ca: trustme.CA) -> None:
    catcher = make_catcher(_relay(relay_server, ca, preserve_message_ids=True, return_path="bounces@example.com"))
    catcher.send(RAW)
    assert _released(catcher, ["carol@example.net"]).status == 200
    [envelope] = relay_server.wait_for(1)
    assert envelope.mail_from == "bounces@example.com"
    assert b"\r\nMessage-ID: <orig@example.com>\r\n" in envelope.content
    assert _without(envelope.content, b"date:") == _without(RAW, b"bcc:", b"date:")


def test_an_unverifiable_certificate_is_refused_and_nothing_is_sent(
        make_catcher: Any, relay_server: ServerThread) -> None:
    catcher = make_catcher(_relay(relay_server, None))  # the system's trust: not the test CA
    catcher.send(RAW)
    reply = _released(catcher, ["carol@example.net"])
    assert reply.status == 502
    error = reply.json()["Error"]
    assert "certificate" in error and "--release-ca" in error, error
    assert len(relay_server.messages) == 0


def test_a_relay_without_starttls_or_not_there_is_a_clear_502(make_catcher: Any, ca: trustme.CA) -> None:
    with ServerThread() as plain:
        catcher = make_catcher(_relay(plain, ca))
        catcher.send(RAW)
        reply = _released(catcher, ["carol@example.net"])
        assert reply.status == 502 and "STARTTLS" in reply.json()["Error"], reply.json()
        assert len(plain.messages) == 0
        port = plain.address[1]
    gone = make_catcher(ReleaseRelay("127.0.0.1", port, tls="none"))  # the server stopped: nothing listens
    gone.send(RAW)
    reply = _released(gone, ["carol@example.net"])
    assert reply.status == 502 and f"cannot release to 127.0.0.1:{port}: upstream unreachable" in reply.json()["Error"]


def test_implicit_tls(make_catcher: Any, ca: trustme.CA) -> None:
    with ServerThread(tls_context=server_context(ca), implicit_tls=True) as server:
        catcher = make_catcher(_relay(server, ca, tls="implicit"))
        catcher.send(mail("Implicit"))
        assert _released(catcher, ["carol@example.net"]).status == 200
        [envelope] = server.wait_for(1)
        assert envelope.session is not None and envelope.session.tls is not None
        assert envelope.session.tls.implicit and b"Subject: Implicit" in envelope.content


def test_auth_to_the_relay(make_catcher: Any, ca: trustme.CA) -> None:
    with ServerThread(tls_context=server_context(ca), authenticator=Users({"relay": "s3cret"}),
                      require_auth=True) as server:
        catcher = make_catcher(_relay(server, ca, auth=("relay", "s3cret")))
        catcher.send(mail("Authenticated"))
        assert _released(catcher, ["carol@example.net"]).status == 200
        [envelope] = server.wait_for(1)
        assert envelope.session is not None and envelope.session.auth_identity == "relay"

        wrong = make_catcher(_relay(server, ca, auth=("relay", "wrong")))
        wrong.send(mail("Refused"))
        reply = _released(wrong, ["carol@example.net"])
        assert reply.status == 502 and "535" in reply.json()["Error"], reply.json()
        assert len(server.messages) == 1


def test_the_relay_refusing_a_recipient_says_what_it_answered(make_catcher: Any, ca: trustme.CA) -> None:
    from mailwire.errors import SMTPError
    from mailwire.server.envelope import Envelope

    def refuse_data(envelope: Envelope) -> None:
        raise SMTPError(554, "5.7.1", "no thanks")

    with ServerThread(refuse_data, tls_context=server_context(ca)) as server:
        catcher = make_catcher(_relay(server, ca))
        catcher.send(mail("Refused"))
        reply = _released(catcher, ["carol@example.net"])
        assert reply.status == 502
        assert reply.json()["Error"] == f"the relay localhost:{server.address[1]} refused the message: 554 5.7.1 no thanks"


def test_allowed_and_blocked_recipients(make_catcher: Any, relay_server: ServerThread, ca: trustme.CA) -> None:
    catcher = make_catcher(_relay(relay_server, ca, allowed_recipients=re.compile(r"@example\.net$", re.I),
                                  blocked_recipients=re.compile(r"^blocked@", re.I)))
    catcher.send(RAW)
    reply = _released(catcher, ["ok@EXAMPLE.net", "eve@evil.test"])
    assert reply.status == 400 and "eve@evil.test" in reply.json()["Error"]
    assert "ok@EXAMPLE.net" not in reply.json()["Error"]
    reply = _released(catcher, ["blocked@example.net"])
    assert reply.status == 400 and "blocked@example.net" in reply.json()["Error"]
    assert len(relay_server.messages) == 0
    assert _released(catcher, ["ok@example.net"]).status == 200


def test_bad_requests(make_catcher: Any, relay_server: ServerThread, ca: trustme.CA) -> None:
    catcher = make_catcher(_relay(relay_server, ca))
    catcher.send(RAW)
    message_id = catcher.get("/api/v1/messages").json()["messages"][0]["ID"]
    path = f"/api/v1/message/{message_id}/release"
    assert _released(catcher, ["carol@example.net"], "nosuchid").status == 404
    assert catcher.request("POST", path, raw=b"{not json").status == 400
    for body in ({}, {"To": []}, {"To": "carol@example.net"}, {"To": [1]}, ["carol@example.net"]):
        reply = catcher.request("POST", path, body=body)
        assert reply.status == 400 and ("To" in reply.json()["Error"] or "object" in reply.json()["Error"]), body
    for bad in ("not an address", "a@b, c@d", "evil@example.com> NOTIFY=NEVER", "x@y\r\nRCPT TO:<z@w>"):
        reply = catcher.request("POST", path, body={"To": [bad]})
        assert reply.status == 400, (bad, reply.json())
    assert len(relay_server.messages) == 0


def test_without_a_relay_release_is_refused_and_webui_says_so(make_catcher: Any) -> None:
    catcher = make_catcher(None)
    catcher.send(RAW)
    reply = _released(catcher, ["carol@example.net"])
    assert reply.status == 400 and "--release-to" in reply.json()["Error"]
    assert _released(catcher, ["carol@example.net"], "nosuchid").status == 404
    assert catcher.get("/api/v1/webui").json()["MessageRelay"]["Enabled"] is False


def test_webui_shows_the_relay(make_catcher: Any, relay_server: ServerThread, ca: trustme.CA) -> None:
    relay = _relay(relay_server, ca, allowed_recipients=re.compile("@example.net$"), return_path="b@example.com")
    catcher = make_catcher(relay)
    shown = catcher.get("/api/v1/webui").json()["MessageRelay"]
    assert shown == {"Enabled": True, "SMTPServer": f"localhost:{relay.port}", "AllowedRecipients": "@example.net$",
                     "BlockedRecipients": "", "ReturnPath": "b@example.com", "OverrideFrom": "",
                     "PreserveMessageIDs": False}


def test_a_message_without_a_sender_needs_a_return_path(make_catcher: Any, relay_server: ServerThread,
                                                         ca: trustme.CA) -> None:
    catcher = make_catcher(_relay(relay_server, ca))
    catcher.send(b"Subject: nobody\r\n\r\nno From\r\n")
    reply = _released(catcher, ["carol@example.net"])
    assert reply.status == 400 and "From" in reply.json()["Error"]


def test_a_20_mb_message_is_released_without_loading_it_whole(make_catcher: Any, ca: trustme.CA,
                                                              tmp_path: Path) -> None:
    data = os.urandom(15 * 1024 * 1024)
    store = Maildir(tmp_path / "relayed")
    with ServerThread(store, tls_context=server_context(ca), record=False) as server:
        catcher = make_catcher(_relay(server, ca))
        catcher.send(mail("Big", attachments=(("big.bin", data, "application/octet-stream"),)))
        del data
        [stored] = list((Path(catcher.inbox.path) / "new").iterdir())
        original = stored.read_bytes()
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            reply = _released(catcher, ["carol@example.net"])
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert reply.status == 200, reply.body
        [relayed] = list((tmp_path / "relayed" / "new").iterdir())
        content = relayed.read_bytes().partition(b"\r\n")[2]  # the relay's Return-Path line
        original = original.partition(b"\r\n")[2].partition(b"\r\n")[2]  # the catcher's two trace lines
        assert len(content) > 20_000_000
        body = original.partition(b"\r\n\r\n")[2]
        assert hashlib.sha256(content.partition(b"\r\n\r\n")[2]).digest() == hashlib.sha256(body).digest()
        assert _without(content, b"date:", b"message-id:") == _without(original, b"date:", b"message-id:")
        # The catcher, its web API and the relay, all in this process: a few chunks, not 20 MB.
        assert peak < 8 * 1024 * 1024, peak


def test_release_to_postfix_smtp_sink(make_catcher: Any) -> None:
    """Another implementation as the relay: Postfix's smtp-sink (plaintext, on loopback: it has no TLS)."""
    dump_dir = Path(tempfile.mkdtemp(prefix="mw-"))  # in /tmp: smtp-sink runs as nobody
    dump_dir.chmod(0o755)
    try:
        with smtp_sink(dump_dir=dump_dir) as sink:
            catcher = make_catcher(ReleaseRelay(sink.host, sink.port, tls="none"))
            catcher.send(RAW)
            assert _released(catcher, ["carol@example.net"]).status == 200
            dumped = sink.dumped()
    finally:
        shutil.rmtree(dump_dir, ignore_errors=True)
    assert "X-Mail-Args: <alice@example.com>" in dumped and "X-Rcpt-Args: <carol@example.net>\n" in dumped, dumped
    assert "Subject: Release me" in dumped and "Hello Bob," in dumped and "hidden@example.net" not in dumped
    assert ".leading dot" in dumped and "..leading dot" not in dumped  # dot-stuffed on the wire, and back


def test_release_speaks_mailpits_description() -> None:
    from .test_swagger import SWAGGER, _spec

    if SWAGGER is None:
        pytest.skip("Mailpit's swagger.json is not beside the repository")
    operation = _spec()["paths"]["/api/v1/message/{ID}/release"]["post"]
    body = next(p for p in operation["parameters"] if p["in"] == "body")
    assert body["schema"]["required"] == ["To"] and body["schema"]["properties"]["To"]["type"] == "array"
    assert operation["produces"] == ["text/plain"] and set(operation["responses"]) == {"200", "400", "404"}
