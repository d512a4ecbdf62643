"""Where the evaluation lab finds the shared speech and reference folder.

Real speech, room responses and reference turns live outside the repository, in
``../shared`` beside the checkout (or wherever ``$PODSEP_SHARED`` points). Every
script and the test suite ask here, so that the rule is written once. The product
itself never needs that folder.
"""

from __future__ import annotations

import os
from pathlib import Path

SHARED_ENVIRONMENT_VARIABLE = "PODSEP_SHARED"

#: The checkout this lab was imported from (``podsep/lab/paths.py`` -> the repository root).
CHECKOUT_ROOT = Path(__file__).resolve().parents[2]


def shared_root() -> Path:
    """``$PODSEP_SHARED`` when set, else ``shared/`` beside the checkout, resolved.

    Resolved so that paths printed in tables and manifests do not depend on the
    directory a script was started from.
    """
    return Path(os.environ.get(SHARED_ENVIRONMENT_VARIABLE, CHECKOUT_ROOT.parent / "shared")).resolve()
