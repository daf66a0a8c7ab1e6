"""``mailwire serve --loop`` and ``mailwire --version``: the event loop a server runs on, and what a user is told.

The server itself is tested on both loops elsewhere (test_tls_loops, test_unix_mode,
test_shutdown_grace, test_reading); here: the option picks the loop it names, ``auto``
takes uvloop only when it is installed, asking for uvloop without it is a usage error,
and ``--version`` says whether the core is compiled.
"""

from __future__ import annotations

import asyncio
import os
import smtplib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest

import mailwire
from mailwire.cli.loop import use_loop

from .test_cli_serve import MSG, SUMMARY, TIMEOUT, Serve, serve  # noqa: F401 - serve is a fixture

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


@pytest.fixture
def no_uvloop(tmp_path: Path) -> dict[str, str]:
    """An environment in which ``import uvloop`` fails, as where it is not installed."""
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "uvloop.py").write_text("raise ImportError('uvloop is not installed')\n")
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(hide), os.environ.get("PYTHONPATH")]))}


@pytest.fixture
def default_policy() -> Iterator[None]:
    yield
    asyncio.set_event_loop_policy(None)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop", "auto"])
def test_serve_runs_on_the_loop_it_names(serve: Callable[..., Serve], loop: str) -> None:
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    server = serve("--port", "0", "--sink", "--loop", loop, "-v")
    with smtplib.SMTP("127.0.0.1", server.port, timeout=TIMEOUT) as client:
        assert client.sendmail("alice@example.org", ["bob@example.net"], MSG) == {}
    assert server.line() == SUMMARY
    assert server.stop() == 0
    has_uvloop = loop == "uvloop" or (loop == "auto" and _importable("uvloop"))
    core = "compiled" if mailwire.__compiled__ else "pure Python"
    assert f"event loop: {'uvloop' if has_uvloop else 'asyncio'}; core: {core}" in server.stderr


def test_auto_without_uvloop_runs_asyncio(serve: Callable[..., Serve], no_uvloop: dict[str, str]) -> None:
    server = serve("--port", "0", "--sink", "-v", env=no_uvloop)
    assert server.stop() == 0
    assert "event loop: asyncio;" in server.stderr


def test_uvloop_without_uvloop_is_a_usage_error(serve: Callable[..., Serve], no_uvloop: dict[str, str]) -> None:
    server = serve("--port", "0", "--sink", "--loop", "uvloop", env=no_uvloop, wait=False)
    assert server.wait() == 2
    assert server.stderr == (
        "mailwire serve: error: --loop uvloop needs uvloop: pip install 'mailwire[uvloop]' (not on Windows)\n"
    )


def test_use_loop_sets_the_policy_only_for_uvloop(default_policy: None) -> None:
    before = asyncio.get_event_loop_policy()
    assert use_loop("asyncio") == "asyncio"
    assert asyncio.get_event_loop_policy() is before
    uvloop = pytest.importorskip("uvloop")
    assert use_loop("auto") == "uvloop"
    assert isinstance(asyncio.get_event_loop_policy(), uvloop.EventLoopPolicy)


def test_version_says_which_core_runs(no_uvloop: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, "-m", "mailwire", "--version"], capture_output=True, text=True,
                          timeout=TIMEOUT, env={**os.environ, **no_uvloop})
    core = "compiled core (mypyc)" if mailwire.__compiled__ else "pure Python"
    assert done.returncode == 0
    assert done.stdout == f"mailwire {mailwire.__version__}: {core}; event loop: asyncio only (no uvloop)\n"


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True
