"""``python -m trunkkey``: the same as the ``trunkkey`` command."""

import sys

from .cli import main

sys.exit(main())
