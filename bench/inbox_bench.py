"""The catcher's store at size: an index of 10,000 messages listed and searched, and SMTP with the index on.

Two measurements, figures only (no assertion on time):

* ``store``: a Maildir of N messages (default 10,000: text, some with HTML,
  some with an attachment, 50 recipients' mailboxes) written straight into
  ``new/``; then the index rebuilt from it (``Inbox()`` on a Maildir without
  one), an open of an index that is up to date (the staleness check), and
  each list and search the web inbox makes, timed as the median of R
  repeats: the first and the last page, free text found through the
  trigram index and by a scan (under three characters), each filter, a
  mailbox, and a combination.
* ``smtp`` (``--smtp``): the SMTP rate of a server storing into a Maildir
  (``server.backends.Maildir``) against the same server with the catcher
  (``inbox.Catcher``: Maildir plus the index, before each 250), fed by
  Postfix's ``smtp-source`` (20 sessions, 1 KB messages), runs interleaved,
  medians and their ratio.

    .venv/bin/python bench/inbox_bench.py                  # the store, 10,000 messages
    .venv/bin/python bench/inbox_bench.py --count 0 --smtp --messages 8000 --repeat 6
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from mailwire.inbox import Inbox
from mailwire.inbox.summary import envelope_trace

SMTP_SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike".split()


def message_bytes(i: int) -> bytes:
    """Message number ``i``: varied enough for the filters to mean something."""
    words = " ".join(WORDS[(i * k) % len(WORDS)] for k in range(1, 30))
    head = (f"From: Sender {i % 20} <sender{i % 20}@example.com>\r\nTo: user{i % 50}@example.org\r\n"
            f"Subject: Message {i} {WORDS[i % len(WORDS)]}\r\nMessage-ID: <{i}@bench.example>\r\n"
            f"Date: Tue, 01 Oct 2024 10:00:00 +0000\r\nMIME-Version: 1.0\r\n")
    text = f"Hello user{i % 50}, your code is {100000 + i}. {words}\r\n"
    if i % 10 == 0:  # an attachment
        return (head + "Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\n"
                + text + "--B\r\nContent-Type: application/pdf; name=report.pdf\r\n"
                "Content-Transfer-Encoding: base64\r\n\r\n" + "QUJD" * 19 + "\r\n--B--\r\n").encode()
    if i % 3 == 0:  # text and HTML
        return (head + "Content-Type: multipart/alternative; boundary=A\r\n\r\n--A\r\n"
                "Content-Type: text/plain\r\n\r\n" + text + "--A\r\nContent-Type: text/html\r\n\r\n<p>"
                + text + "</p>\r\n--A--\r\n").encode()
    return (head + "Content-Type: text/plain\r\n\r\n" + text).encode()


def build(path: str, count: int) -> None:
    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(path, sub), exist_ok=True)
    start = time.time() - count
    for i in range(count):
        name = os.path.join(path, "new", f"{int(start)}.M{i}P1.bench")
        with open(name, "wb") as file:
            file.write(b"Return-Path: <bench@example.com>\r\n")
            file.write(envelope_trace([f"user{i % 50}@example.org"], None, b"\r\n"))
            file.write(message_bytes(i))
        os.utime(name, (start + i, start + i))


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1000


def store_bench(count: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as path:
        began = time.perf_counter()
        build(path, count)
        print(f"wrote {count} messages in {time.perf_counter() - began:.1f} s")
        began = time.perf_counter()
        inbox = Inbox(path)
        print(f"index rebuilt from the Maildir: {time.perf_counter() - began:.1f} s "
              f"({inbox.list().total} messages)")
        inbox.close()
        print(f"open, index up to date (staleness check): {median_ms(lambda: Inbox(path).close(), repeat):.1f} ms")
        with Inbox(path) as inbox:
            cases: list[tuple[str, Callable[[], object]]] = [
                ("first page (50)", lambda: inbox.list(0, 50)),
                ("last page", lambda: inbox.list(count - 50, 50)),
                ("text, trigram: 'foxtrot'", lambda: inbox.list(0, 50, "foxtrot")),
                ("text, rare: '104242'", lambda: inbox.list(0, 50, "104242")),
                ("text, no match: 'zulu'", lambda: inbox.list(0, 50, "zulu")),
                ("text, short (scan): 'zz'", lambda: inbox.list(0, 50, "zz")),
                ("phrase: '\"your code is 1042\"'", lambda: inbox.list(0, 50, '"your code is 1042"')),
                ("from:sender7", lambda: inbox.list(0, 50, "from:sender7")),
                ("subject:golf", lambda: inbox.list(0, 50, "subject:golf")),
                ("has:attachment", lambda: inbox.list(0, 50, "has:attachment")),
                ("is:unread -has:attachment kilo", lambda: inbox.list(0, 50, "is:unread -has:attachment kilo")),
                ("mailbox user7@example.org", lambda: inbox.list(0, 50, mailbox="user7@example.org")),
                ("mailbox + text", lambda: inbox.list(0, 50, "foxtrot", mailbox="user7@example.org")),
                ("message view", lambda: inbox.message(inbox.list(0, 1).messages[0].id)),
            ]
            print(f"\n{'operation':<36} {'median ms':>10} {'matched':>8}")
            for label, fn in cases:
                result = fn()
                matched = getattr(result, "matched", "")
                print(f"{label:<36} {median_ms(fn, repeat):>10.1f} {matched!s:>8}")


SERVER = """
import asyncio, sys
from mailwire.server import SMTPServer, ServerConfig, Maildir
from mailwire.inbox import Catcher, Inbox
kind, path, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
delay = None if sys.argv[4] == "none" else float(sys.argv[4])
backend = Maildir(path) if kind == "maildir" else Catcher(Inbox(path, index_delay=delay, index_backlog=int(sys.argv[5])))
async def main():
    server = SMTPServer(backend, ServerConfig(hostname="localhost"))
    await server.start("127.0.0.1", port)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def smtp_run(kind: str, messages: int, delay: str, backlog: int) -> float:
    port = free_port()
    with tempfile.TemporaryDirectory() as path:
        server = subprocess.Popen([sys.executable, "-c", SERVER, kind, os.path.join(path, "mail"), str(port),
                                   delay, str(backlog)])
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), 1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("the server did not start") from None
                    time.sleep(0.05)
            began = time.perf_counter()
            subprocess.run([SMTP_SOURCE, "-s", "20", "-m", str(messages), "-l", "1024", "-d", "-c",
                            "-f", "a@example.com", "-t", "b@example.com", f"127.0.0.1:{port}"],
                           check=True, capture_output=True, timeout=600)
            elapsed = time.perf_counter() - began
            stored = len(os.listdir(os.path.join(path, "mail", "new")))
            if stored != messages:
                raise RuntimeError(f"{kind}: {stored} of {messages} messages stored")
            if kind == "catcher":
                with Inbox(os.path.join(path, "mail")) as inbox:
                    if inbox.sync() != (0, 0):
                        raise RuntimeError("the catcher left messages unindexed")
            return messages / elapsed
        finally:
            server.terminate()
            server.wait(30)


