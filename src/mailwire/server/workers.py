"""Many server processes on one listening address, supervised.

``Workers(backend_factory, config, host=..., port=..., count=N).run()`` (or
``serve_workers``) serves one address from N processes, so a server uses N
cores. The strategy, and why:

- **fork, not spawn.** A worker gets what the parent built: the
  ``ServerConfig`` (an ``ssl.SSLContext``, an authenticator, a hook: none of
  them picklable) and the backend factory (any callable, a closure too).
  spawn would demand that all of it pickle and that the program be
  importable from the top. Forking is safe where nothing runs but the
  caller: ``run`` refuses to start inside an event loop, and the parent
  never makes one; each worker makes its own (``asyncio.run``) after the
  fork, then calls the factory there, so a backend's threads, files and
  connections belong to the process that uses them. Embedders: call
  ``run`` from the main thread before starting threads. POSIX only.
- **One address.** The parent resolves and binds before any worker starts,
  so a port in use is one error, at once, and port 0 is chosen once. With
  SO_REUSEPORT (Linux: the kernel spreads connections evenly over the
  listening sockets of the group) the parent holds a bound socket that
  does not listen (it keeps the port; only listening sockets get
  connections) and each worker binds and listens on its own. Elsewhere, or
  with ``reuse_port=False``, or for a Unix socket, the parent listens and
  the workers accept from the socket they inherit (``listening.py``).
  (With REUSEPORT, the connections queued on a worker that dies are
  reset; clients retry, and no message was answered in them. The shared
  socket keeps them for the next worker, but wakes every worker for each
  connection and may give one worker more than its share.)
- **Supervision.** A synchronous loop (``select`` over a self-pipe that
  signals wake) reaps workers, restarts each that dies, whatever killed it,
  with one log line saying which, its pid and how it ended. A worker says
  "ready" on a pipe once it listens; one that dies before (its factory
  raised, say) is restarted after a back-off that doubles (``Restart``),
  and after ``Restart.give_up`` such failures in a row, or at the very
  first start, the supervisor stops everything and raises
  ``WorkersFailed`` with the worker's own error. SIGTERM or SIGINT to the
  supervisor sends SIGTERM to every worker, which stops as one process
  does (``stopping.py``: ``grace`` seconds for messages in progress, then
  421); a second signal stops them at once. Workers ignore SIGINT, so
  Ctrl-C on a terminal (sent to the whole group) means one stop, not two.
  A worker whose supervisor vanished (killed) stops too: it watches a pipe
  only the supervisor holds open.
- **One output.** Each worker's stdout is a pipe to the supervisor, which
  writes only whole lines (all a worker's that came at once, in one
  write) to its own stdout. Why not let workers write to an inherited fd,
  a line a write: a write is atomic on a pipe only up to PIPE_BUF (4096
  octets), and a summary line with many recipients or a long subject is
  longer; through the supervisor there is one writer, so lines never mix
  whatever their length or the kind of file. The cost is the supervisor's
  (a read and a write per batch of lines; ``-q`` makes none). The banner
  callback (``on_ready``) runs once every worker listens, before any
  relayed line. stderr is inherited: log lines are short, one write each.
  Whole messages (``Printer``) are not lines: ``serve --print`` keeps to
  one process.

Limits (``Limits.connections``, per-client counts, AUTH failure budgets)
are per worker. Each worker calls the factory, so a ``Maildir`` in each:
safe, as its file names carry the pid; an ``Mbox``: its appends take a
file lock that other processes honour (but a worker killed mid-append
leaves ``mailbox``'s dot-lock behind, which ``Mbox`` does not break: later
appends get 450 until it is removed).
"""

from __future__ import annotations

import asyncio
import errno
import inspect
import logging
import os
import select
import signal
import socket
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from .aio import SMTPServer, _bound_unix_socket, _is_stale_socket, _unlink
from .config import ServerConfig, check_unix_mode
from .listening import BACKLOG, bind_tcp, reuseport_twin
from .session import Backend, Handler
from .stopping import StopSignals

