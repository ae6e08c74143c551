"""``python -m protkit``: the ``protkit`` command where no console script is installed (a GPU image with
protkit on PYTHONPATH)."""

import sys

from protkit.cli import main

sys.exit(main())
