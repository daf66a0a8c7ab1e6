"""A loopback TCP proxy that adds a fixed one-way delay, to simulate network latency.

This kernel has no netem, so latency is simulated in user space. Each direction of a proxied
connection is a *delay line*: a reader task stamps every chunk with its arrival time and puts
``(arrival + delay, chunk)`` on a bounded FIFO queue; a writer task takes chunks in order and sleeps
only until each one's own due time before writing it. A burst of chunks therefore leaves ``delay``
after it arrived, in order, and the line carries as many bytes per second as the endpoints can move
(a ``sleep(delay)`` per chunk in series would cap throughput at one chunk per delay). The queue is
bounded in chunks, each at most ``CHUNK_SIZE`` bytes, so a fast sender is back-pressured instead
of buffering without limit. End of stream travels down the line like data and becomes a half-close
(``write_eof``); a reset or write error on either side aborts both sides.

The proxy also counts the *turns* of each conversation: a turn is the client starting to send again
after the proxy delivered server data to it and the client direction had been quiet for at least
``delay``. Through the proxy a genuine wait for a reply is at least two delays long, while chunks of
one streamed write arrive microseconds apart, so the quiet gap separates "waited for the server"
from "was still sending". Turns per message is the number of round trips a client pays per message.

Use it in-process (``DelayProxy.start()`` runs an event loop in a background thread and returns the
port), as a script for manual use, or as a child process with ``--control`` (see ``ProxyProcess``),
which is how the benchmark runs it: a separate process does not compete with the client under test
for the GIL, which would otherwise add up to a switch interval (5 ms) to a 1 ms delay.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Final

CHUNK_SIZE: Final = 64 * 1024
QUEUE_CHUNKS: Final = 256  # at most 16 MiB in flight per direction
DEFAULT_DELAY: Final = 0.001

# Items on a delay line: bytes to forward, or one of the two end markers.
_EOF: Final = b""
_RESET: Final = None
_Item = tuple[float, "bytes | None"]


@dataclass(frozen=True)
class ProxyStats:
    """Counters over all connections since the proxy started."""

    connections: int = 0
    turns: int = 0
    bytes_up: int = 0  # client -> server
    bytes_down: int = 0  # server -> client
    chunks_forwarded: int = 0
    total_delay: float = 0.0  # sum over forwarded chunks of (sent - arrived), seconds

    @property
    def mean_delay(self) -> float:
        """The one-way delay actually achieved, averaged over chunks (NaN if none)."""
        return self.total_delay / self.chunks_forwarded if self.chunks_forwarded else math.nan

    def __sub__(self, other: ProxyStats) -> ProxyStats:
        names = [f.name for f in dataclasses.fields(self)]
        return ProxyStats(**{n: getattr(self, n) - getattr(other, n) for n in names})


@dataclass
class _Counters:
    """Mutable counterpart of ProxyStats; touched only from the proxy's event loop."""

    connections: int = 0
    turns: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    chunks_forwarded: int = 0
    total_delay: float = 0.0

    def snapshot(self) -> ProxyStats:
        return ProxyStats(**dataclasses.asdict(self))


class _Conversation:
    """Tracks one connection's turns: see the module docstring for the definition."""

    def __init__(self, counters: _Counters, idle_gap: float) -> None:
        self._counters = counters
        self._idle_gap = idle_gap
        self._heard_server = False
        self._last_client = -math.inf

    def client_arrived(self, now: float) -> None:
        if self._heard_server and now - self._last_client >= self._idle_gap:
            self._counters.turns += 1
        self._heard_server = False
        self._last_client = now

    def server_delivered(self, now: float) -> None:
        self._heard_server = True


