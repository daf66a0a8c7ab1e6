"""A tiny HTTP/1.0 health endpoint for the long-running processes (front ends, workers).

A load balancer or an orchestrator asks ``GET /health`` and wants a status
code; an operator wants a few facts beside it. So this answers exactly that:
200 when the process's ``check`` says ok, 503 when not, each with a JSON body
``{"ok": ..., **facts}``; any other path is 404, anything unparsable 400.

It is deliberately not a web server: one request per connection (HTTP/1.0,
``Connection: close``), the request head read with a size bound and a time
bound (a slow or oversize client costs one short-lived task, never memory or a
stuck handler), and the check itself bounded in time too (a check that hangs
answers 503, since a health probe that hangs is what the prober would see
anyway). Stdlib asyncio only; it imports nothing of mailwire, so both the
server side and the queue's workers can run it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

__all__ = ["Health", "HealthServer"]

MAX_HEAD = 8 * 1024  # request line + headers; a health probe sends a few hundred octets
READ_TIMEOUT = 5.0  # seconds for the whole request head
CHECK_TIMEOUT = 5.0  # seconds for the check; past it the answer is 503

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            408: "Request Timeout", 503: "Service Unavailable"}


@dataclass(frozen=True)
class Health:
    """What a check found: ``ok`` decides 200 or 503, ``facts`` go into the JSON body."""

    ok: bool
    facts: Mapping[str, object] = field(default_factory=dict)


class HealthServer:
    """Serves ``GET /health`` from ``check`` on ``host:port`` (port 0: any free port)."""

    def __init__(self, check: Callable[[], Awaitable[Health]], host: str = "127.0.0.1",
                 port: int = 0, *, read_timeout: float = READ_TIMEOUT,
                 check_timeout: float = CHECK_TIMEOUT, reuse_port: bool = False) -> None:
        self._check = check
        self._host = host
        self._port = port
        self._read_timeout = read_timeout
        self._check_timeout = check_timeout
        self._reuse_port = reuse_port  # several processes (serve --workers) on one port
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        """The bound port (the one chosen when 0 was asked for); only after ``start``."""
        if self._server is None:
            raise RuntimeError("HealthServer.port before start()")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self._host, self._port, limit=MAX_HEAD,
                                                  reuse_port=self._reuse_port or None)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            status, body = await self._answer(reader)
            # A prober that does not read its answer must not hold us either.
            await asyncio.wait_for(self._respond(writer, status, body), self._read_timeout)
        except (ConnectionError, asyncio.TimeoutError, asyncio.CancelledError):
            writer.transport.abort()  # the prober went away or stalled, or we are stopping
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[int, dict[str, object]]:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self._read_timeout)
        except asyncio.TimeoutError:
            return 408, {"ok": False, "error": "request timed out"}
        except asyncio.LimitOverrunError:
            return 400, {"ok": False, "error": "request head too large"}
        except asyncio.IncompleteReadError:
            return 400, {"ok": False, "error": "incomplete request"}
        parts = head.split(b"\r\n", 1)[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return 400, {"ok": False, "error": "malformed request line"}
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        if target != b"/health":
            return 404, {"ok": False, "error": "not found; ask GET /health"}
        if method != b"GET":
            return 405, {"ok": False, "error": "only GET"}
        return await self._run_check()

    async def _run_check(self) -> tuple[int, dict[str, object]]:
        try:
            health = await asyncio.wait_for(self._check(), self._check_timeout)
        except asyncio.TimeoutError:
            return 503, {"ok": False, "error": "health check timed out"}
        except Exception as exc:  # noqa: BLE001 -- a failing check is an unhealthy process, said as such
            return 503, {"ok": False, "error": f"health check failed: {exc!r}"}
        return (200 if health.ok else 503), {"ok": health.ok, **health.facts}

    @staticmethod
    async def _respond(writer: asyncio.StreamWriter, status: int, body: Mapping[str, object]) -> None:
        payload = json.dumps(body, default=str, sort_keys=True).encode() + b"\n"
        head = (f"HTTP/1.0 {status} {_REASONS[status]}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n")
        writer.write(head.encode("ascii") + payload)
        await writer.drain()
