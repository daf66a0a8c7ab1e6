"""``python -m mailwire`` is the ``mailwire`` command."""

import sys

from .cli.main import main

__all__: list[str] = []

sys.exit(main())
