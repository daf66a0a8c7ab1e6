"""Mailpit's API v1 routes against real mail sent with smtplib."""

from __future__ import annotations

import base64
import hashlib

from .conftest import Catching, mail


def _ids(catcher: Catching, path: str = "/api/v1/messages") -> list[str]:
    return [m["ID"] for m in catcher.get(path).json()["messages"]]


def test_list_is_newest_first_with_mailpits_counts(catcher: Catching) -> None:
    for n in range(3):
        catcher.send(mail(f"number {n}", headers={"X-Tags": "news, weekly"} if n == 1 else None))
    reply = catcher.get("/api/v1/messages")
    assert reply.status == 200 and reply.headers["Content-Type"].startswith("application/json")
    body = reply.json()
    assert [m["Subject"] for m in body["messages"]] == ["number 2", "number 1", "number 0"]
    assert (body["total"], body["unread"], body["messages_count"], body["messages_unread"]) == (3, 3, 3, 3)
    assert body["start"] == 0 and body["count"] == 3 and body["tags"] == ["news", "weekly"]
    first = body["messages"][0]
    assert first["From"] == {"Name": "Alice", "Address": "alice@example.com"}
    assert first["To"] == [{"Name": "Bob", "Address": "bob@example.org"}]
    assert first["Read"] is False and first["Snippet"] == "Hi Bob" and first["Created"].endswith("Z")
    page = catcher.get("/api/v1/messages?start=1&limit=1").json()
    assert [m["Subject"] for m in page["messages"]] == ["number 1"] and page["start"] == 1
    assert page["count"] == 1 and page["messages_count"] == 3
    assert page["messages"][0]["Tags"] == ["news", "weekly"]


def test_search_with_mailpits_syntax(catcher: Catching) -> None:
    catcher.send(mail("Reset your password", sender="Shop <no-reply@shop.test>"))
    catcher.send(mail("Weekly news", attachments=(("a.pdf", b"%PDF-1.4", "application/pdf"),)))
    found = catcher.get("/api/v1/search?query=" + "from%3Ashop.test%20subject%3A%22reset%22").json()
    assert [m["Subject"] for m in found["messages"]] == ["Reset your password"]
    assert found["messages_count"] == 1 and found["total"] == 2
    assert [m["Subject"] for m in catcher.get("/api/v1/search?query=has:attachment").json()["messages"]] == [
        "Weekly news"]
    assert catcher.get("/api/v1/search?query=-has:attachment").json()["messages_count"] == 1
    assert catcher.get("/api/v1/search?query=password&limit=0").json()["messages"] == []


def test_bad_parameters_are_400_with_a_json_error(catcher: Catching) -> None:
    for path in ("/api/v1/messages?limit=-1", "/api/v1/messages?start=x", "/api/v1/messages?limit=1.5",
                 "/api/v1/search?query=is:nonsense", "/api/v1/search?query=%22unclosed",
                 "/api/v1/search", "/api/v1/search?query=%20", "/api/v1/search?query=before:2024-01-01&tz=Nowhere/Not",
                 "/api/v1/wait?timeout=-1", "/api/v1/wait?timeout=x", "/api/v1/wait?timeout=100000"):
        reply = catcher.get(path)
        assert reply.status == 400, path
        assert set(reply.json()) == {"Error"} and reply.json()["Error"], path
    assert catcher.request("DELETE", "/api/v1/search").status == 400  # never "everything" by omission
    assert catcher.request("DELETE", "/api/v1/messages", raw=b"{not json").status == 400
    assert catcher.request("DELETE", "/api/v1/messages", body={"IDs": "abc"}).status == 400
    assert catcher.request("PUT", "/api/v1/messages", body={"Read": "yes"}).status == 400
    assert catcher.request("PUT", "/api/v1/messages", body=["a list"]).status == 400
    assert catcher.get("/api/v1/search?query=after:2024-01-01&tz=Pacific/Auckland").status == 200


