"""``python -m mailwire`` is the ``mailwire`` command."""

import sys

from .cli.main import main

sys.exit(main())
