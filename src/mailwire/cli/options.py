"""What the commands' options share: the error a mistake in them is, and the argument types both take.

A mistake in the arguments is a ``UsageError``, raised wherever it is found
(an argument type, a check of two options together, a file that cannot be
read) and turned by each command's ``run`` into one line on stderr and exit
code 2. Argument types that mean the same in every command are written once
here; one command's own (``send``'s ``--server``, ``serve``'s ``--unix-mode``)
stay in its module.
"""

from __future__ import annotations

import argparse

__all__ = ["UsageError", "user_password"]


class UsageError(Exception):
    """A mistake in the arguments: one line on stderr, exit 2."""


def user_password(text: str) -> tuple[str, str]:
    """``USER:PASSWORD``; the password may hold colons, the user may not be empty."""
    user, sep, password = text.partition(":")
    if not sep or not user:
        raise argparse.ArgumentTypeError("expected USER:PASSWORD")
    return user, password
