"""``python -m geobind.cli``: the ``geobind`` command (torchrun starts it this way)."""

import sys

from geobind.cli import main

sys.exit(main())
