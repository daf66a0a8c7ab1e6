"""CPython's own ``test_smtplib``, the running interpreter's, against mailwire.smtplib.

The suite is imported while ``sys.modules["smtplib"]`` is the drop-in, so each
of its tests (mock sockets with canned replies, an smtpd server in a thread,
debug output, AUTH, SMTPUTF8, LMTP over a Unix socket ...) exercises our
module. Its classes are re-exported here for pytest to collect as they are:
no test is replaced or skipped. Each Python runs its own version's suite
(``dev/test.sh`` runs 3.10 to 3.13), which is the proof that the drop-in does
what the running interpreter's smtplib does where versions differ (3.12's
``starttls(*, context=None)``, 3.13's ``mail from:``).

The suite finds its smtpd server itself: 3.10 and 3.11 import the stdlib's
(deprecated) ``smtpd`` and ``asyncore``; 3.12 ships them as ``test/smtpd.py``
and ``test.support.asyncore``, 3.13 both in ``test.support``.
"""

from __future__ import annotations

import importlib
import sys
import types
import unittest
import warnings

import pytest

import mailwire.smtplib as mw


def _load() -> types.ModuleType:
    saved_smtplib = sys.modules.get("smtplib")
    saved_suite = sys.modules.pop("test.test_smtplib", None)
    sys.modules["smtplib"] = mw
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # smtpd, asyncore
            return importlib.import_module("test.test_smtplib")
    finally:
        if saved_smtplib is not None:
            sys.modules["smtplib"] = saved_smtplib
        sys.modules.pop("test.test_smtplib", None)
        if saved_suite is not None:
            sys.modules["test.test_smtplib"] = saved_suite


try:
    suite = _load()
except (ImportError, unittest.SkipTest) as exc:  # no test package in this Python
    pytest.skip(f"CPython's test_smtplib is not available: {exc}", allow_module_level=True)

assert suite.smtplib is mw

for _name, _case in vars(suite).items():
    if isinstance(_case, type) and issubclass(_case, unittest.TestCase) and _case.__module__ == suite.__name__:
        globals()[_name] = _case
del _name, _case  # or pytest collects the last class twice
