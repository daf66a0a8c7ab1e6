"""Mailpit's ``POST /api/v1/send``: a JSON message built, caught, indexed and announced like SMTP mail."""

from __future__ import annotations

import base64
import email
import email.policy
import threading
from email.message import EmailMessage
from typing import Any

import pytest

from .conftest import TIMEOUT, Catching

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


def _send(catcher: Catching, body: Any) -> Any:
    return catcher.request("POST", "/api/v1/send", body=body)


def _stored(catcher: Catching, message_id: str) -> EmailMessage:
    raw = catcher.get(f"/api/v1/message/{message_id}/raw").body
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_every_field(catcher: Catching) -> None:
    body = {
        "From": {"Email": "john@example.com", "Name": "John Doe"},
        "To": [{"Email": "jane@example.com", "Name": "Jane Doé"}, {"Email": "joe@example.com"}],
        "Cc": [{"Email": "manager@example.com", "Name": "Manager"}],
        "Bcc": ["jack@example.com"],
        "ReplyTo": [{"Email": "secretary@example.com", "Name": "Secretary"}],
        "Subject": "Mailpit message via the HTTP API ✓",
        "Text": "Mailpit is awesome!",
        "HTML": '<p>Mailpit is <b>awesome</b>!</p><p><img src="cid:mailpit-logo" /></p>',
        "Attachments": [
            {"Content": base64.b64encode(b"This is a plain text attachment").decode(), "Filename": "notes.txt"},
            {"Content": "data:image/png;base64," + base64.b64encode(PNG).decode(), "Filename": "logo.png",
             "ContentType": "image/png", "ContentID": "mailpit-logo"},
        ],
        "Headers": {"X-IP": "1.2.3.4"},
        "Tags": ["Tag 1", "Tag 2"],
    }
    reply = _send(catcher, body)
    assert reply.status == 200, reply.body
    message_id = reply.json()["ID"]
    assert isinstance(message_id, str) and len(message_id) == 22

    view = catcher.get(f"/api/v1/message/{message_id}").json()
    assert view["From"] == {"Name": "John Doe", "Address": "john@example.com"}
    assert view["To"] == [{"Name": "Jane Doé", "Address": "jane@example.com"},
                          {"Name": "", "Address": "joe@example.com"}]
    assert view["Cc"] == [{"Name": "Manager", "Address": "manager@example.com"}]
    assert view["Bcc"] == [{"Name": "", "Address": "jack@example.com"}]
    assert view["ReplyTo"] == [{"Name": "Secretary", "Address": "secretary@example.com"}]
    assert view["Subject"] == "Mailpit message via the HTTP API ✓"
    assert view["Text"].strip() == "Mailpit is awesome!" and "<b>awesome</b>" in view["HTML"]
    assert sorted(view["Tags"]) == ["Tag 1", "Tag 2"]
    [attachment] = view["Attachments"]
    assert attachment["FileName"] == "notes.txt" and attachment["ContentType"] == "text/plain"
    [inline] = view["Inline"]
    assert inline["FileName"] == "logo.png" and inline["ContentID"] == "mailpit-logo"
    part = catcher.get(f"/api/v1/message/{message_id}/part/{inline['PartID']}")
    assert part.body == PNG and part.headers["Content-Type"] == "image/png"
    part = catcher.get(f"/api/v1/message/{message_id}/part/{attachment['PartID']}")
    assert part.body == b"This is a plain text attachment"

    stored = _stored(catcher, message_id)
    assert stored["X-IP"] == "1.2.3.4" and stored["Bcc"] is None and stored["Date"] and stored["Message-ID"]
    assert stored["Return-Path"] == "<john@example.com>"
    # The envelope, as the catcher's trace line keeps it: To, Cc and Bcc.
    listed = catcher.get("/api/v1/search?query=tag:%22Tag%201%22").json()
    assert [m["ID"] for m in listed["messages"]] == [message_id]


def test_the_smallest_message_and_html_only(catcher: Catching) -> None:
    reply = _send(catcher, {"From": {"Email": "a@example.com"}, "To": [{"Email": "b@example.com"}]})
    assert reply.status == 200
    view = catcher.get(f"/api/v1/message/{reply.json()['ID']}").json()
    assert view["Subject"] == "" and view["Text"].strip() == "" and view["Attachments"] == []
    reply = _send(catcher, {"From": {"Email": "a@example.com"}, "To": [{"Email": "b@example.com"}],
                            "HTML": "<p>only html</p>"})
    stored = _stored(catcher, reply.json()["ID"])
    assert stored.get_content_type() == "text/html" and "only html" in stored.get_content()


def test_a_sent_message_wakes_a_waiter(catcher: Catching) -> None:
    answers: list[Any] = []
    waiter = threading.Thread(target=lambda: answers.append(
        catcher.get("/api/v1/wait?query=subject:%22woken%22&timeout=20")))
    waiter.start()
    reply = _send(catcher, {"From": {"Email": "a@example.com"}, "To": [{"Email": "b@example.com"}],
                            "Subject": "woken"})
    waiter.join(TIMEOUT)
    assert not waiter.is_alive() and answers[0].status == 200
    assert answers[0].json()["ID"] == reply.json()["ID"]


