"""A program that embeds the server in worker processes, for ``test_workers.py``.

``python workers_app.py DIR [--count N] [--shared] [--give-up K]`` serves
127.0.0.1 on a free port from N workers (``mailwire.server.serve_workers``)
and prints ``listening on PORT`` once they all listen. Each worker's backend
(a plain handler, made by the factory in the worker) stores every message in
the Maildir ``DIR/mail`` (whose file names carry the worker's pid) and obeys
its Subject: ``crash`` ends the worker at once (status 3); ``block`` makes
the file ``DIR/blocked.PID`` and holds the worker's event loop until the
file ``DIR/release`` exists (at most 20 s), so a test knows a second
connection goes to another worker. The factory
raises while the file ``DIR/fail`` exists: a worker that cannot start.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from mailwire.server import Envelope, Handler, Maildir, Restart, WorkersFailed, serve_workers


def make_backend(root: Path) -> Handler:
    if (root / "fail").exists():
        raise RuntimeError("told to fail")
    maildir = Maildir(root / "mail")

    async def handle(envelope: Envelope) -> None:
        head = envelope.header_section()
        if b"Subject: crash" in head:
            os._exit(3)
        if b"Subject: block" in head:
            (root / f"blocked.{os.getpid()}").touch()
            for _ in range(200):  # the loop is held on purpose: nothing else runs here
                if (root / "release").exists():
                    break
                time.sleep(0.1)
        maildir.store(envelope)

    return handle


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("dir", type=Path)
    parser.add_argument("--count", type=int, default=2)
    parser.add_argument("--shared", action="store_true", help="no SO_REUSEPORT: the shared listening socket")
    parser.add_argument("--give-up", type=int, default=5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")

    def ready(addresses: list[Any]) -> None:
        print(f"listening on {addresses[0][1]}", flush=True)

    try:
        return serve_workers(
            lambda: make_backend(args.dir), host="127.0.0.1", port=0, count=args.count, grace=5.0,
            reuse_port=False if args.shared else None, on_ready=ready,
            restart=Restart(first_delay=0.05, give_up=args.give_up),
        )
    except WorkersFailed as err:
        print(f"workers_app: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
