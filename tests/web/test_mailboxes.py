"""Mailboxes, mailwire's addition to Mailpit's API: every message per envelope recipient and AUTH user.

``GET /api/v1/mailboxes`` lists them with their counts; ``mailbox=`` on the
list, search, delete, wait and event-stream routes keeps to one.
"""

from __future__ import annotations

import json
import urllib.request

from .conftest import TIMEOUT, Catching, first_event, mail


def _fill(catcher: Catching) -> None:
    catcher.send(mail("For Carol", to="Carol <carol@example.org>"), to=("Carol@Example.org",))
    catcher.send(mail("For Dave", to="Dave <dave@example.org>"), to=("dave@example.org",))
    catcher.send(mail("For both, Bcc Dave", to="Carol <carol@example.org>"),
                 to=("carol@example.org", "dave@example.org"))


def test_mailboxes_are_listed_with_their_counts(catcher: Catching) -> None:
    _fill(catcher)
    found = catcher.get("/api/v1/mailboxes").json()["mailboxes"]
    assert found == [{"Mailbox": "carol@example.org", "Total": 2, "Unread": 2},
                     {"Mailbox": "dave@example.org", "Total": 2, "Unread": 2}]
    dave = catcher.get("/api/v1/messages?mailbox=dave@example.org").json()
    assert catcher.request("PUT", "/api/v1/messages", {"IDs": [dave["messages"][0]["ID"]], "Read": True}).status == 200
    found = catcher.get("/api/v1/mailboxes").json()["mailboxes"]
    assert [m["Unread"] for m in found] == [1, 1]  # the one for both was read: in both mailboxes


def test_list_search_and_delete_keep_to_a_mailbox(catcher: Catching) -> None:
    _fill(catcher)
    carol = catcher.get("/api/v1/messages?mailbox=CAROL@example.org").json()
    assert [m["Subject"] for m in carol["messages"]] == ["For both, Bcc Dave", "For Carol"]
    assert carol["total"] == 2 and carol["messages_count"] == 2
    found = catcher.get("/api/v1/search?query=subject:both&mailbox=dave@example.org").json()
    assert [m["Subject"] for m in found["messages"]] == ["For both, Bcc Dave"]
    assert catcher.get("/api/v1/messages?mailbox=nobody@example.org").json()["messages"] == []
    assert catcher.request("DELETE", "/api/v1/search?query=subject:for&mailbox=dave@example.org").status == 200
    left = [m["Subject"] for m in catcher.get("/api/v1/messages").json()["messages"]]
    assert left == ["For Carol"]
    catcher.send(mail("Another for Dave"), to=("dave@example.org",))
    assert catcher.request("DELETE", "/api/v1/messages?mailbox=carol@example.org").status == 200
    assert [m["Subject"] for m in catcher.get("/api/v1/messages").json()["messages"]] == ["Another for Dave"]


def test_a_bad_mailbox_is_400(catcher: Catching) -> None:
    for path in ("/api/v1/messages", "/api/v1/search?query=x&", "/api/v1/wait?timeout=0&", "/api/v1/events"):
        joiner = "&" if "?" in path else "?"
        reply = catcher.get(f"{path.rstrip('&')}{joiner}mailbox=a%0Ab")
        assert reply.status == 400 and "mailbox" in reply.json()["Error"], path


def test_wait_and_events_keep_to_a_mailbox(catcher: Catching) -> None:
    _fill(catcher)
    reply = catcher.get("/api/v1/wait?mailbox=carol@example.org&timeout=5")
    assert reply.status == 200 and reply.json()["Subject"] == "For both, Bcc Dave"
    missed = catcher.get("/api/v1/wait?mailbox=erin@example.org&timeout=0.2")
    assert missed.status == 408
    request = urllib.request.Request(catcher.url + "/api/v1/events?mailbox=erin@example.org")
    with urllib.request.urlopen(request, timeout=TIMEOUT) as stream:
        assert stream.readline() == b": mailwire events\n" and stream.readline() == b"\n"

        def send(n: int) -> None:  # Dave's then Erin's: only Erin's may come
            catcher.send(mail(f"dave {n}"), to=("dave@example.org",))
            catcher.send(mail(f"erin {n}"), to=("erin@example.org",))

        fields = first_event(stream, send)
    assert json.loads(fields["data"])["Subject"].startswith("erin ")