GOOD = {"From": {"Email": "a@example.com"}, "To": [{"Email": "b@example.com"}]}


@pytest.mark.parametrize("change, words", [
    ({"From": None}, "From is required"),
    ({"From": "a@example.com"}, "From must be an object"),
    ({"From": {"Name": "A"}}, "From.Email must be an email address"),
    ({"From": {"Email": "not an address"}}, "From.Email is not an email address"),
    ({"From": {"Email": "a@example.com", "Name": "A\r\nBcc: x@y"}}, "From.Name must be one line"),
    ({"To": {"Email": "b@example.com"}}, "To must be a list"),
    ({"To": [{"Email": "b@example.com"}, {"Email": "bad"}]}, "To[1].Email is not an email address"),
    ({"Cc": [{"Email": "x@y> NOTIFY=NEVER"}]}, "Cc[0].Email"),
    ({"Bcc": [{"Email": "b@example.com"}]}, "Bcc[0] must be an email address"),
    ({"ReplyTo": [{"Email": ""}]}, "ReplyTo[0].Email"),
    ({"Subject": 5}, "Subject must be a string"),
    ({"Subject": "a\nX-Evil: 1"}, "Subject must be one line"),
    ({"Text": ["no"]}, "Text must be a string"),
    ({"HTML": {}}, "HTML must be a string"),
    ({"Attachments": [{"Filename": "a.txt", "Content": "not base64!"}]}, "Attachments[0].Content is not base64"),
    ({"Attachments": [{"Content": "aGk="}]}, "Attachments[0].Filename is required"),
    ({"Attachments": [{"Content": "aGk=", "Filename": "a", "ContentType": "text"}]}, "ContentType"),
    ({"Attachments": ["aGk="]}, "Attachments[0] must be an object"),
    ({"Headers": {"From": "x@y"}}, "From cannot be set here"),
    ({"Headers": {"X-Tags": "t"}}, "X-Tags cannot be set here"),
    ({"Headers": {"Bad Name": "v"}}, "not a header name"),
    ({"Headers": {"X-A": "v\r\nX-B: w"}}, "Headers.X-A must be one line"),
    ({"Headers": {"X-A": 1}}, "Headers.X-A must be a string"),
    ({"Headers": ["X-A"]}, "Headers must be an object"),
    ({"Tags": "t"}, "Tags must be a list"),
    ({"Tags": ["a,b"]}, "comma"),
    ({"Tags": [1]}, "Tags[0] must be a string"),
])
def test_bad_fields_are_400_naming_them(catcher: Catching, change: dict[str, Any], words: str) -> None:
    reply = _send(catcher, {**GOOD, **change})
    assert reply.status == 400 and words in reply.json()["Error"], reply.json()
    assert catcher.get("/api/v1/messages").json()["total"] == 0


def test_bad_bodies(catcher: Catching) -> None:
    for raw, words in ((b"{nope", "not JSON"), (b"[1]", "JSON object"), (b"", "From is required")):
        reply = catcher.request("POST", "/api/v1/send", raw=raw)
        assert reply.status == 400 and words in reply.json()["Error"], (raw, reply.json())


def test_attachments_beyond_the_other_routes_body_limit(catcher: Catching) -> None:
    data = bytes(range(256)) * 12_000  # 3 MB: over the 1 MB the other routes take
    reply = _send(catcher, {**GOOD, "Attachments": [{"Content": base64.b64encode(data).decode(),
                                                      "Filename": "big.bin"}]})
    assert reply.status == 200, reply.body
    [attachment] = catcher.get(f"/api/v1/message/{reply.json()['ID']}").json()["Attachments"]
    assert attachment["ContentType"] == "application/octet-stream" and attachment["Size"] == len(data)


def test_a_body_over_the_send_limit_is_413(catcher: Catching, monkeypatch: pytest.MonkeyPatch) -> None:
    from mailwire.web import send

    monkeypatch.setattr(send, "MAX_SEND_BODY", 1000)
    reply = _send(catcher, {**GOOD, "Text": "x" * 2000})
    assert reply.status == 413 and "Error" in reply.json()
    assert catcher.get("/api/v1/messages").json()["total"] == 0


def test_send_speaks_mailpits_description(catcher: Catching) -> None:
    from .test_swagger import SWAGGER, _check, _resolve, _spec

    if SWAGGER is None:
        pytest.skip("Mailpit's swagger.json is not beside the repository")
    spec = _spec()
    operation = spec["paths"]["/api/v1/send"]["post"]
    [parameter] = operation["parameters"]
    described = parameter["schema"]["properties"]
    taken = {"From", "To", "Cc", "Bcc", "ReplyTo", "Subject", "Text", "HTML", "Attachments", "Headers", "Tags"}
    assert taken == set(described)
    attachment = set(described["Attachments"]["items"]["properties"])
    assert attachment == {"Content", "Filename", "ContentType", "ContentID"}
    reply = _send(catcher, GOOD)
    assert reply.status == 200 and _check(spec, operation["responses"]["200"], reply.json(), "send") == []
    reply = _send(catcher, {"To": []})
    _, error = _resolve(spec, operation["responses"]["400"])
    assert reply.status == 400 and set(reply.json()) == set(error["properties"])  # {"Error": ...}
