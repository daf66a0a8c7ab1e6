"""``mailwire serve --chaos``: failures to inject, from the command line.

Each ``--chaos SPEC`` adds one ``Fault`` (``server/chaos.py``), tried in
the order given; ``--chaos-seed N`` makes the probabilities draw the same
failures on every run. A SPEC is ``STAGE:CODE`` then options, each
``:NAME=VALUE``:

* STAGE: ``connect`` (the greeting), ``mail``, ``rcpt``, ``data`` (the
  message), ``auth``; Mailpit's names ``sender``, ``recipient`` and
  ``authentication`` are taken too;
* CODE: the reply code, 400 to 599 (a 421 closes the connection);
* ``times=N``: fail the first N attempts that match, then never;
* ``p=P``: fail each with probability P, ``0.25`` or ``25%``;
* ``match=PATTERN``: only addresses (IP addresses at ``connect``, users at
  ``auth``) matching this shell-style pattern, ``*@flaky.test``;
* ``enhanced=X.Y.Z``: the RFC 3463 code (default ``X.3.0``, ``X.7.0`` for AUTH);
* ``text=TEXT``: the reply's text; last, as it runs to the end of the SPEC.

For example ``--chaos rcpt:451:times=2:match=*@flaky.test``. A SPEC that
does not parse is a usage error naming what is wrong. The web API
(``/api/v1/chaos``) changes the same faults while the server runs.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..server.chaos import Chaos, Fault

__all__ = ["add_options", "configure", "parse_fault"]

_ALIASES = {"sender": "mail", "recipient": "rcpt", "authentication": "auth", "greeting": "connect"}


def _probability(text: str) -> float:
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise ValueError(f"p is a probability such as 0.25 or 25%, not {text!r}")
    return value


def _times(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"times is a whole number of at least 1, not {text!r}")
    return int(text)


def parse_fault(spec: str) -> Fault:
    """A SPEC (see the module doc) as a fault; ValueError naming the mistake."""
    head, _, text = spec.partition(":text=")
    stage, _, rest = head.partition(":")
    code, _, options = rest.partition(":")
    stage = _ALIASES.get(stage.lower(), stage.lower())
    if not code.isdigit():
        raise ValueError("expected STAGE:CODE[:times=N][:p=P][:match=PATTERN][:enhanced=X.Y.Z][:text=TEXT]")
    settings: dict[str, Any] = {"text": text} if text else {}
    for option in options.split(":") if options else ():
        name, sep, value = option.partition("=")
        if not sep or not value:
            raise ValueError(f"expected NAME=VALUE, not {option!r}")
        if name == "times":
            settings["times"] = _times(value)
        elif name in ("p", "probability"):
            settings["probability"] = _probability(value)
        elif name in ("match", "enhanced"):
            settings[name] = value
        else:
            raise ValueError(f"unknown option {name!r} (times, p, match, enhanced, text)")
    return Fault(stage, int(code), **settings)


def _fault(spec: str) -> Fault:
    try:
        return parse_fault(spec)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{spec!r}: {err}") from None


def _seed(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None


def add_options(serve: argparse.ArgumentParser) -> None:
    chaos = serve.add_argument_group("fault injection (also GET/PUT /api/v1/chaos)")
    chaos.add_argument("--chaos", type=_fault, action="append", metavar="SPEC",
                       help="fail a stage on purpose: STAGE:CODE[:times=N][:p=P][:match=PATTERN]"
                            "[:enhanced=X.Y.Z][:text=TEXT], STAGE one of connect, mail, rcpt, data, auth; "
                            "e.g. rcpt:451:times=2:match=*@flaky.test (repeatable, tried in order; with "
                            "--workers, counted in each worker)")
    chaos.add_argument("--chaos-seed", type=_seed, metavar="N",
                       help="seed the random draws of p=, so a run fails the same way every time")


def configure(args: argparse.Namespace, settings: dict[str, Any]) -> None:
    """Put the faults asked for into the ``ServerConfig`` settings."""
    if args.chaos or args.chaos_seed is not None:
        settings["chaos"] = Chaos(args.chaos or (), seed=args.chaos_seed)
