"""The build under test is the one it claims to be: pure Python, or the compiled core.

dev/test.sh runs part of the suite in .venv-compiled (dev/compiled.sh) with
MAILWIRE_TEST_COMPILED=1: there, every module _compiled.MODULES lists must be
an extension module, or the run would test the pure code twice. Everywhere
else mailwire must be the pure Python it is by default.
"""

from __future__ import annotations

import importlib
import os
from importlib.machinery import EXTENSION_SUFFIXES

import pytest

import mailwire
from mailwire._compiled import MODULES

EXPECT_COMPILED = os.environ.get("MAILWIRE_TEST_COMPILED") == "1"


@pytest.mark.parametrize("name", MODULES)
def test_each_listed_module_is_what_the_build_says(name: str) -> None:
    path = importlib.import_module(name).__file__ or ""
    if EXPECT_COMPILED:
        assert path.endswith(tuple(EXTENSION_SUFFIXES)), path
    else:
        assert path.endswith(".py"), path


def test_mailwire_says_which_build_it_is() -> None:
    assert mailwire.__compiled__ is EXPECT_COMPILED
