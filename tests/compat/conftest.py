"""Fixtures for the smtplib parity tests (the servers live in ``compat_servers``)."""

import pytest

pytest.register_assert_rewrite("compat_servers")

from compat_servers import ca, client_tls, server_tls  # noqa: E402, F401
