"""Every route mailwire claims of Mailpit's API v1, checked against its OpenAPI description.

The description (``shared/reference/mailpit-api-v1.swagger.json``, beside
the repository; skipped where it is missing) names each route's parameters
and the JSON fields of its answer. For each route claimed here this test
makes a real request and checks: the route and method are in the
description, every query parameter we send is one it names, and the
answer's fields are exactly the ones its schema names, object by object
(nested objects and array items included), save ``EXTRA`` (documented
additions).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mailwire.server.chaos import Chaos

from .conftest import Catching, mail, start_catching, stop_catching

_HERE = Path(__file__).resolve()
CANDIDATES = [parent / "shared" / "reference" / "mailpit-api-v1.swagger.json" for parent in _HERE.parents]
SWAGGER = next((path for path in CANDIDATES if path.exists()), None)
pytestmark = pytest.mark.skipif(SWAGGER is None, reason="Mailpit's swagger.json is not beside the repository")

# (method, path in the description, path requested, query parameters): what mailwire claims.
CLAIMED = [
    ("get", "/api/v1/messages", "/api/v1/messages", {"start": "0", "limit": "10"}),
    ("get", "/api/v1/search", "/api/v1/search", {"query": "subject:Invoice", "start": "0", "limit": "5",
                                                 "tz": "Europe/Paris"}),
    ("get", "/api/v1/message/{ID}", "/api/v1/message/{id}", {}),
    ("get", "/api/v1/message/{ID}/headers", "/api/v1/message/{id}/headers", {}),
    ("get", "/api/v1/message/{ID}/raw", "/api/v1/message/{id}/raw", {}),
    ("get", "/api/v1/message/{ID}/part/{PartID}", "/api/v1/message/{id}/part/{part}", {}),
    ("get", "/api/v1/info", "/api/v1/info", {}),
    ("get", "/api/v1/webui", "/api/v1/webui", {}),
    ("get", "/view/{ID}.html", "/view/{id}.html", {"embed": "1"}),
    ("get", "/view/{ID}.txt", "/view/{id}.txt", {}),
    ("put", "/api/v1/messages", "/api/v1/messages", {}),
    ("get", "/api/v1/tags", "/api/v1/tags", {}),
    ("put", "/api/v1/tags", "/api/v1/tags", {}),
    ("put", "/api/v1/tags/{Tag}", "/api/v1/tags/billing", {}),
    ("delete", "/api/v1/tags/{Tag}", "/api/v1/tags/paid", {}),
    ("delete", "/api/v1/search", "/api/v1/search", {"query": "subject:nothing-matches"}),
    ("delete", "/api/v1/messages", "/api/v1/messages", {}),
]
# The body of each PUT (the others: mark the message read).
BODIES = {"/api/v1/tags": {"IDs": ["{id}"], "Tags": ["billing", "urgent"]}, "/api/v1/tags/billing": {"Name": "paid"}}
EXTRA = {
    "MessagesSummary": {"count"},  # Mailpit's list also sends the page's count
    # mailwire's additions to chaos (server/chaos_triggers.py)
    "ChaosTriggers": {"Connect", "Data", "Seed"},
    "ChaosTrigger": {"Times", "Match", "Text", "EnhancedCode", "Fired"},
    "Message": {"Structure"},  # mailwire's: the MIME tree (shapes.message)
}


def _spec() -> dict[str, Any]:
    assert SWAGGER is not None
    loaded: dict[str, Any] = json.loads(SWAGGER.read_text(encoding="utf-8"))
    return loaded


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    name = ""
    while "$ref" in schema:
        _, kind, name = schema["$ref"].split("/")
        schema = spec[kind][name]
        schema = schema.get("schema", schema)  # a response's schema
    return name, schema


def _check(spec: dict[str, Any], schema: dict[str, Any], value: Any, where: str) -> list[str]:
    """Where ``value`` differs from ``schema`` in its fields (and their types)."""
    name, schema = _resolve(spec, schema)
    kind = schema.get("type", "object" if "properties" in schema else None)
    if value is None:
        return []  # a pointer left unset (Mailpit's From): null
    if kind == "object" and "properties" in schema:
        if not isinstance(value, dict):
            return [f"{where}: expected an object, got {value!r}"]
        named = set(schema["properties"])
        problems = [f"{where}: missing {sorted(named - set(value))}"] if named - set(value) else []
        extra = set(value) - named - EXTRA.get(name, set())
        if extra:
            problems.append(f"{where}: fields not in the description: {sorted(extra)}")
        for field, sub in schema["properties"].items():
            if field in value:
                problems += _check(spec, sub, value[field], f"{where}.{field}")
        return problems
    if kind == "object":  # a map: additionalProperties
        sub = schema.get("additionalProperties", {})
        if not isinstance(value, dict):
            return [f"{where}: expected an object, got {value!r}"]
        return [p for key, item in value.items() for p in _check(spec, sub, item, f"{where}[{key!r}]")]
    if kind == "array":
        if not isinstance(value, list):
            return [f"{where}: expected an array, got {value!r}"]
        return [p for i, item in enumerate(value) for p in _check(spec, schema.get("items", {}), item, f"{where}[{i}]")]
    types = {"string": str, "integer": int, "boolean": bool, "number": (int, float)}
    if kind in types and (not isinstance(value, types[kind]) or (kind == "integer" and isinstance(value, bool))):
        return [f"{where}: expected {kind}, got {value!r}"]
    return []


@pytest.fixture
def filled(catcher: Catching) -> Catching:
    catcher.send(mail("Invoice 7", html="<p>Pay <a href='https://shop.test/pay'>here</a></p>",
                      cc="Carol <carol@example.net>", attachments=(("a.pdf", b"%PDF", "application/pdf"),),
                      headers={"X-Tags": "billing", "List-Unsubscribe": "<https://shop.test/u>"}),
                 to=("bob@example.org", "carol@example.net", "hidden@example.net"))
    catcher.send(mail("Plain", sender="nobody-in-particular@example.com"))
    return catcher


def test_every_claimed_route_answers_the_described_shape(filled: Catching) -> None:
    spec = _spec()
    newest = filled.get("/api/v1/search?query=subject:Invoice").json()["messages"][0]
    part = filled.get(f"/api/v1/message/{newest['ID']}").json()["Attachments"][0]["PartID"]
    problems: list[str] = []
    for method, described, path, query in CLAIMED:
        operation = spec["paths"].get(described, {}).get(method)
        assert operation is not None, f"{method.upper()} {described} is not in Mailpit's API"
        names = {p["name"] for p in operation.get("parameters") or [] if p["in"] == "query"}
        assert set(query) <= names, f"{described}: {sorted(set(query) - names)} are not its parameters"
        url = path.format(id=newest["ID"], part=part)
        if query:
            url += "?" + "&".join(f"{k}={v}" for k, v in query.items())
        body: Any = {"IDs": [newest["ID"]], "Read": True} if method == "put" else None
        if path in BODIES:
            body = json.loads(json.dumps(BODIES[path]).replace("{id}", newest["ID"]))
        reply = filled.request(method.upper(), url, body=body)
        assert reply.status == 200, (method, url, reply.body[:200])
        schema = operation["responses"]["200"]
        _, resolved = _resolve(spec, schema)
        produces = operation.get("produces", [])
        if produces == ["application/json"] and method == "get":
            assert reply.headers["Content-Type"].startswith("application/json"), url
            problems += _check(spec, schema, reply.json(), f"{method.upper()} {described}")
        elif resolved.get("type") == "string" and "text/plain" in produces and method != "get":
            assert reply.body == b"ok", url  # Mailpit's OKResponse
    assert problems == []


def test_the_checker_finds_a_wrong_field() -> None:
    spec = _spec()
    address = {"$ref": "#/definitions/Address"}
    assert _check(spec, address, {"Name": "a", "Address": "b"}, "x") == []
    assert _check(spec, address, {"Name": "a"}, "x") == ["x: missing ['Address']"]
    assert _check(spec, address, {"Name": "a", "Address": "b", "Mail": 1}, "x") == [
        "x: fields not in the description: ['Mail']"]
    assert _check(spec, {"$ref": "#/definitions/MessageSummary"}, {"Size": "big"}, "s")[1:] == [
        "s.Size: expected integer, got 'big'"]


def test_chaos_answers_the_described_shape(tmp_path: Path) -> None:
    spec = _spec()
    catching = start_catching(tmp_path / "mail", chaos=Chaos())
    try:
        for method in ("get", "put"):
            operation = spec["paths"]["/api/v1/chaos"][method]
            body = {"Sender": {"ErrorCode": 451, "Probability": 5}, "Recipient": {"ErrorCode": 450, "Times": 2,
                                                                                   "Match": "*@x.test"}}
            reply = catching.request(method.upper(), "/api/v1/chaos", body=body if method == "put" else None)
            assert reply.status == 200 and reply.headers["Content-Type"].startswith("application/json")
            assert _check(spec, operation["responses"]["200"], reply.json(), f"{method} chaos") == []
    finally:
        stop_catching(catching)
