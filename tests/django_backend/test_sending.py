"""Django's mail API through mailwire's backend, against mailwire's server.

A real Django (settings from ``conftest``/``support``) sends through
``mailwire.django.EmailBackend`` to ``mailwire.testing.run_server`` on
127.0.0.1, in both configuration modes: Django's EMAIL_* settings, and on
6.1 a MAILERS entry. What arrived is read back from the server: envelope
and content, parsed as a mail reader would.
"""

from __future__ import annotations

import logging
import smtplib

import pytest
from django.core import mail
from django.test.utils import override_settings

from mailwire.testing import ServerThread, run_server

from .support import MODES, QUIET, RefusingBackend, admins, backend, mail_settings, parse

pytestmark = [QUIET, pytest.mark.parametrize("mode", MODES)]


@pytest.fixture
def server() -> ServerThread:
    with run_server(RefusingBackend()) as running:
        yield running


def test_send_mail_with_html_alternative(mode: str, server: ServerThread) -> None:
    with mail_settings(mode, *server.address):
        sent = mail.send_mail(
            "Hello", "plain body\n.a dot line", "Alice <alice@example.com>", ["bob@example.com"],
            html_message="<p>html body</p>",
        )
    assert sent == 1
    [envelope] = server.wait_for(1)
    assert envelope.mail_from == "alice@example.com"  # the addr-spec, display name gone
    assert envelope.rcpt_to == ["bob@example.com"]
    message = parse(envelope.content)
    assert message["Subject"] == "Hello" and message["To"] == "bob@example.com"
    # Django 6 ends a text part with a newline; 5.2 did not.
    assert message.get_body(("plain",)).get_content().rstrip("\n") == "plain body\n.a dot line"
    assert message.get_body(("html",)).get_content().strip() == "<p>html body</p>"


def test_send_mass_mail_goes_out_on_one_connection(mode: str, server: ServerThread) -> None:
    datatuple = [(f"Message {i}", f"body {i}", "news@example.com", [f"reader{i}@example.com"]) for i in range(40)]
    with mail_settings(mode, *server.address):
        assert mail.send_mass_mail(datatuple) == 40
    envelopes = server.wait_for(40)
    assert [parse(e.content)["Subject"] for e in envelopes] == [f"Message {i}" for i in range(40)]
    assert [e.rcpt_to for e in envelopes] == [[f"reader{i}@example.com"] for i in range(40)]
    assert len({e.session.peer for e in envelopes if e.session}) == 1  # one connection


def test_email_message_with_attachments_cc_and_bcc(mode: str, server: ServerThread) -> None:
    pdf = bytes(range(256)) * 40  # binary: base64 on the wire
    message = mail.EmailMessage(
        "Report", "See attached.", "reports@example.com", ["to@example.com"],
        cc=["cc@example.com"], bcc=["hidden@example.com"], reply_to=["replies@example.com"],
        headers={"X-Campaign": "q3"},
    )
    message.attach("report.pdf", pdf, "application/pdf")
    message.attach("notes.txt", "caf\u00e9 notes\n", "text/plain")
    with mail_settings(mode, *server.address):
        assert message.send() == 1
    [envelope] = server.wait_for(1)
    assert envelope.rcpt_to == ["to@example.com", "cc@example.com", "hidden@example.com"]
    received = parse(envelope.content)
    assert "Bcc" not in received and b"hidden@example.com" not in envelope.content
    assert received["X-Campaign"] == "q3" and received["Reply-To"] == "replies@example.com"
    attachments = {part.get_filename(): part for part in received.iter_attachments()}
    assert attachments["report.pdf"].get_content() == pdf
    assert attachments["notes.txt"].get_content() == "caf\u00e9 notes\n"


def test_email_multi_alternatives(mode: str, server: ServerThread) -> None:
    message = mail.EmailMultiAlternatives("Alt", "text version", "a@example.com", ["b@example.com"])
    message.attach_alternative("<b>html version</b>", "text/html")
    message.attach("data.csv", "a,b\n1,2\n", "text/csv")
    with mail_settings(mode, *server.address):
        assert message.send() == 1
    received = parse(server.wait_for(1)[0].content)
    assert received.get_body(("html",)).get_content().strip() == "<b>html version</b>"
    assert received.get_body(("plain",)).get_content().strip() == "text version"
    [attachment] = received.iter_attachments()
    assert attachment.get_filename() == "data.csv"


