"""Unix sockets another user can reach: the socket's mode, set before anyone can connect.

An MTA's LMTP client runs as its own user (Postfix's as ``postfix``) and needs
write permission on the socket to connect; the server used to leave the mode
to the umask (0755 under the usual 022), so Postfix got "Permission denied".
The default is now 0666 (Postfix's own sockets' mode), ``unix_mode`` /
``start_unix(mode=)`` / ``--unix-mode`` change it, and the umask plays no
part. The other user is real: a child process run with ``user=`` (these tests
need root to switch users, and skip without it) connects and reports what it
got.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from mailwire.server.config import ServerConfig

from .conftest import ServerThread
from .test_cli_serve import Serve, serve  # noqa: F401 - the fixture

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="Unix sockets"),
    pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="switching users needs root"),
]

# What the other user's process runs: connect, read the greeting, say what happened.
PROBE = """
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
try:
    s.connect(sys.argv[1])
    print(s.recv(100).decode().split(" ")[0])
except OSError as err:
    print(type(err).__name__)
"""


def connect_as(user: str, path: Path) -> str:
    """``220`` if ``user`` got the greeting, else the name of the error it got."""
    entry = pwd.getpwnam(user)
    # The interpreter must be one ``user`` may run: ours may live under /root.
    for python in (sys.executable, "/usr/bin/python3"):
        try:
            done = subprocess.run(
                [python, "-I", "-S", "-c", PROBE, str(path)], user=entry.pw_uid, group=entry.pw_gid,
                extra_groups=[], capture_output=True, text=True, timeout=20, cwd="/",
            )
        except PermissionError:  # exec refused
            continue
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()
    pytest.skip(f"no Python interpreter that {user} may run")


@pytest.fixture
def socket_dir(short_tmp: Path) -> Path:
    short_tmp.chmod(0o711)  # other users may reach what is inside, not list it
    return short_tmp


def mode_of(path: Path) -> int:
    st = path.stat()
    assert stat.S_ISSOCK(st.st_mode)
    return stat.S_IMODE(st.st_mode)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_default_mode_lets_another_user_connect(
    server_factory: Callable[..., ServerThread], socket_dir: Path, loop: str
) -> None:
    path = socket_dir / "lmtp.sock"
    loop_factory = pytest.importorskip("uvloop").new_event_loop if loop == "uvloop" else asyncio.new_event_loop
    server = server_factory(host=None, unix_path=str(path), lmtp=True, loop_factory=loop_factory)
    assert mode_of(path) == 0o666
    assert connect_as("nobody", path) == "220"
    server.raw_unix().cmd("QUIT", 221)  # and its owner, of course


@pytest.mark.parametrize("where", ["config", "start_unix"])
def test_a_restrictive_mode_keeps_other_users_out(
    server_factory: Callable[..., ServerThread], socket_dir: Path, where: str
) -> None:
    path = socket_dir / "private.sock"
    if where == "config":
        server = server_factory(host=None, unix_path=str(path), unix_mode=0o600)
    else:
        server = server_factory()  # TCP; then a Unix socket through the API, with its own mode
        assert server.loop is not None
        listening = server.server.start_unix(str(path), mode=0o600)
        asyncio.run_coroutine_threadsafe(listening, server.loop).result(10)
        server.unix_path = str(path)
    assert mode_of(path) == 0o600
    assert connect_as("nobody", path) == "PermissionError"
    server.raw_unix().cmd("QUIT", 221)


def test_bad_modes_are_refused() -> None:
    for bad in (0o1000, -1, 0o4777):
        with pytest.raises(ValueError, match="0o777"):
            ServerConfig(hostname="mx.test", unix_mode=bad)


@pytest.mark.parametrize("umask", [0o077, 0o000], ids=["umask-077", "umask-000"])
def test_serve_default_mode_lets_postfix_connect_whatever_the_umask(
    serve: Callable[..., Serve], socket_dir: Path, umask: int
) -> None:
    path = socket_dir / "lmtp.sock"
    server = serve("--lmtp", "--unix", str(path), "--sink", "-q", umask=umask)
    assert mode_of(path) == 0o666
    assert connect_as("postfix", path) == "220"
    assert server.stop() == 0


@pytest.mark.parametrize("option, mode", [("0600", 0o600), ("0o640", 0o640), ("660", 0o660)])
def test_serve_unix_mode_option(serve: Callable[..., Serve], socket_dir: Path, option: str, mode: int) -> None:
    path = socket_dir / "lmtp.sock"
    server = serve("--lmtp", "--unix", str(path), "--unix-mode", option, "--sink", "-q", umask=0)
    assert mode_of(path) == mode  # exactly, although the umask would have left it 0777
    assert connect_as("postfix", path) == "PermissionError"
    assert server.stop() == 0


@pytest.mark.parametrize("args, words", [
    (["--unix", "{sock}", "--unix-mode", "0999"], "argument --unix-mode: expected an octal mode"),
    (["--unix", "{sock}", "--unix-mode", "rw-rw-rw-"], "argument --unix-mode: expected an octal mode"),
    (["--unix", "{sock}", "--unix-mode", "01666"], "argument --unix-mode: expected an octal mode"),
    (["--unix", "{sock}", "--unix-mode", ""], "argument --unix-mode: expected an octal mode"),
    (["--unix-mode", "0660"], "--unix-mode needs --unix"),
])
def test_serve_bad_unix_mode_one_line_exit_2(
    serve: Callable[..., Serve], socket_dir: Path, args: list[str], words: str
) -> None:
    server = serve("--sink", *(a.format(sock=socket_dir / "x.sock") for a in args), wait=False)
    assert server.wait() == 2
    lines = server.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mailwire") and words in lines[0], lines
    assert not (socket_dir / "x.sock").exists()
