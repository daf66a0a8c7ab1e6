"""A real HAProxy in front of SMTP front ends, started and stopped by a test.

``HAProxy`` writes a config from ``haproxy_config`` (the same settings as the
documented recipe, ``contrib/haproxy/haproxy.cfg``; ``docs/haproxy.md`` says
why each is there) and runs Debian's ``/usr/sbin/haproxy -f CFG -db`` in the
foreground. It connects to the front ends *from* ``127.0.0.2`` (``source`` on
each server line), so the proxy's address differs from the test clients'
(``127.0.0.3``, ``127.0.0.4``): a front end that trusts PROXY only from
``127.0.0.2/32`` proves both that it reads the real client from the header
and that it refuses the header from anyone else.

Its admin socket (``stats socket``) answers ``show stat``: ``servers()``
reads each server's state (UP/DOWN) and sessions so far, which is how a test
waits for the health checks and sees connections spread. Every wait is
bounded; ``stop`` terminates, then kills.
"""

from __future__ import annotations

import csv
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .processes import terminate

__all__ = ["HAPROXY", "HAProxy", "ServerState", "haproxy_config", "PROXY_SOURCE"]

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
PROXY_SOURCE = "127.0.0.2"  # the address HAProxy connects to the front ends from


@dataclass(frozen=True)
class Backend:
    """One front end: its SMTP address and, if it has one, its health endpoint's port
    (checked with ``GET /health``; without it HAProxy checks the SMTP greeting)."""

    host: str
    port: int
    health_port: int | None = None


@dataclass(frozen=True)
class ServerState:
    name: str
    status: str  # UP, DOWN, "UP 1/2" while rising, MAINT...
    sessions: int  # sessions handed to this server so far (stot)

    @property
    def up(self) -> bool:
        return self.status == "UP"


def haproxy_config(listen: tuple[str, int], backends: Sequence[Backend], *, source: str = PROXY_SOURCE,
                   stats_socket: Path | None = None, inter: str = "2s") -> str:
    """The recipe's config for these front ends (see docs/haproxy.md for each line).

    A front end with a health port is checked over HTTP (``GET /health``: 200
    while its broker answers, 503 otherwise), so one that cannot queue leaves
    the rotation; without one, HAProxy checks the SMTP dialogue itself
    (``option smtpchk``: greeting and EHLO), with a PROXY header first
    (``check-send-proxy``), as the front end requires from it."""
    http = all(b.health_port is not None for b in backends)
    lines = [
        "global",
        "    log stderr format raw local0 info",
        "    maxconn 4096",
        *([f"    stats socket {stats_socket} mode 600 level admin"] if stats_socket else []),
        "",
        "defaults",
        "    mode tcp",
        "    log global",
        "    option tcplog",
        "    option dontlognull",
        "    timeout connect 5s",
        "    timeout client 6m",
        "    timeout server 6m",
        "    timeout client-fin 30s",
        "    timeout server-fin 30s",
        "    timeout check 5s",
        "    retries 3",
        "    option redispatch",
        "",
        "frontend smtp",
        f"    bind {listen[0]}:{listen[1]}",
        "    default_backend mailwire",
        "",
        "backend mailwire",
        "    balance leastconn",
    ]
    if http:
        lines += ["    option httpchk GET /health", "    http-check expect status 200"]
    else:
        lines += ["    option smtpchk EHLO haproxy.check"]
    lines.append(f"    default-server source {source} send-proxy-v2 check inter {inter} fall 2 rise 2")
    for number, backend in enumerate(backends, 1):
        check = f" port {backend.health_port}" if http else " check-send-proxy"
        lines.append(f"    server front{number} {backend.host}:{backend.port}{check}")
    return "\n".join(lines) + "\n"


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class HAProxy:
    """HAProxy on ``127.0.0.1:<port>`` (a free one unless given) in front of ``backends``."""

    def __init__(self, directory: Path, backends: Sequence[Backend], *, port: int | None = None,
                 inter: str = "2s") -> None:
        self.directory = directory
        self.backends = list(backends)
        self.port = port or _free_port()
        self.socket_path = directory / "haproxy.sock"
        self.config_path = directory / "haproxy.cfg"
        self.log_path = directory / "haproxy.log"
        self.inter = inter
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> tuple[str, int]:
        return "127.0.0.1", self.port

    def start(self, timeout: float = 10.0) -> None:
        self.config_path.write_text(haproxy_config(
            self.address, self.backends, stats_socket=self.socket_path, inter=self.inter))
        check = subprocess.run([HAPROXY, "-c", "-q", "-f", str(self.config_path)],
                               capture_output=True, text=True, timeout=timeout)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy refused its config:\n{check.stdout}{check.stderr}")
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen([HAPROXY, "-f", str(self.config_path), "-db"],
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while not self._listening():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"haproxy did not start on port {self.port}:\n{self.log()}")
            time.sleep(0.05)

    def _listening(self) -> bool:
        if not self.socket_path.exists():
            return False
        try:
            self.command("show info")
        except OSError:
            return False
        return True

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def command(self, line: str, timeout: float = 5.0) -> str:
        """One command on the admin socket; its whole answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(self.socket_path))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    def servers(self) -> dict[str, ServerState]:
        """Each front end's state and sessions so far, from ``show stat``."""
        text = self.command("show stat").lstrip("# ")
        states = {}
        for row in csv.DictReader(text.splitlines()):
            if row.get("pxname") == "mailwire" and row.get("svname") not in ("FRONTEND", "BACKEND"):
                states[row["svname"]] = ServerState(row["svname"], row["status"], int(row["stot"] or 0))
        return states

    def wait_servers(self, up: int, timeout: float = 20.0) -> dict[str, ServerState]:
        """Wait until exactly ``up`` front ends pass their health checks and the
        others have failed theirs (no server half-way, "UP 1/2" or "DOWN 1/2")."""
        deadline = time.monotonic() + timeout
        while True:
            states = self.servers()
            settled = all(s.status in ("UP", "DOWN") for s in states.values())
            if settled and sum(s.up for s in states.values()) == up:
                return states
            if time.monotonic() > deadline:
                raise AssertionError(f"HAProxy sees {states}, not {up} up, after {timeout}s\n{self.log()}")
            time.sleep(0.1)

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is not None:
            terminate(self.process, timeout)
            self.process = None
