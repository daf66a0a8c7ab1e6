"""Mailpit's tag routes over a real catcher: X-Tags on arrival, set, rename, delete, search, errors."""

from __future__ import annotations

import urllib.parse

import pytest

from .conftest import Catching, mail


def _ids(catching: Catching, query: str) -> list[str]:
    found = catching.get("/api/v1/search?query=" + urllib.parse.quote(query)).json()
    return [m["ID"] for m in found["messages"]]


def _tags_of(catching: Catching) -> dict[str, list[str]]:
    return {m["Subject"]: m["Tags"] for m in catching.get("/api/v1/messages").json()["messages"]}


@pytest.fixture
def tagged(catcher: Catching) -> Catching:
    catcher.send(mail("one", headers={"X-Tags": "alpha,  Big   News ,"}))
    catcher.send(mail("two", headers={"X-Tags": "alpha"}))
    catcher.send(mail("three"))
    return catcher


def test_x_tags_on_arrival_and_the_list_of_tags(tagged: Catching) -> None:
    assert tagged.get("/api/v1/tags").json() == ["Big News", "alpha"]
    assert _tags_of(tagged) == {"one": ["alpha", "Big News"], "two": ["alpha"], "three": []}
    assert tagged.get("/api/v1/messages").json()["tags"] == ["Big News", "alpha"]


def test_set_tags_overwrites_and_an_empty_list_untags(tagged: Catching) -> None:
    one, three = _ids(tagged, "subject:one")[0], _ids(tagged, "subject:three")[0]
    reply = tagged.request("PUT", "/api/v1/tags", {"IDs": [one, three], "Tags": ["urgent", " to  do ", "urgent"]})
    assert (reply.status, reply.body, reply.headers["Content-Type"]) == (200, b"ok", "text/plain; charset=utf-8")
    assert _tags_of(tagged) == {"one": ["urgent", "to do"], "two": ["alpha"], "three": ["urgent", "to do"]}
    assert sorted(_ids(tagged, "tag:urgent")) == sorted([one, three])
    assert tagged.get(f"/api/v1/message/{one}").json()["Tags"] == ["urgent", "to do"]
    assert tagged.get("/api/v1/info").json()["Tags"] == {"alpha": 1, "to do": 2, "urgent": 2}
    assert tagged.request("PUT", "/api/v1/tags", {"IDs": [one], "Tags": []}).status == 200
    assert _tags_of(tagged)["one"] == [] and _ids(tagged, "tag:urgent") == [three]
    assert _ids(tagged, "is:tagged subject:one") == []


def test_rename_merges_and_delete_keeps_the_messages(tagged: Catching) -> None:
    assert tagged.request("PUT", "/api/v1/tags/alpha", {"Name": "Big News"}).body == b"ok"
    assert _tags_of(tagged) == {"one": ["Big News"], "two": ["Big News"], "three": []}
    assert tagged.request("PUT", "/api/v1/tags/Big%20News", {"Name": "beta"}).status == 200
    assert tagged.get("/api/v1/tags").json() == ["beta"]
    assert tagged.request("DELETE", "/api/v1/tags/beta").body == b"ok"
    assert tagged.get("/api/v1/tags").json() == []
    assert tagged.get("/api/v1/messages").json()["total"] == 3
    assert tagged.request("DELETE", "/api/v1/tags/never-there").status == 200


@pytest.mark.parametrize("method, path, body, status, message", [
    ("PUT", "/api/v1/tags", {"Tags": ["a"]}, 400, "IDs is required"),
    ("PUT", "/api/v1/tags", {"IDs": [], "Tags": "a"}, 400, "Tags must be a list"),
    ("PUT", "/api/v1/tags", {"IDs": "x", "Tags": ["a"]}, 400, "IDs must be a list"),
    ("PUT", "/api/v1/tags", {"IDs": ["ONE"], "Tags": ["a,b"]}, 400, "no comma"),
    ("PUT", "/api/v1/tags", {"IDs": ["ONE"], "Tags": ["   "]}, 400, "must not be empty"),
    ("PUT", "/api/v1/tags", {"IDs": ["ONE"], "Tags": ["x" * 101]}, 400, "at most 100"),
    ("PUT", "/api/v1/tags", {"IDs": ["ONE", "nope"], "Tags": ["a"]}, 404, "no message nope"),
    ("PUT", "/api/v1/tags/alpha", {}, 400, "Name is required"),
    ("PUT", "/api/v1/tags/alpha", {"Name": "a\u0007b"}, 400, "control character"),
    ("PUT", "/api/v1/tags/nope", {"Name": "b"}, 404, "no tag 'nope'"),
])
def test_bad_requests_change_nothing(tagged: Catching, method: str, path: str, body: dict[str, object],
                                     status: int, message: str) -> None:
    one = _ids(tagged, "subject:one")[0]
    if isinstance(body.get("IDs"), list):
        body = {**body, "IDs": [one if i == "ONE" else i for i in body["IDs"]]}  # type: ignore[union-attr]
    reply = tagged.request(method, path, body)
    assert reply.status == status and message in reply.json()["Error"], reply.json()
    assert _tags_of(tagged) == {"one": ["alpha", "Big News"], "two": ["alpha"], "three": []}
