"""mailwire's build backend: setuptools', plus mypy in the build environment
when ``MAILWIRE_COMPILE=1`` asks for the compiled core (see setup.py).

A wheel needs mypy (its mypyc) only then, so it cannot be a fixed entry of
``[build-system] requires``: a normal install would fetch 15 MB it never uses.
"""

from __future__ import annotations

import os
from typing import Any

from setuptools import build_meta
from setuptools.build_meta import *  # noqa: F401,F403 - the rest of the backend, as setuptools has it

_MYPYC = ["mypy>=1.10"]


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    # setuptools' own answer runs setup.py, which needs mypyc already when
    # compiling; it adds only setup_requires, which mailwire has none of.
    if os.environ.get("MAILWIRE_COMPILE") == "1":
        return list(_MYPYC)
    return build_meta.get_requires_for_build_wheel(config_settings)