def test_mail_admins(mode: str, server: ServerThread) -> None:
    with mail_settings(mode, *server.address), override_settings(
        ADMINS=admins("ops@example.com", "cto@example.com"), SERVER_EMAIL="django@example.com",
        EMAIL_SUBJECT_PREFIX="[site] ",
    ):
        mail.mail_admins("Server error", "Traceback ...", html_message="<pre>Traceback ...</pre>")
    [envelope] = server.wait_for(1)
    assert envelope.mail_from == "django@example.com"
    assert envelope.rcpt_to == ["ops@example.com", "cto@example.com"]
    assert parse(envelope.content)["Subject"] == "[site] Server error"


def test_a_message_without_recipients_is_skipped(mode: str, server: ServerThread) -> None:
    messages = [mail.EmailMessage("none", "x", "a@example.com", []), mail.EmailMessage("one", "x", "a@example.com", ["b@example.com"])]
    with mail_settings(mode, *server.address):
        assert backend(mode).send_messages(messages) == 1
        assert backend(mode).send_messages([]) == 0
    assert [parse(e.content)["Subject"] for e in server.wait_for(1)] == ["one"]


def test_some_recipients_refused_is_a_message_sent_and_a_log_line(
    mode: str, server: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "mailwire.django")
    with mail_settings(mode, *server.address):
        assert mail.send_mail("S", "B", "a@example.com", ["bob@example.com", "nobody@example.com"]) == 1
    [envelope] = server.wait_for(1)
    assert envelope.rcpt_to == ["bob@example.com"]
    assert "nobody@example.com: 550 5.1.1 No such user" in caplog.text


def test_every_recipient_refused_raises_smtp_recipients_refused(mode: str, server: ServerThread) -> None:
    with mail_settings(mode, *server.address):
        with pytest.raises(smtplib.SMTPRecipientsRefused) as caught:
            mail.send_mail("S", "B", "a@example.com", ["nobody@example.com", "nobody2@example.com"])
        assert mail.send_mail("S", "B", "a@example.com", ["nobody@example.com"], fail_silently=True) == 0
    assert caught.value.recipients == {
        "nobody@example.com": (550, b"5.1.1 No such user"), "nobody2@example.com": (550, b"5.1.1 No such user"),
    }
    assert server.messages == []


def test_a_refusal_mid_list_is_raised_after_the_list_went_out(mode: str, server: ServerThread) -> None:
    messages = [
        mail.EmailMessage(f"m{i}", "body", "a@example.com", [rcpt])
        for i, rcpt in enumerate(["one@example.com", "nobody@example.com", "two@example.com"])
    ]
    with mail_settings(mode, *server.address):
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            backend(mode).send_messages(messages)
        assert [parse(e.content)["Subject"] for e in server.wait_for(2)] == ["m0", "m2"]
        server.clear()
        assert backend(mode, fail_silently=True).send_messages(messages) == 2


def test_sender_and_content_refusals_are_smtplibs(mode: str, server: ServerThread) -> None:
    with mail_settings(mode, *server.address):
        with pytest.raises(smtplib.SMTPSenderRefused) as sender:
            mail.send_mail("S", "B", "banned@example.com", ["bob@example.com"])
        with pytest.raises(smtplib.SMTPDataError) as data:
            mail.send_mail("S", "REFUSE-ME", "a@example.com", ["bob@example.com"])
    assert (sender.value.smtp_code, sender.value.smtp_error, sender.value.sender) == (
        553, b"5.7.1 Sender not allowed", "banned@example.com",
    )
    assert (data.value.smtp_code, data.value.smtp_error) == (554, b"5.6.0 Content refused")


def test_open_keeps_one_connection_across_sends(mode: str, server: ServerThread) -> None:
    with mail_settings(mode, *server.address):
        connection = backend(mode)
        with connection:
            assert connection.connection is not None and connection.open() is False
            for i in range(3):
                assert connection.send_messages([mail.EmailMessage(f"m{i}", "b", "a@example.com", ["b@example.com"])]) == 1
        assert connection.connection is None
        connection.close()  # closing twice is harmless
    envelopes = server.wait_for(3)
    assert len({e.session.peer for e in envelopes if e.session}) == 1


def test_a_pool_shares_a_list_over_its_connections(mode: str, server: ServerThread) -> None:
    messages = [mail.EmailMessage(f"m{i}", "b", "a@example.com", [f"r{i}@example.com"]) for i in range(60)]
    with mail_settings(mode, *server.address, pool_size=3):
        connection = backend(mode)
        with connection:
            assert connection.send_messages(messages[:30]) == 30
            assert connection.send_messages(messages[30:]) == 30
    envelopes = server.wait_for(60)
    assert sorted(parse(e.content)["Subject"] for e in envelopes) == sorted(f"m{i}" for i in range(60))
    assert 1 <= len({e.session.peer for e in envelopes if e.session}) <= 3