def smtp_bench(messages: int, repeat: int, delay: str, backlog: int) -> None:
    rates: dict[str, list[float]] = {"maildir": [], "catcher": []}
    for kind in rates:  # warm-up
        smtp_run(kind, min(messages, 200), delay, backlog)
    for n in range(repeat):
        for kind in (("maildir", "catcher") if n % 2 == 0 else ("catcher", "maildir")):
            rates[kind].append(smtp_run(kind, messages, delay, backlog))
    maildir, catcher = (statistics.median(rates[k]) for k in ("maildir", "catcher"))
    print(f"\nSMTP, {messages} x 1 KB, 20 sessions, median of {repeat} (msg/s); "
          f"index_delay={delay}, index_backlog={backlog}:")
    print(f"  Maildir              {maildir:8.0f}")
    print(f"  Catcher (+ index)    {catcher:8.0f}   ratio {catcher / maildir:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=10_000, help="messages in the store (10,000)")
    parser.add_argument("--repeat", type=int, default=7, help="repeats per figure; the median is shown")
    parser.add_argument("--smtp", action="store_true", help="also the SMTP rate, Maildir against the catcher")
    parser.add_argument("--messages", type=int, default=2000, help="messages per SMTP run (2,000)")
    # The defaults are mailwire serve's (web/serve.py: INDEX_DELAY, INDEX_BACKLOG).
    parser.add_argument("--index-delay", default="none",
                        help="the catcher's Inbox(index_delay=...), or none (none, as mailwire serve)")
    parser.add_argument("--index-backlog", type=int, default=20_000,
                        help="Inbox(index_backlog=...) (20,000, as mailwire serve)")
    args = parser.parse_args()
    if args.count:
        store_bench(args.count, args.repeat)
    if args.smtp:
        smtp_bench(args.messages, max(args.repeat // 2, 3), args.index_delay, args.index_backlog)


if __name__ == "__main__":
    main()