def test_unknown_ids_routes_and_methods(catcher: Catching) -> None:
    catcher.send(mail())
    for path in ("/api/v1/message/AAAAAAAAAAAAAAAAAAAAAA", "/api/v1/message/nope/headers",
                 "/api/v1/message/nope/raw", "/api/v1/message/nope/part/1", "/view/nope.html", "/view/nope.txt",
                 "/api/v1/nothing-here", f"/api/v1/message/{_ids(catcher)[0]}/part/9"):
        reply = catcher.get(path)
        assert reply.status == 404, path
        assert "Error" in reply.json(), path
    assert catcher.request("PUT", "/api/v1/messages", body={"IDs": ["nope"], "Read": True}).status == 404
    reply = catcher.request("POST", "/api/v1/messages")
    assert reply.status == 405 and "Error" in reply.json() and "Allow" in reply.headers


def test_a_body_over_the_limit_is_413(catcher: Catching) -> None:
    ids = ["A" * 22] * 60_000  # 1.5 MB of IDs
    reply = catcher.request("DELETE", "/api/v1/messages", body={"IDs": ids})
    assert reply.status == 413 and "Error" in reply.json()


def test_delete_by_id_by_search_and_all(catcher: Catching) -> None:
    for subject in ("keep", "drop one", "drop two", "other"):
        catcher.send(mail(subject))
    by_subject = {m["Subject"]: m["ID"] for m in catcher.get("/api/v1/messages").json()["messages"]}
    reply = catcher.request("DELETE", "/api/v1/messages", body={"IDs": [by_subject["other"]]})
    assert reply.status == 200 and reply.body == b"ok"
    assert catcher.get(f"/api/v1/message/{by_subject['other']}").status == 404
    assert catcher.request("DELETE", "/api/v1/search?query=subject:drop").body == b"ok"
    assert [m["Subject"] for m in catcher.get("/api/v1/messages").json()["messages"]] == ["keep"]
    assert catcher.request("DELETE", "/api/v1/messages").status == 200  # no IDs: all
    assert catcher.get("/api/v1/messages").json()["total"] == 0


def test_mark_read_and_unread(catcher: Catching) -> None:
    for subject in ("one", "two", "three"):
        catcher.send(mail(subject))
    ids = {m["Subject"]: m["ID"] for m in catcher.get("/api/v1/messages").json()["messages"]}
    assert catcher.request("PUT", "/api/v1/messages", body={"IDs": [ids["one"]], "Read": True}).body == b"ok"
    assert catcher.get(f"/api/v1/message/{ids['one']}").status == 200
    page = catcher.get("/api/v1/messages").json()
    assert page["unread"] == 2 and {m["Subject"]: m["Read"] for m in page["messages"]}["one"] is True
    assert catcher.request("PUT", "/api/v1/messages", body={"Search": "subject:two", "Read": True}).status == 200
    assert catcher.get("/api/v1/search?query=is:read").json()["messages_count"] == 2
    assert catcher.request("PUT", "/api/v1/messages", body={"Read": True}).status == 200  # all
    assert catcher.get("/api/v1/messages").json()["unread"] == 0
    assert catcher.request("PUT", "/api/v1/messages", body={"IDs": [ids["three"]], "Read": False}).status == 200
    assert catcher.get("/api/v1/search?query=is:unread").json()["messages"][0]["ID"] == ids["three"]


