"""mailwire.smtplib has CPython 3.11 smtplib's public surface, signature for signature."""

from __future__ import annotations

import inspect
import smtplib as std
from typing import Any

import pytest

import mailwire.smtplib as mw

CLASSES = ["SMTP", "SMTP_SSL", "LMTP"]
EXCEPTIONS = [name for name in std.__all__ if name.startswith("SMTP") and name.endswith(("Error", "Exception", "Refused", "Disconnected"))]
CONSTANTS = ["SMTP_PORT", "SMTP_SSL_PORT", "LMTP_PORT", "CRLF", "bCRLF"]
# What the drop-in adds, on purpose (documented in the module and class docstrings).
EXTRAS = {"LMTP": {"lmtp_replies"}}


def public(obj: Any) -> set[str]:
    return {name for name in dir(obj) if not name.startswith("_")} | (
        {"__init__", "__enter__", "__exit__"} & set(dir(obj))
    )


def test_all_is_the_stdlibs() -> None:
    assert mw.__all__ == std.__all__
    for name in std.__all__:
        assert hasattr(mw, name), name


def test_module_constants() -> None:
    for name in CONSTANTS:
        assert getattr(mw, name) == getattr(std, name), name
    assert mw.OLDSTYLE_AUTH.pattern == std.OLDSTYLE_AUTH.pattern
    assert mw.OLDSTYLE_AUTH.flags == std.OLDSTYLE_AUTH.flags


@pytest.mark.parametrize("name", ["quoteaddr", "quotedata"])
def test_functions(name: str) -> None:
    assert inspect.signature(getattr(mw, name)) == inspect.signature(getattr(std, name))


@pytest.mark.parametrize("name", EXCEPTIONS)
def test_exceptions_are_the_stdlibs_own(name: str) -> None:
    # The same classes, not look-alikes: ``except smtplib.SMTPException`` in
    # any library catches what the drop-in raises.
    assert getattr(mw, name) is getattr(std, name)
    assert issubclass(getattr(mw, name), OSError)


def test_exception_hierarchy() -> None:
    assert mw.SMTPException.__bases__ == (OSError,)
    for name in EXCEPTIONS:
        cls = getattr(mw, name)
        assert [c.__name__ for c in cls.__mro__] == [c.__name__ for c in getattr(std, name).__mro__]
    error = mw.SMTPSenderRefused(550, b"no", "a@example.com")
    assert (error.smtp_code, error.smtp_error, error.sender, error.args) == (550, b"no", "a@example.com", (550, b"no", "a@example.com"))
    refused = mw.SMTPRecipientsRefused({"a": (550, b"no")})
    assert refused.recipients == {"a": (550, b"no")} and refused.args == ({"a": (550, b"no")},)


@pytest.mark.parametrize("cls", CLASSES)
def test_class_surface(cls: str) -> None:
    ours, theirs = getattr(mw, cls), getattr(std, cls)
    assert public(ours) - public(theirs) == EXTRAS.get(cls, set())
    assert public(theirs) <= public(ours)
    assert [c.__name__ for c in ours.__mro__] == [c.__name__ for c in theirs.__mro__]
    for name in sorted(public(theirs)):
        mine, stdlib = getattr(ours, name), getattr(theirs, name)
        if callable(stdlib):
            # Exact equality: names, kinds, defaults (the very timeout sentinel) and
            # no annotations (the drop-in types its methods with type comments).
            assert inspect.signature(mine) == inspect.signature(stdlib), name
        else:
            assert mine == stdlib, name


@pytest.mark.parametrize("cls", CLASSES)
def test_instance_attributes(cls: str) -> None:
    kwargs: dict[str, Any] = {"local_hostname": "client.example"}
    ours, theirs = getattr(mw, cls)(**kwargs), getattr(std, cls)(**kwargs)
    mine, stdlib = vars(ours), vars(theirs)
    assert set(stdlib) <= set(mine)
    for name in stdlib:
        if name != "context":
            assert mine[name] == stdlib[name], name
    for name in ("sock", "file", "helo_resp", "ehlo_resp", "does_esmtp", "debuglevel", "default_port",
                 "ehlo_msg", "timeout", "source_address", "command_encoding", "esmtp_features", "local_hostname"):
        assert getattr(ours, name) == getattr(theirs, name), name


def test_smtp_ssl_default_context_does_not_verify() -> None:
    ours, theirs = mw.SMTP_SSL().context, std.SMTP_SSL().context
    for attribute in ("check_hostname", "verify_mode", "protocol", "options", "minimum_version"):
        assert getattr(ours, attribute) == getattr(theirs, attribute), attribute


def test_vrfy_is_verify() -> None:
    assert mw.SMTP.vrfy is mw.SMTP.verify
