"""``python -m podsep`` is the ``podsep`` command."""

import sys

from .cli import main

sys.exit(main())
