"""``wait_for`` on an in-process server (``ServerThread.mail``) and the plugin's fixtures.

Real servers on 127.0.0.1 and stdlib ``smtplib`` as the application; every
wait is bounded. The fixtures are used as a user meets them: in
``pytester`` runs of small test files, one of them under ``pytest -n 2``.
"""

from __future__ import annotations

import smtplib
import threading
from email.message import EmailMessage

import pytest

from mailwire.testing import CaughtMessage, ServerThread, run_server

pytest_plugins = ["pytester"]

TIMEOUT = 10.0


def mail(to: str = "bob@example.org", subject: str = "Welcome", text: str = "Hi",
         sender: str = "App <noreply@app.example>", attachment: bool = False) -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, to, subject
    message.set_content(text)
    if attachment:
        message.add_attachment(b"%PDF", maintype="application", subtype="pdf", filename="invoice.pdf")
    return message


def send(server: ServerThread, message: EmailMessage, rcpts: list[str] | None = None) -> None:
    with smtplib.SMTP(server.host, server.port, timeout=TIMEOUT) as client:
        client.send_message(message, to_addrs=rcpts)


def test_wait_for_by_recipient_sender_and_subject() -> None:
    with run_server() as server:
        send(server, mail("alice@example.org", "Reset your password", "Code 123456"))
        send(server, mail("bob@example.org", "Welcome, Bob", "Code 654321", sender="Other <team@other.example>"))
        assert server.mail.wait_for(to="alice@").subject == "Reset your password"
        assert server.mail.wait_for(to="BOB@EXAMPLE.ORG").code() == "654321"
        assert server.mail.wait_for(sender="team@other").to == ["bob@example.org"]
        assert server.mail.wait_for(sender="App <").subject == "Reset your password"  # the From's name
        assert server.mail.wait_for(subject="reset").code() == "123456"
        assert server.mail.wait_for().subject == "Welcome, Bob"  # any: the newest
        found = server.mail.wait_for(to="alice", subject="password", sender="noreply")
        assert isinstance(found, CaughtMessage) and found is server.mail.messages()[0]


def test_a_bcc_recipient_is_a_recipient() -> None:
    with run_server() as server:
        send(server, mail("list@example.org"), rcpts=["hidden@example.org"])
        assert server.mail.wait_for(to="hidden@example.org").to == ["hidden@example.org"]
        assert server.mail.wait_for(query="bcc:hidden").subject == "Welcome"
        with pytest.raises(AssertionError):
            server.mail.wait_for(query="to:hidden", timeout=0)  # to: is the To header, as Mailpit's


def test_wait_for_a_message_that_arrives_later() -> None:
    with run_server() as server:
        send(server, mail("early@example.org"))
        later = threading.Timer(0.3, send, (server, mail("late@example.org", "Your code", "It is 7391")))
        later.start()
        try:
            found = server.mail.wait_for(to="late@example.org", timeout=TIMEOUT)
        finally:
            later.join(TIMEOUT)
        assert found.code() == "7391"


def test_the_query_is_mailpits_syntax_answered_in_process() -> None:
    with run_server() as server:
        send(server, mail("a@example.org", "Invoice 42", "Please pay", attachment=True))
        send(server, mail("b@example.org", "Receipt", "Thanks for paying"))
        assert server.mail.wait_for(query="has:attachment").subject == "Invoice 42"
        assert server.mail.wait_for(query="-has:attachment").subject == "Receipt"
        assert server.mail.wait_for(query='subject:"invoice 42" from:noreply').to == ["a@example.org"]
        assert server.mail.wait_for(query="thanks").subject == "Receipt"  # free text: the body
        receipt = server.mail.wait_for(subject="Receipt")
        assert server.mail.wait_for(query=f"larger:{len(receipt.raw)}").subject == "Invoice 42"
        assert server.mail.wait_for(query=f"smaller:{len(receipt.raw) + 1} to:b@") is receipt
        with pytest.raises(ValueError, match=r"is:, tag: in 'is:unread tag:x' is answered by a catcher's store"):
            server.mail.wait_for(query="is:unread tag:x")
        with pytest.raises(ValueError, match="unclosed quote"):
            server.mail.wait_for(query='subject:"open')


def test_a_timeout_lists_what_did_arrive() -> None:
    with run_server() as server:
        with pytest.raises(AssertionError, match=r"^no message \(any message\) arrived within 0.2 s; "
                                                 r"no message arrived at all$"):
            server.mail.wait_for(timeout=0.2)
        send(server, mail("alice@example.org", "Welcome"))
        send(server, mail("bob@example.org", "Reset"))
        with pytest.raises(AssertionError) as failed:
            server.mail.wait_for(to="carol@example.org", subject="Reset", timeout=0.2)
        assert str(failed.value) == (
            "no message to='carol@example.org' subject='Reset' arrived within 0.2 s; 2 message(s) did:\n"
            "  from noreply@app.example to alice@example.org: 'Welcome'\n"
            "  from noreply@app.example to bob@example.org: 'Reset'"
        )


def test_messages_are_read_once_and_clear_forgets_them() -> None:
    with run_server() as server:
        send(server, mail())
        first = server.mail.wait_for()
        assert server.mail.messages() == [first] and server.mail.messages()[0] is first
        server.mail.clear()
        assert server.mail.messages() == [] and server.messages == []


# -- the fixtures ---------------------------------------------------------------------------

FIXTURES_USER = '''
import smtplib

seen = {}


def send(server, to, subject, text):
    with smtplib.SMTP(server.host, server.port, timeout=5) as client:
        client.sendmail("app@example.com", [to], f"To: {to}\\r\\nSubject: {subject}\\r\\n\\r\\n{text}\\r\\n".encode())


def test_sign_up(smtp_server, smtp_mail, mail_address):
    assert smtp_mail is smtp_server.mail
    send(smtp_server, mail_address, "Confirm", "Your code is 5521: https://app.example/confirm?c=5521")
    message = smtp_mail.wait_for(to=mail_address, timeout=5)
    assert message.code() == "5521" and message.link("confirm") == "https://app.example/confirm?c=5521"
    seen["address"] = mail_address


def test_another_test_gets_another_address(mail_address):
    assert mail_address != seen["address"]
    assert mail_address.startswith("t-") and mail_address.endswith("-main@mailwire.test")


def test_inbox_client_is_skipped_without_a_url(inbox_client):
    raise AssertionError("not reached")
'''


def test_the_fixtures_in_a_pytest_run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAILWIRE_URL", raising=False)
    pytester.makepyfile(test_user=FIXTURES_USER)
    result = pytester.runpytest("-p", "no:randomly", "-rs")
    result.assert_outcomes(passed=2, skipped=1)
    result.stdout.fnmatch_lines(["*no running catcher to ask: give --mailwire-url URL or set MAILWIRE_URL*"])


def test_an_address_is_unique_to_a_test_and_to_a_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_addresses="""
        import pathlib

        def test_one(mail_address):
            with open("addresses.txt", "a") as file:
                file.write(mail_address + "\\n")
    """)
    pytester.runpytest("-p", "no:randomly").assert_outcomes(passed=1)
    pytester.runpytest("-p", "no:randomly").assert_outcomes(passed=1)
    first, second = (pytester.path / "addresses.txt").read_text().split()
    assert first != second  # a catcher that lives on keeps the last run's mail: not found again
