"""``python -m podsep`` is the ``podsep`` command."""

import os
import sys

from .cli import main
from .cli.main import EXIT_INTERRUPTED

code = main()
if code == EXIT_INTERRUPTED:
    # Under ``-m`` CPython ends the process by SIGINT instead of with our status when the
    # KeyboardInterrupt passed through an extension's nested interpreter call on its way
    # to the handler (a sticky flag, not clearable from Python); the clean-up already ran
    # in the handlers, so leave now with the status the CLI promises.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
sys.exit(code)
