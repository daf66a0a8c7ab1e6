"""Fixtures for the smtplib parity tests (the servers live in ``compat_servers``)."""

import sys

import pytest

pytest.register_assert_rewrite("compat_servers")

from compat_servers import ca, client_tls, server_tls  # noqa: E402, F401


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """mailwire.smtplib mirrors CPython 3.11: elsewhere the stdlib it is compared with differs."""
    if sys.version_info[:2] == (3, 11):
        return
    skip = pytest.mark.skip(reason="mailwire.smtplib mirrors CPython 3.11's smtplib")
    for item in items:
        if item.path.name.startswith("test_smtplib_"):
            item.add_marker(skip)
