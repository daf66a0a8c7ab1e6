"""A real Django for these tests: settings configured here, no project.

``settings.configure`` can run once per process, and the compat suite's
Django test may have run it first: whatever each test needs of the mail
settings it sets with ``override_settings`` (``support.mail_settings``), so
the order does not matter. The shared fixtures (trustme CA and contexts,
scripted servers, aiosmtpd) come from ``tests/helpers/fixtures.py``.
"""

import sys
from pathlib import Path

import django
from django.conf import settings

_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:  # helpers/ lives next to this directory
    sys.path.insert(0, _TESTS)

from helpers.fixtures import *  # noqa: E402,F401,F403

if not settings.configured:
    settings.configure(DEFAULT_FROM_EMAIL="webmaster@example.com", SERVER_EMAIL="server@example.com")
django.setup()
