"""CPython 3.11's own ``test_smtplib``, run against mailwire.smtplib.

The suite is imported while ``sys.modules["smtplib"]`` is the drop-in, so each
of its tests (mock sockets with canned replies, an smtpd server in a thread,
debug output, AUTH, SMTPUTF8, LMTP over a Unix socket ...) exercises our
module. Its classes are re-exported here for pytest to collect. One test
checks a documented difference and is replaced by the drop-in's version.
"""

from __future__ import annotations

import importlib
import smtplib as std
import sys
import types
import unittest
import warnings

import pytest

import mailwire.smtplib as mw

if sys.version_info[:2] != (3, 11):
    pytest.skip("the drop-in mirrors CPython 3.11's smtplib", allow_module_level=True)


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


class BadHELOServerTests(suite.BadHELOServerTests):  # type: ignore[name-defined,misc]
    def testFailingHELO(self) -> None:
        # A documented difference: the core only parses 2xx-5xx codes, so a
        # "199" greeting ends the connection instead of being an SMTPConnectError.
        with pytest.raises(std.SMTPServerDisconnected, match="malformed reply line"):
            mw.SMTP(suite.HOST, self.port, local_hostname="localhost", timeout=suite.support.LOOPBACK_TIMEOUT)