class DelayProxy:
    """Forward 127.0.0.1:<port> to an upstream address, delaying each direction by ``delay``."""

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        delay: float = DEFAULT_DELAY,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
    ) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._listen = (listen_host, listen_port)
        self.delay = delay
        self._counters = _Counters()
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[asyncio.Task[None]] = set()

    # -- running in a background thread -------------------------------------------------------

    def start(self) -> int:
        """Start serving from a background thread; return the listening port."""
        ready: threading.Event = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self.open())
            except BaseException as exc:  # reported to the starting thread
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self.close())
                loop.close()

        self._thread = threading.Thread(target=run, name="delay-proxy", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        return self.port

    def stop(self) -> None:
        """Stop the background thread started by start(), closing every connection."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._thread = None

    def stats(self) -> ProxyStats:
        """A consistent snapshot of the counters, safe to call from any thread."""
        if self._thread is None or self._loop is None:
            return self._counters.snapshot()
        future = asyncio.run_coroutine_threadsafe(self._snapshot(), self._loop)
        return future.result()

    async def _snapshot(self) -> ProxyStats:
        return self._counters.snapshot()

    # -- running in the caller's event loop ----------------------------------------------------

    async def open(self) -> None:
        """Start listening in the running loop."""
        host, port = self._listen
        self._server = await asyncio.start_server(self._accept, host, port)

    async def close(self) -> None:
        """Stop listening and abort every open connection."""
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("proxy is not listening")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    # -- one connection ------------------------------------------------------------------------

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer))
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)

    async def _serve(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        self._counters.connections += 1
        try:
            u_reader, u_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            c_writer.transport.abort()
            return
        turn = _Conversation(self._counters, idle_gap=self.delay)
        up = self._relay(c_reader, u_writer, upstream=True, on_arrival=turn.client_arrived)
        down = self._relay(u_reader, c_writer, upstream=False, on_sent=turn.server_delivered)
        tasks = [asyncio.ensure_future(up), asyncio.ensure_future(down)]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        except asyncio.CancelledError:  # close(): drop both sides at once
            _abort(c_writer, u_writer)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        errors = [exc for t in tasks if t.done() and (exc := t.exception()) is not None]
        if not errors:  # both directions reached end of stream: flush and close politely
            await _close(c_writer, u_writer)
            return
        _abort(c_writer, u_writer)  # a reset or write error on one side ends both
        await asyncio.gather(*tasks, return_exceptions=True)
        for error in errors:
            if not isinstance(error, OSError):
                raise error  # a bug, not a network event: let asyncio report it

    async def _relay(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        *,
        upstream: bool,
        on_arrival: Callable[[float], None] | None = None,
        on_sent: Callable[[float], None] | None = None,
    ) -> None:
        """Move one direction through a delay line until end of stream or reset."""
        line: asyncio.Queue[_Item] = asyncio.Queue(QUEUE_CHUNKS)
        feeder = asyncio.ensure_future(self._feed(src, line, upstream, on_arrival))
        try:
            await self._emit(line, dst, on_sent)
        finally:
            feeder.cancel()
            await asyncio.gather(feeder, return_exceptions=True)

    async def _feed(
        self,
        src: asyncio.StreamReader,
        line: asyncio.Queue[_Item],
        upstream: bool,
        on_arrival: Callable[[float], None] | None,
    ) -> None:
        """Read chunks, stamp them with their due time, queue them (blocking when full)."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                data: bytes | None = await src.read(CHUNK_SIZE)
            except OSError:
                data = _RESET
            now = loop.time()
            if data:
                self._count_bytes(len(data), upstream)
                if on_arrival is not None:
                    on_arrival(now)
            await line.put((now + self.delay, data))
            if not data:
                return

    async def _emit(
        self,
        line: asyncio.Queue[_Item],
        dst: asyncio.StreamWriter,
        on_sent: Callable[[float], None] | None,
    ) -> None:
        """Write each queued chunk at its due time; forward end of stream as half-close or reset."""
        loop = asyncio.get_running_loop()
        while True:
            due, data = await line.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if data is _RESET:
                dst.transport.abort()
                return
            if data == _EOF:
                if dst.can_write_eof() and not dst.is_closing():
                    dst.write_eof()
                return
            dst.write(data)
            sent = loop.time()
            self._counters.chunks_forwarded += 1
            self._counters.total_delay += sent - (due - self.delay)
            if on_sent is not None:
                on_sent(sent)
            await dst.drain()

    def _count_bytes(self, n: int, upstream: bool) -> None:
        if upstream:
            self._counters.bytes_up += n
        else:
            self._counters.bytes_down += n


def _abort(*writers: asyncio.StreamWriter) -> None:
    for writer in writers:
        writer.transport.abort()


async def _close(*writers: asyncio.StreamWriter) -> None:
    for writer in writers:
        writer.close()
    for writer in writers:
        try:
            await writer.wait_closed()
        except OSError:
            pass


# -- the proxy as a child process -------------------------------------------------------------


class ProxyProcess:
    """Run the proxy in a child process (``--control`` mode) and read its counters over stdio.

    The control protocol is one line each way: the child prints its port, then answers every
    ``stats`` line on stdin with one JSON line on stdout; end of stdin stops it.
    """

    def __init__(
        self, upstream_host: str, upstream_port: int, delay: float = DEFAULT_DELAY
    ) -> None:
        self._args = [
            sys.executable, __file__, "--control",
            "--upstream", f"{upstream_host}:{upstream_port}", "--delay", repr(delay),
        ]  # fmt: skip
        self._proc: subprocess.Popen[str] | None = None
        self.port = 0

    def start(self) -> int:
        self._proc = subprocess.Popen(
            self._args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        self.port = int(self._readline())
        return self.port

    def stats(self) -> ProxyStats:
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write("stats\n")
        self._proc.stdin.flush()
        return ProxyStats(**json.loads(self._readline()))

    def stop(self) -> None:
        if self._proc is None:
            return
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._proc = None

    def __enter__(self) -> ProxyProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _readline(self) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"delay proxy exited with status {self._proc.wait()}")
        return line


# -- script -----------------------------------------------------------------------------------


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def _serve_control(proxy: DelayProxy, stdin: IO[str], stdout: IO[str]) -> None:
    print(proxy.port, file=stdout, flush=True)
    for line in stdin:
        if line.strip() == "stats":
            print(json.dumps(dataclasses.asdict(proxy.stats())), file=stdout, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", type=_address, required=True, help="HOST:PORT to forward to")
    parser.add_argument("--listen", type=_address, default=("127.0.0.1", 0), help="HOST:PORT")
    parser.add_argument("--delay", type=float, default=DEFAULT_DELAY, help="one-way seconds")
    parser.add_argument("--control", action="store_true", help="stdio control protocol")
    args = parser.parse_args(argv)
    (upstream_host, upstream_port), (listen_host, listen_port) = args.upstream, args.listen
    proxy = DelayProxy(upstream_host, upstream_port, args.delay, listen_host, listen_port)
    port = proxy.start()
    try:
        if args.control:
            _serve_control(proxy, sys.stdin, sys.stdout)
        else:
            route = f"{listen_host}:{port} -> {upstream_host}:{upstream_port}"
            delay = f"{args.delay * 1000:g} ms each way"
            print(f"forwarding {route}, {delay}; Ctrl-C stops", flush=True)
            threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        stats = proxy.stats()
        proxy.stop()
        if not args.control:
            print(stats, file=sys.stderr)


if __name__ == "__main__":
    main()
