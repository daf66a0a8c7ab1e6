"""Beyond Mailpit: ``/api/v1/wait`` returns when a message arrives; ``/api/v1/events`` streams arrivals."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from typing import Any

import aiohttp

from .conftest import TIMEOUT, Catching, first_event, mail, start_catching, stop_catching


def test_wait_returns_a_message_already_there(catcher: Catching) -> None:
    catcher.send(mail("Welcome", to="Erin <erin@example.org>"), to=("erin@example.org",))
    reply = catcher.get("/api/v1/wait?query=to:erin@example.org&timeout=5")
    assert reply.status == 200 and reply.json()["Subject"] == "Welcome"


def test_wait_returns_when_the_message_arrives(catcher: Catching) -> None:
    catcher.send(mail("Not this one"))
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(
        catcher.get("/api/v1/wait?query=subject:%22reset%20code%22&timeout=60")))
    waiter.start()
    catcher.send(mail("Your reset code", text="Code: 424242"))
    waiter.join(TIMEOUT * 2)
    assert not waiter.is_alive()
    [reply] = got
    assert reply.status == 200
    found = reply.json()
    assert found["Subject"] == "Your reset code" and found["Snippet"] == "Code: 424242"
    assert set(found) >= {"ID", "From", "To", "Created", "Read"}


def test_wait_times_out_with_408(catcher: Catching) -> None:
    catcher.send(mail("Something else"))
    reply = catcher.get("/api/v1/wait?query=subject:never&timeout=0.2")
    assert reply.status == 408 and "subject:never" in reply.json()["Error"]
    assert catcher.get("/api/v1/wait?timeout=0.2&existing=0").status == 408  # only a new one would do


def test_events_stream_each_arrival(catcher: Catching) -> None:
    request = urllib.request.Request(catcher.url + "/api/v1/events?query=subject:event")
    with urllib.request.urlopen(request, timeout=TIMEOUT) as stream:
        assert stream.headers["Content-Type"] == "text/event-stream"
        assert stream.readline() == b": mailwire events\n"
        assert stream.readline() == b"\n"
        # The stream watches from its start: keep sending until an event comes
        # (a message sent before the watch began is not one); at most 50.
        fields = first_event(stream, lambda n: catcher.send(mail(f"event {n}")))
    assert fields["event"] == "new"
    data = json.loads(fields["data"])
    assert data["Subject"].startswith("event ") and data["ID"] == fields["id"]
    assert data["From"] == {"Name": "Alice", "Address": "alice@example.com"}


def _send_until(catcher: Catching, seen: list[str]) -> None:
    for n in range(50):
        if seen:
            return
        catcher.send(mail(f"event {n}"))
        if seen:
            return
        threading.Event().wait(0.2)


def test_the_server_stops_with_a_wait_and_a_stream_open(tmp_path: Any) -> None:
    """A 300 s wait and an endless stream do not hold the stop (each ends
    with the connection, or was refused if the stop came first)."""
    catching = start_catching(tmp_path / "mail")
    results: list[object] = []

    def ask(path: str) -> None:
        try:
            with urllib.request.urlopen(catching.url + path, timeout=TIMEOUT) as response:
                results.append(response.read())
        except Exception as err:  # the connection closed under it
            results.append(err)

    waiters = [threading.Thread(target=ask, args=(p,)) for p in ("/api/v1/wait?timeout=300", "/api/v1/events")]
    for waiter in waiters:
        waiter.start()
    catching.get("/api/v1/messages")  # (most likely, both are in by now)
    stop_catching(catching)
    for waiter in waiters:
        waiter.join(TIMEOUT)
        assert not waiter.is_alive()
    assert len(results) == 2


def test_mailpits_websocket_sends_each_arrival(catcher: Catching) -> None:
    seen: list[str] = []

    async def listen() -> Any:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(catcher.url + "/api/events") as ws:
                sender = threading.Thread(target=_send_until, args=(catcher, seen))
                sender.start()
                try:
                    return await asyncio.wait_for(ws.receive_json(), TIMEOUT)
                finally:
                    seen.append("stop")
                    await asyncio.to_thread(sender.join, TIMEOUT)

    event = asyncio.run(listen())
    assert event["Type"] == "new" and event["Data"]["Subject"].startswith("event ")
    assert event["Data"]["To"] == [{"Name": "Bob", "Address": "bob@example.org"}]


def test_a_wait_or_stream_begun_once_the_stop_has_is_refused_503(catcher: Catching) -> None:
    """One that began after the stop ended the others would never end."""
    from mailwire.web.watch import STREAMS

    catcher.web.app[STREAMS].stop()  # what the server's shutdown does first
    for path in ("/api/v1/wait?timeout=300", "/api/v1/events", "/api/events"):
        reply = catcher.get(path)
        assert reply.status == 503 and "stopping" in reply.json()["Error"], path
    assert catcher.get("/api/v1/messages").status == 200  # the rest still answers until it stops
