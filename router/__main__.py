"""``python -m router`` is the ``netlmm`` command."""

import sys

from router.cli import main

sys.exit(main())
