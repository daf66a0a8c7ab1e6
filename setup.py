"""The build: pure Python unless ``MAILWIRE_COMPILE=1`` asks for the compiled core.

Everything about the package is in pyproject.toml; this file only adds, on
request, the modules ``src/mailwire/_compiled.py`` lists, compiled with mypyc
(``MAILWIRE_COMPILE=1 pip install .``: it needs a C compiler and Python's
headers; ``build_mailwire.py`` brings mypy into the build environment). A
normal install builds nothing and needs no compiler.
"""

import os
import runpy

from setuptools import setup

if os.environ.get("MAILWIRE_COMPILE") == "1":
    try:
        from mypyc.build import mypycify
    except ImportError:  # an editable install, or --no-build-isolation without mypy
        raise SystemExit("MAILWIRE_COMPILE=1 needs mypy (its mypyc) where the wheel is built: "
                         "MAILWIRE_COMPILE=1 pip install . brings it (not pip install -e)") from None

    modules = runpy.run_path(os.path.join("src", "mailwire", "_compiled.py"))["MODULES"]
    paths = [os.path.join("src", *module.split(".")) + ".py" for module in modules]
    setup(ext_modules=mypycify(paths, opt_level="3"))
else:
    setup()
