"""HealthServer on real sockets: 200 and 503 from the check, 404, 400, 405,
and a client that sends too much or too slowly is answered and let go."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

from mailwire._aio.health import Health, HealthServer


async def _ask(port: int, request: bytes) -> tuple[int, dict[str, object], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    return status, json.loads(body), head


def _with_server(check: Callable[[], Awaitable[Health]],
                 test: Callable[[HealthServer], Awaitable[None]], **kwargs: float) -> None:
    async def main() -> None:
        server = HealthServer(check, **kwargs)  # type: ignore[arg-type]
        await server.start()
        try:
            await test(server)
        finally:
            await server.stop()

    asyncio.run(main())


def test_ok_and_not_ok() -> None:
    state = {"ok": True}

    async def check() -> Health:
        return Health(state["ok"], {"broker": "up" if state["ok"] else "down", "queued": 3})

    async def test(server: HealthServer) -> None:
        status, body, head = await _ask(server.port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (status, body) == (200, {"ok": True, "broker": "up", "queued": 3})
        assert b"Content-Type: application/json" in head and b"Connection: close" in head
        state["ok"] = False
        status, body, _ = await _ask(server.port, b"GET /health?verbose=1 HTTP/1.0\r\n\r\n")
        assert (status, body) == (503, {"ok": False, "broker": "down", "queued": 3})

    _with_server(check, test)


def test_other_paths_methods_and_garbage() -> None:
    async def check() -> Health:
        return Health(True)

    async def test(server: HealthServer) -> None:
        status, body, _ = await _ask(server.port, b"GET /metrics HTTP/1.0\r\n\r\n")
        assert status == 404 and body["ok"] is False
        status, _, _ = await _ask(server.port, b"POST /health HTTP/1.0\r\n\r\n")
        assert status == 405
        for garbage in (b"HELO example.com\r\n\r\n", b"GET /health\r\n\r\n", b"\r\n\r\n"):
            status, body, _ = await _ask(server.port, garbage)
            assert status == 400 and body["ok"] is False, garbage
        # An incomplete head then end of input: 400, not a hang.
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /health HTTP/1.0\r\n")
        writer.write_eof()
        answer = await asyncio.wait_for(reader.read(), 10)
        assert answer.startswith(b"HTTP/1.0 400 ")
        writer.close()

    _with_server(check, test)


def test_oversize_request_is_bounded() -> None:
    async def check() -> Health:
        return Health(True)

    async def test(server: HealthServer) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /health HTTP/1.0\r\n" + b"X-Pad: " + b"a" * 100_000)
        try:
            await writer.drain()
        except ConnectionError:
            pass  # it may close while we still write; the answer came first
        answer = await asyncio.wait_for(reader.read(), 10)
        assert answer.startswith(b"HTTP/1.0 400 ") and b"too large" in answer
        writer.close()

    _with_server(check, test)


def test_slow_client_and_hung_check_are_bounded() -> None:
    hang = asyncio.Event()

    async def check() -> Health:
        if hang.is_set():
            await asyncio.sleep(3600)
        return Health(True)

    async def test(server: HealthServer) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /hea")  # and then nothing
        answer = await asyncio.wait_for(reader.read(), 10)
        assert answer.startswith(b"HTTP/1.0 408 ")
        writer.close()
        hang.set()
        status, body, _ = await _ask(server.port, b"GET /health HTTP/1.0\r\n\r\n")
        assert status == 503 and "timed out" in str(body["error"])

    _with_server(check, test, read_timeout=0.3, check_timeout=0.3)


def test_failing_check_is_503_and_stop_lets_go_of_idle_clients() -> None:
    async def check() -> Health:
        raise RuntimeError("broker exploded")

    async def test(server: HealthServer) -> None:
        status, body, _ = await _ask(server.port, b"GET /health HTTP/1.0\r\n\r\n")
        assert status == 503 and "broker exploded" in str(body["error"])
        idle = await asyncio.open_connection("127.0.0.1", server.port)
        await asyncio.sleep(0.05)
        await asyncio.wait_for(server.stop(), 10)  # does not wait out the idle client's read
        assert await asyncio.wait_for(idle[0].read(), 10) == b""
        idle[1].close()

    _with_server(check, test)
