"""``python -m mailwire`` is the ``mailwire`` command."""

import sys

from .cli import main

sys.exit(main())
