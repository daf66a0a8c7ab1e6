"""``mailwire serve --max-messages/--max-age``: the oldest are pruned, at start, on arrival and over time.

Run as the real command (a process, ``serve`` fixture), with and without
the web inbox; the Maildir's files are what is checked.
"""

from __future__ import annotations

import json
import os
import re
import smtplib
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from mailwire.cli.serve_retention import duration

from .test_cli_serve import TIMEOUT, Serve, serve  # noqa: F401  (the fixture)

DAY = 86400.0


def _message(n: int) -> bytes:
    return f"From: a@example.org\r\nTo: b@example.net\r\nSubject: number {n}\r\n\r\nhello {n}\r\n".encode()


def _files(maildir: Path) -> list[Path]:
    return [p for sub in ("new", "cur") for p in (maildir / sub).iterdir()]


def _subjects(maildir: Path) -> set[str]:
    found = (re.search(rb"Subject: (number \d+)", p.read_bytes()) for p in _files(maildir))
    return {m[1].decode() for m in found if m}


def _until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT * 2
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {TIMEOUT * 2} s: {what}")
        time.sleep(0.05)


def _plant(maildir: Path, n: int, age: float) -> None:
    for sub in ("tmp", "new", "cur"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    path = maildir / "new" / f"{1000 + n}.planted{n}.test"
    path.write_bytes(_message(n))
    when = time.time() - age
    os.utime(path, (when, when))


def test_max_age_prunes_the_old_at_start_and_keeps_the_new(serve: Callable[..., Serve], tmp_path: Path) -> None:
    maildir = tmp_path / "mail"
    for n in range(5):
        _plant(maildir, n, 3 * DAY)
    _plant(maildir, 5, 60)
    server = serve("--port", "0", "--max-age", "1d")
    assert server.banner.endswith(", keeping none older than 1d"), server.banner
    assert _subjects(maildir) == {"number 5"}
    with smtplib.SMTP("127.0.0.1", server.port, timeout=TIMEOUT) as client:
        client.sendmail("a@example.org", ["b@example.net"], _message(6))
    assert server.stop() == 0
    assert _subjects(maildir) == {"number 5", "number 6"}


def test_max_messages_keeps_the_newest_on_arrival(serve: Callable[..., Serve], tmp_path: Path) -> None:
    maildir = tmp_path / "mail"
    server = serve("--port", "0", "--max-messages", "3")
    assert server.banner.endswith(", keeping at most 3 messages"), server.banner
    with smtplib.SMTP("127.0.0.1", server.port, timeout=TIMEOUT) as client:
        for n in range(7):
            client.sendmail("a@example.org", ["b@example.net"], _message(n))
    _until(lambda: len(_files(maildir)) == 3, "three messages left")
    assert _subjects(maildir) == {"number 4", "number 5", "number 6"}
    assert server.stop() == 0


def test_max_age_empties_an_idle_catcher_over_time(serve: Callable[..., Serve], tmp_path: Path) -> None:
    maildir = tmp_path / "mail"
    server = serve("--port", "0", "--max-age", "2s", "--max-messages", "10")
    assert server.banner.endswith(", keeping at most 10 messages and none older than 2s"), server.banner
    with smtplib.SMTP("127.0.0.1", server.port, timeout=TIMEOUT) as client:
        client.sendmail("a@example.org", ["b@example.net"], _message(1))
    _until(lambda: len(_files(maildir)) == 1, "the message stored")
    _until(lambda: len(_files(maildir)) == 0, "the message pruned by age")
    assert server.stop() == 0


def test_with_the_web_inbox_the_api_lists_what_is_kept(serve: Callable[..., Serve], tmp_path: Path) -> None:
    server = serve("--port", "0", "--max-messages", "2", web=True)
    found = re.search(r", keeping at most 2 messages, web inbox on (http://127\.0\.0\.1:\d+/)$", server.banner)
    assert found, server.banner
    with smtplib.SMTP("127.0.0.1", server.port, timeout=TIMEOUT) as client:
        for n in range(4):
            client.sendmail("a@example.org", ["b@example.net"], _message(n))
    with urllib.request.urlopen(found[1] + "api/v1/messages", timeout=TIMEOUT) as reply:
        listed = json.loads(reply.read())
    assert listed["total"] == 2
    assert [m["Subject"] for m in listed["messages"]] == ["number 3", "number 2"]
    assert _subjects(tmp_path / "mail") == {"number 2", "number 3"}
    assert server.stop() == 0


@pytest.mark.parametrize("args, message", [
    (["--max-age", "5"], "argument --max-age: expected a duration such as 90s, 30m, 2h or 7d, not '5'"),
    (["--max-age", "0d"], "argument --max-age: expected a duration"),
    (["--max-age", "2 weeks"], "argument --max-age: expected a duration"),
    (["--max-messages", "0"], "argument --max-messages: expected a whole number of at least 1, not '0'"),
    (["--max-messages", "many"], "argument --max-messages: expected a whole number"),
    (["--sink", "--max-messages", "3"], "prune the Maildir store: not with --print, --sink or --relay"),
    (["--workers", "2", "--no-web", "--max-age", "1h"], "--max-messages and --max-age need --workers 1"),
])
def test_bad_values_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    done = subprocess.run([sys.executable, "-m", "mailwire", "serve", "--port", "0", *args],
                          capture_output=True, text=True, timeout=TIMEOUT * 3)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("mailwire serve: error: ") and message in done.stderr, done.stderr


def test_durations() -> None:
    assert [duration(t) for t in ("90s", "30m", "2h", "7d", "1w", "1.5h", "2H")] == [
        90, 1800, 7200, 7 * DAY, 7 * DAY, 5400, 7200]