def test_a_message_its_fields_and_latest(catcher: Catching) -> None:
    png = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")
    message = mail("Your invoice", cc="Carol <carol@example.net>", html="<p>Hello <b>Bob</b></p>",
                   attachments=(("invoice.pdf", b"%PDF-1.4 fake", "application/pdf"),),
                   headers={"Reply-To": "Billing <billing@example.com>",
                            "List-Unsubscribe": "<mailto:u@example.com>, <https://example.com/u>"})
    message.get_payload()[0].get_payload()[1].add_related(png, maintype="image", subtype="png", cid="<logo@example.com>")
    catcher.send(message, to=("bob@example.org", "carol@example.net", "dave@example.net"))
    view = catcher.get("/api/v1/message/latest").json()
    assert view["Subject"] == "Your invoice" and view["From"]["Address"] == "alice@example.com"
    assert view["Cc"] == [{"Name": "Carol", "Address": "carol@example.net"}]
    assert view["Bcc"] == [{"Name": "", "Address": "dave@example.net"}]  # the envelope's, in neither To nor Cc
    assert view["ReplyTo"] == [{"Name": "Billing", "Address": "billing@example.com"}]
    assert view["ReturnPath"] == "alice@example.com" and view["Text"] == "Hi Bob\n"
    assert "<b>Bob</b>" in view["HTML"]
    assert view["ListUnsubscribe"]["Links"] == ["mailto:u@example.com", "https://example.com/u"]
    [attachment] = view["Attachments"]
    assert attachment["FileName"] == "invoice.pdf" and attachment["ContentType"] == "application/pdf"
    assert attachment["Checksums"]["SHA256"] == hashlib.sha256(b"%PDF-1.4 fake").hexdigest()
    assert attachment["Checksums"]["MD5"] == hashlib.md5(b"%PDF-1.4 fake").hexdigest()
    [inline] = view["Inline"]
    assert inline["ContentType"] == "image/png" and inline["ContentID"] == "logo@example.com"
    assert view == catcher.get(f"/api/v1/message/{view['ID']}").json()

    part = catcher.get(f"/api/v1/message/{view['ID']}/part/{attachment['PartID']}")
    assert part.status == 200 and part.body == b"%PDF-1.4 fake"
    assert part.headers["Content-Type"] == "application/pdf"
    assert part.headers["Content-Disposition"] == 'attachment; filename="invoice.pdf"'
    assert "sandbox" in part.headers["Content-Security-Policy"]
    image = catcher.get(f"/api/v1/message/latest/part/{inline['PartID']}")
    assert image.body == png and image.headers["Content-Type"] == "image/png"
    assert image.headers["Content-Disposition"].startswith("inline")


def test_headers_and_raw(catcher: Catching) -> None:
    message = mail("Raw", headers={"X-Thing": "one"})
    message["X-Thing"] = "two"
    catcher.send(message)
    headers = catcher.get("/api/v1/message/latest/headers").json()
    assert headers["Subject"] == ["Raw"] and headers["X-Thing"] == ["one", "two"]
    assert headers["Return-Path"] == ["<alice@example.com>"]
    raw = catcher.get("/api/v1/message/latest/raw")
    assert raw.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert raw.body.startswith(b"Return-Path: <alice@example.com>\r\n") and b"Subject: Raw\r\n" in raw.body
    assert int(raw.headers["Content-Length"]) == len(raw.body)
    download = catcher.get("/api/v1/message/latest/raw?dl=1")
    assert download.body == raw.body and download.headers["Content-Disposition"].endswith('.eml"')


def test_info_and_webui(catcher: Catching) -> None:
    catcher.send(mail("tagged", headers={"X-Tags": "alpha"}))
    catcher.send(mail("plain"))
    catcher.request("PUT", "/api/v1/messages", body={"Search": "subject:plain", "Read": True})
    info = catcher.get("/api/v1/info").json()
    assert (info["Messages"], info["Unread"], info["Tags"]) == (2, 1, {"alpha": 1})
    assert info["Database"].endswith("mailwire-index.sqlite3") and info["DatabaseSize"] > 0
    assert info["RuntimeStats"]["Memory"] > 0
    webui = catcher.get("/api/v1/webui").json()
    assert webui["MessageRelay"]["Enabled"] is False and webui["ChaosEnabled"] is False


def test_a_loopback_inbox_answers_only_requests_for_localhost(catcher: Catching) -> None:
    port = catcher.web.port
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "app.localhost"):
        assert catcher.get("/api/v1/messages", headers={"Host": host}).status == 200, host
    for host in (f"evil.example:{port}", "192.0.2.1", "localhost.evil.example"):
        reply = catcher.get("/api/v1/messages", headers={"Host": host})  # DNS rebinding
        assert reply.status == 403 and "localhost only" in reply.json()["Error"], host