__all__ = ["Workers", "serve_workers", "Restart", "WorkersFailed", "BackendFactory", "usable_cores"]

log = logging.getLogger("mailwire.server.workers")

# Called in each worker, on its loop, after the fork. An async factory is
# awaited before the worker listens, so a backend that must first connect
# somewhere (the queue's front end to its broker) is ready for the first client.
BackendFactory = Callable[[], "Backend | Handler | Awaitable[Backend | Handler]"]
STOP_MARGIN = 5.0  # seconds past the grace before stragglers are killed
READY = b"ready\n"


class WorkersFailed(RuntimeError):
    """The workers cannot start (or keep failing to): the message says why."""


def usable_cores() -> int:
    """The cores this process may run on (``--workers auto``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Restart:
    """How a worker that dies is restarted.

    One that had been listening for ``min_uptime`` seconds is restarted at
    once, one that died sooner after ``first_delay`` seconds (so a worker
    that crashes on every connection does not spin). One that died before
    listening waits ``first_delay`` seconds, doubled with each such failure
    in a row up to ``max_delay``; after ``give_up`` of them in a row the
    supervisor gives up (``WorkersFailed``).
    """

    first_delay: float = 0.1
    max_delay: float = 10.0
    give_up: int = 5
    min_uptime: float = 1.0

    def delay(self, failures: int) -> float:
        """The wait after the ``failures``-th failure to start in a row."""
        return 0.0 if failures <= 0 else min(self.max_delay, self.first_delay * 2 ** (failures - 1))


@dataclass
class _Slot:
    """One worker's place: the process now in it and its record."""

    number: int
    pid: int = 0
    ready_fd: int = -1  # the supervisor's end of the "ready" pipe
    out_fd: int = -1  # the supervisor's end of the worker's stdout
    ready_at: float | None = None
    error: str = ""  # what the worker said when it could not start
    failures: int = 0  # deaths before listening, in a row
    due: float | None = None  # when to start again (backing off)
    pending: bytearray = field(default_factory=bytearray)  # a partial stdout line


