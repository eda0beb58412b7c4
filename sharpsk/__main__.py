"""``python -m sharpsk``: the ``sharpsk`` command."""

import sys

from .cli import main

sys.exit(main())