def _ended(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with status {code}"


class Workers:
    """N server processes on one address, supervised (see the module docstring).

    ``backend_factory`` is called in each worker to make its backend (a
    ``Backend`` or an ``async def handle(envelope)``; an async factory is
    awaited before the worker listens). ``host``/``port`` as
    ``SMTPServer.start`` (port 0 picks one port for all; ``host`` None or
    a list: several addresses); ``unix`` also (or, with ``host=None`` and
    ``port=None``, only) listens on that Unix socket (``unix_mode``
    default ``config.unix_mode``). ``reuse_port``: None uses SO_REUSEPORT
    where it spreads connections (Linux), False forces the shared socket.
    ``on_ready(addresses)`` runs in the supervisor once every worker
    listens (``mailwire serve`` prints its banner there).
    """

    def __init__(
        self, backend_factory: BackendFactory, config: ServerConfig | None = None, *,
        host: str | Sequence[str] | None = "127.0.0.1", port: int | None = 8025, unix: str | None = None,
        unix_mode: int | None = None, count: int = 1, grace: float = 5.0, reuse_port: bool | None = None,
        restart: Restart = Restart(), on_ready: Callable[[list[Any]], None] | None = None,
    ) -> None:
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"workers: expected a whole number of at least 1, not {count!r}")
        if not hasattr(os, "fork"):
            raise ValueError("several worker processes need os.fork (POSIX)")
        self.backend_factory = backend_factory
        self.config = config if config is not None else ServerConfig()
        self.hosts: list[str | None] = [host] if host is None or isinstance(host, str) else list(host)
        self.port = port
        self.unix = unix
        self.unix_mode = check_unix_mode(self.config.unix_mode if unix_mode is None else unix_mode)
        self.count = count
        self.grace = grace
        if reuse_port is None:
            reuse_port = sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")
        self.reuse_port = reuse_port
        self.restart = restart
        self.on_ready = on_ready
        self._tcp: list[socket.socket] = []
        self._unix: socket.socket | None = None
        self._slots = [_Slot(n) for n in range(1, count + 1)]
        self._signals: list[int] = []
        self._wake = (-1, -1)
        self._lifeline = (-1, -1)
        self._announced = False
        self._listening = False  # in a worker: it said "ready"

    # -- listening (in the supervisor) ------------------------------------------------

    def bind(self) -> list[Any]:
        """Bind every address now (``run`` does if not done); OSError if one
        cannot be. The addresses, as ``SMTPServer.addresses``."""
        if self._tcp or self._unix is not None:
            return self.addresses
        try:
            if self.unix is not None:
                if os.path.exists(self.unix) and _is_stale_socket(self.unix):
                    os.unlink(self.unix)
                self._unix = _bound_unix_socket(self.unix, self.unix_mode)
                self._unix.listen(BACKLOG)
            if self.port is not None or self.unix is None:
                self._tcp = bind_tcp(self.hosts, self.port or 0, self.reuse_port)
        except BaseException:
            self._close_listeners()
            raise
        return self.addresses

    @property
    def addresses(self) -> list[Any]:
        unix = [self._unix.getsockname()] if self._unix is not None else []
        return unix + [sock.getsockname() for sock in self._tcp]

    def _close_listeners(self) -> None:
        for sock in self._tcp:
            sock.close()
        self._tcp = []
        if self._unix is not None:
            self._unix.close()
            self._unix = None
            if self.unix is not None:
                _unlink(self.unix)

    # -- supervising -------------------------------------------------------------------

    def run(self) -> int:
        """Serve until SIGTERM or SIGINT: 0 once every worker has stopped
        gracefully, 1 if a second signal (or the grace's backstop) cut it
        short. WorkersFailed if workers cannot start; OSError if an address
        cannot be bound."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError("Workers.run forks: call it outside any event loop")
        self.bind()
        previous = self._install_signals()
        try:
            for slot in self._slots:
                self._start(slot)
            return self._supervise()
        finally:
            self._kill_all()
            self._restore_signals(previous)
            for fd in (*self._wake, *self._lifeline):
                os.close(fd)
            self._close_listeners()

    def _install_signals(self) -> dict[int, Any]:
        self._wake = os.pipe()
        self._lifeline = os.pipe()
        for fd in self._wake:
            os.set_blocking(fd, False)
        previous: dict[int, Any] = {
            int(signum): signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD)
        }
        previous[-1] = signal.set_wakeup_fd(self._wake[1])
        for signum in previous:
            if signum > 0:
                signal.signal(signum, lambda n, _frame: self._signals.append(n))
        return previous

    def _restore_signals(self, previous: dict[int, Any]) -> None:
        signal.set_wakeup_fd(previous.pop(-1))
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    def _supervise(self) -> int:
        stopping: float | None = None  # the deadline once stopping
        status = 0
        while any(slot.pid for slot in self._slots) or stopping is None:
            self._wait(stopping)
            self._reap(stopping is not None)
            while self._signals:
                signum = self._signals.pop(0)
                if signum == signal.SIGCHLD:
                    continue
                name = signal.Signals(signum).name
                if stopping is None:
                    log.info("%s: stopping the workers; messages in progress have %gs to end", name, self.grace)
                    stopping = time.monotonic() + self.grace + STOP_MARGIN
                else:
                    log.warning("%s again: stopping the workers now", name)
                    stopping, status = min(stopping, time.monotonic() + STOP_MARGIN), 1
                self._signal_all(signal.SIGTERM)
            if stopping is not None and time.monotonic() >= stopping and any(s.pid for s in self._slots):
                log.warning("workers still running %gs past the grace: killing them", STOP_MARGIN)
                self._signal_all(signal.SIGKILL)
                stopping, status = float("inf"), 1
            if stopping is None:
                self._start_due()
        for slot in self._slots:
            self._drain(slot)
        return status

    def _wait(self, stopping: float | None) -> None:
        """Until a signal, a worker's word or output, or the next timer."""
        now = time.monotonic()
        timers = [s.due for s in self._slots if s.due is not None and stopping is None]
        timers += [stopping] if stopping is not None else []
        timeout = max(0.0, min([now + 1.0, *timers]) - now)
        fds = [self._wake[0]] + [s.ready_fd for s in self._slots if s.ready_fd >= 0]
        if self._announced:
            fds += [s.out_fd for s in self._slots if s.out_fd >= 0]
        readable, _, _ = select.select(fds, [], [], timeout)
        for fd in readable:
            if fd == self._wake[0]:
                while _read(fd):
                    pass
                continue
            for slot in self._slots:
                if fd == slot.ready_fd:
                    self._hear(slot)
                elif fd == slot.out_fd:
                    self._relay(slot)

    def _hear(self, slot: _Slot) -> None:
        """Read the worker's "ready" (or its error) till the pipe closes."""
        data = _read(slot.ready_fd)
        if data == READY:
            slot.ready_at = time.monotonic()
        elif data:
            slot.error = data.decode("utf-8", "replace").strip()
        else:
            os.close(slot.ready_fd)
            slot.ready_fd = -1
        if not self._announced and all(s.ready_at is not None for s in self._slots):
            self._announced = True
            if self.on_ready is not None:
                self.on_ready(self.addresses)

    def _relay(self, slot: _Slot) -> None:
        """Write the worker's complete stdout lines (all that came, in one
        write); at its end, what is left as a last line."""
        data = _read(slot.out_fd)
        final = not data
        if final:
            os.close(slot.out_fd)
            slot.out_fd = -1
        slot.pending += data
        end = len(slot.pending) if final else slot.pending.rfind(b"\n") + 1
        if end:
            lines = bytes(slot.pending[:end])
            del slot.pending[:end]
            _write_stdout(lines if lines.endswith(b"\n") else lines + b"\n")

    def _drain(self, slot: _Slot) -> None:
        while slot.out_fd >= 0:
            self._relay(slot)

    def _reap(self, stopping: bool) -> None:
        for slot in self._slots:
            if not slot.pid:
                continue
            pid, status = os.waitpid(slot.pid, os.WNOHANG)
            if pid == 0:
                continue
            slot.pid = 0
            while slot.ready_fd >= 0:
                self._hear(slot)  # its last word, if any
            self._drain(slot)
            how = _ended(status)
            if stopping:
                log.info("worker %d (pid %d) %s", slot.number, pid, how)
                continue
            self._plan_restart(slot, pid, how)

    def _plan_restart(self, slot: _Slot, pid: int, how: str) -> None:
        now = time.monotonic()
        ready_at, slot.ready_at = slot.ready_at, None
        if ready_at is None:
            why = slot.error or how
            if not self._announced:
                raise WorkersFailed(f"worker {slot.number} could not start: {why}")
            slot.failures += 1
            if slot.failures >= self.restart.give_up:
                raise WorkersFailed(f"worker {slot.number} failed to start {slot.failures} times in a row: {why}")
            delay = self.restart.delay(slot.failures)
        else:
            slot.failures = 0
            delay = self.restart.first_delay if now - ready_at < self.restart.min_uptime else 0.0
        when = f" in {delay:g}s" if delay else ""
        said = f" ({slot.error})" if slot.error and ready_at is None else ""
        log.warning("worker %d (pid %d) %s%s; restarting it%s", slot.number, pid, how, said, when)
        slot.error = ""
        slot.due = now + delay

    def _start_due(self) -> None:
        now = time.monotonic()
        for slot in self._slots:
            if slot.due is not None and slot.due <= now:
                self._start(slot)

    def _signal_all(self, signum: int) -> None:
        for slot in self._slots:
            slot.due = None
            if slot.pid:
                try:
                    os.kill(slot.pid, signum)
                except ProcessLookupError:
                    pass

    def _kill_all(self) -> None:
        """On the way out (given up, or an error): no worker outlives us.
        Those still running stop as on SIGTERM, killed if not by the end
        of the grace."""
        self._signal_all(signal.SIGTERM)
        deadline = time.monotonic() + self.grace + STOP_MARGIN
        while any(s.pid for s in self._slots) and time.monotonic() < deadline:
            readable, _, _ = select.select([s.out_fd for s in self._slots if s.out_fd >= 0], [], [], 0.05)
            for slot in self._slots:
                if slot.out_fd in readable:
                    self._relay(slot)  # a worker blocked on a full pipe would never stop
                if slot.pid and os.waitpid(slot.pid, os.WNOHANG)[0]:
                    slot.pid = 0
        self._signal_all(signal.SIGKILL)
        for slot in self._slots:
            if slot.pid:
                os.waitpid(slot.pid, 0)
                slot.pid = 0
            for fd in (slot.ready_fd, slot.out_fd):
                if fd >= 0:
                    os.close(fd)
            slot.ready_fd = slot.out_fd = -1

    # -- a worker ------------------------------------------------------------------------

    def _start(self, slot: _Slot) -> None:
        slot.due = None
        ready_r, ready_w = os.pipe()
        out_r, out_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # pragma: no cover (the child; coverage traces only the frames it begins after fork)
            os.close(ready_r)
            os.close(out_r)
            self._be_worker(slot, ready_w, out_w)
        os.close(ready_w)
        os.close(out_w)
        slot.pid, slot.ready_fd, slot.out_fd = pid, ready_r, out_r
        slot.pending.clear()
        log.info("worker %d (pid %d) started", slot.number, pid)

    def _be_worker(self, slot: _Slot, ready_w: int, out_w: int) -> NoReturn:
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            others = [fd for s in self._slots if s is not slot for fd in (s.ready_fd, s.out_fd) if fd >= 0]
            for fd in (*self._wake, self._lifeline[1], *others):
                os.close(fd)
            os.dup2(out_w, 1)
            os.close(out_w)
            if self.reuse_port:
                listeners = [reuseport_twin(sock) for sock in self._tcp]
                for sock in self._tcp:
                    sock.close()
            else:
                listeners = list(self._tcp)
            if self._unix is not None:
                listeners.append(self._unix)
            code = asyncio.run(self._serve(listeners, ready_w))
        except BaseException as err:
            if self._listening:  # the supervisor logs how it ended; the traceback says why
                traceback.print_exc()
            else:  # the supervisor logs (or raises) what it says
                log.debug("worker %d could not start", slot.number, exc_info=True)
                text = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
                os.write(ready_w, text.encode("utf-8", "replace") + b"\n")
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass
            os._exit(code)

    async def _serve(self, listeners: list[socket.socket], ready_w: int) -> int:
        signals = StopSignals((signal.SIGTERM,))
        loop = asyncio.get_running_loop()
        loop.add_reader(self._lifeline[0], signals.trigger, "supervisor gone")
        made = self.backend_factory()
        backend = await made if inspect.isawaitable(made) else made
        server = SMTPServer(backend, self.config)
        try:
            for sock in listeners:
                await server.start(None, None, sock=sock)
        except BaseException:
            await server.stop(0)
            raise
        os.write(ready_w, READY)
        os.close(ready_w)
        self._listening = True
        await signals.wait()
        loop.remove_reader(self._lifeline[0])
        return 0 if await signals.stop(server, self.grace) else 1


def _read(fd: int) -> bytes:
    """What a pipe holds (b"" at its end, or if a non-blocking one is empty)."""
    try:
        return os.read(fd, 1 << 16)
    except BlockingIOError:
        return b""
    except OSError as err:
        if err.errno == errno.EBADF:
            return b""
        raise


def _write_stdout(data: bytes) -> None:
    out = getattr(sys.stdout, "buffer", None)
    try:
        if out is not None:
            out.write(data)
        else:
            sys.stdout.write(data.decode("utf-8", "replace"))
        sys.stdout.flush()
    except (OSError, ValueError):
        pass  # stdout gone: the workers serve all the same


def serve_workers(backend_factory: BackendFactory, config: ServerConfig | None = None, **options: Any) -> int:
    """``Workers(backend_factory, config, **options).run()``: serve from
    ``count`` processes until SIGTERM or SIGINT; the exit status."""
    return Workers(backend_factory, config, **options).run()
